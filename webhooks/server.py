"""The HTTP server of `layersync serve`: werkzeug's threaded server, with the bounds it lacks.

Werkzeug answers every request with ``Connection: close`` and then drains what the client still
sends, with blocking reads of up to 10 MB (10 GB in all): after a refusal of a body it did not
read (a 400 for a body over the bound, a 404), a client that announced 30 MB and sent a little
kept the socket, and a thread, until it gave up. Here a refused request ends with a staged
close instead (RFC 9112 §9.6): the response, then our FIN, so the client reads the answer and
EOF at once; then at most ``LINGER_BYTES`` or ``LINGER_SECONDS`` of its body discarded, so the
close does not reset a client still writing before it read the answer; then the socket closes.
Every socket also has an idle timeout: a client that stalls mid-request cannot hold a thread.
"""
from __future__ import annotations

import contextlib
import io
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.urls import uri_to_iri

from bot.errors import LayersyncError

__all__ = ["IDLE_TIMEOUT", "make_receiver_server"]

IDLE_TIMEOUT = 15.0          # s per socket read/write: GitHub gives a delivery 10 s in all
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def colour_logs(stream=None) -> bool:
    """Colour codes only for a person at a terminal: a log file or a collector gets plain text."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT   # socketserver applies it to the connection before the request is read

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """werkzeug's request line, which it colours always: here only when stderr is a terminal."""
        if colour_logs():
            super().log_request(code, size)
            return
        try:
            msg = f"{self.command} {uri_to_iri(self.path)} {self.request_version}"
        except AttributeError:          # a request line too bad to have a path
            msg = self.requestline
        table = getattr(self, "_control_char_table", None)
        self.log("info", '"%s" %s %s', msg.translate(table) if table else msg, str(code), size)


def _staged_close(sock: socket.socket) -> None:
    """FIN now; discard a bounded part of what is still coming; then no more reads, so werkzeug's
    own drain finds EOF at once and the socket closes."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        discarded = 0
        while discarded < LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(64 * 1024)
            if not chunk:
                break
            discarded += len(chunk)
        sock.shutdown(socket.SHUT_RD)
    except OSError:          # the client is gone or timed out: nothing left to be polite to
        pass


def _has_body(environ: dict) -> bool:
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "")


def _close_after_refusals(app: WSGIApp) -> WSGIApp:
    """`app`, whose error answers to requests with a body end in a staged close.

    Only errors: a 2xx means the app read the whole body (it verifies the signature over it). Only
    sized responses: their last byte is written when the iterable ends, before the close starts.
    """
    def wrapped(environ: dict, start_response: Callable) -> Iterator[bytes]:
        answer: dict[str, object] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info=None):  # type: ignore[no-untyped-def]
            answer["refused"] = int(status.split(None, 1)[0]) >= 400
            answer["sized"] = any(name.lower() == "content-length" for name, _ in headers)
            return start_response(status, headers, exc_info)

        body = app(environ, start)
        try:
            yield b""        # the server sends the head on the first chunk, even an empty one
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        sock = environ.get("werkzeug.socket")
        if answer.get("refused") and answer.get("sized") and sock is not None and _has_body(environ):
            _staged_close(sock)

    return wrapped


def make_receiver_server(host: str, port: int, app: WSGIApp) -> BaseWSGIServer:
    """A threaded server for `app` on host:port (port 0: a free one, see ``server_port``).

    werkzeug prints why it cannot listen (a port in use) over several lines and exits; here that is
    one error saying which address."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return make_server(host, port, _close_after_refusals(app), threaded=True, request_handler=_Handler)
    except SystemExit:
        reason = said.getvalue().strip().splitlines()[0] if said.getvalue().strip() else "refused"
        raise LayersyncError(f"cannot listen on {host}:{port}: {reason}") from None
