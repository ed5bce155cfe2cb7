"""Progress bars: the one switch every long-running step (tokenizing, training) shares."""


def bar_disabled(show: bool) -> bool | None:
    """tqdm's ``disable`` for ``show``: ``None`` (shown only on a terminal) or ``True``.

    A bar that was asked for still stays off when stderr is not a terminal (a log file, CI),
    where its carriage returns would pile up as lines.
    """
    return None if show else True
