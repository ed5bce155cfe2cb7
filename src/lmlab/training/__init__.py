"""One training run: the loop, its batches, evaluation, checkpoints, the run directory, the
trackers and data-parallel distribution. ``python -m lmlab.training`` trains a resolved config
(see ``__main__.py``)."""
