"""A stand-in for the Hugging Face Hub on localhost, serving one text at every file's address:
what a download test, or the README's quickstart, reads instead of the network."""

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


class Hub(http.server.BaseHTTPRequestHandler):
    """Serves :attr:`body` at any path, honouring a ``Range`` header unless :attr:`ranges` is off
    (then it sends the whole text, as a server without range support would)."""

    body = b""
    files: dict[str, bytes] = {}
    """Bodies by file name (the last part of the path); any other path gets :attr:`body`."""
    ranges = True
    requests: list[tuple[str, str | None]] = []
    """Each GET's path and ``Range`` header."""

    def do_HEAD(self) -> None:  # the reachability probe
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        wanted = self.headers.get("Range")
        type(self).requests.append((self.path, wanted))
        body = self.files.get(self.path.rsplit("/", 1)[-1], self.body)
        if wanted and self.ranges:
            start, end = (int(x) for x in wanted.removeprefix("bytes=").split("-"))
            body = body[start:end + 1]
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def local_hub(body: bytes, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes] | None = None
              ) -> Iterator[type[Hub]]:
    """Serve ``files`` by name and ``body`` as every other Hub file, with ``HF_ENDPOINT``
    pointing at it while in use."""
    Hub.body, Hub.files, Hub.ranges, Hub.requests = body, files or {}, True, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        yield Hub
    finally:
        server.shutdown()
