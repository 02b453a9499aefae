"""git's smart HTTP protocol, served by running ``git http-backend`` as a CGI program.

The stand-in's HTTP handler recognises git paths (``/{owner}/{repo}.git/info/refs``,
``.../git-upload-pack``, ``.../git-receive-pack``), checks the credentials
(GitHub style: HTTP Basic whose password is a token, e.g. ``x-access-token:<token>``),
and hands the request to :func:`serve` here. Request bodies are streamed to the
CGI (de-chunked and gunzipped on the way: git gzips large fetch negotiations and
sends big pushes chunked), and the CGI's output is streamed back chunked.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

__all__ = [
    "GIT_PATH",
    "GitRequest",
    "Push",
    "RefUpdate",
    "basic_auth_token",
    "ref_snapshot",
    "serve",
]

#: ``/{owner}/{repo}[.git]/{git endpoint}`` — the paths git's smart (and dumb) HTTP clients request.
GIT_PATH = re.compile(
    r"^/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?"
    r"(?P<sub>/(?:info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.+|info/[a-z/-]+))$"
)

ZERO_SHA = "0" * 40
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class RefUpdate:
    ref: str
    old: str  # ZERO_SHA when the ref was created
    new: str  # ZERO_SHA when the ref was deleted

    @property
    def created(self) -> bool:
        return self.old == ZERO_SHA

    @property
    def deleted(self) -> bool:
        return self.new == ZERO_SHA


@dataclass
class Push:
    repo: str  # "owner/name"
    user: str
    updates: list[RefUpdate] = field(default_factory=list)

    @property
    def refs(self) -> list[str]:
        return [u.ref for u in self.updates]


@dataclass
class GitRequest:
    method: str
    path: str
    service: str | None
    user: str | None
    status: int
    gzip: bool = False  # request body was Content-Encoding: gzip
    chunked: bool = False  # request body was Transfer-Encoding: chunked


def basic_auth_token(header: str | None) -> str | None:
    """The token in ``Authorization: Basic base64(user:token)`` (GitHub ignores the user part), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except Exception:
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    # GitHub accepts a token as the password with any user name ("x-access-token" for
    # app installation tokens); a token given as the user name with an empty password also works.
    return password or user or None


def ref_snapshot(bare: Path) -> dict[str, str]:
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)"],
        cwd=bare, capture_output=True, text=True, check=True,
    ).stdout
    refs = {}
    for line in out.splitlines():
        sha, _, ref = line.partition(" ")
        refs[ref] = sha
    return refs


def diff_refs(before: dict[str, str], after: dict[str, str]) -> list[RefUpdate]:
    updates = []
    for ref in sorted(set(before) | set(after)):
        old, new = before.get(ref, ZERO_SHA), after.get(ref, ZERO_SHA)
        if old != new:
            updates.append(RefUpdate(ref, old, new))
    return updates


def _iter_body(rfile: BinaryIO, headers) -> Iterator[bytes]:
    """The request body as sent: by Content-Length, or de-chunked for ``Transfer-Encoding: chunked``."""
    te = (headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        while True:
            line = rfile.readline(65537)
            if not line:
                return
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            remaining = size
            while remaining:
                data = rfile.read(min(remaining, _CHUNK))
                if not data:
                    return
                remaining -= len(data)
                yield data
            rfile.readline(3)  # CRLF after each chunk
    else:
        remaining = int(headers.get("Content-Length") or 0)
        while remaining > 0:
            data = rfile.read(min(remaining, _CHUNK))
            if not data:
                return
            remaining -= len(data)
            yield data


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = d.decompress(chunk)
        if out:
            yield out
    tail = d.flush()
    if tail:
        yield tail


def drain(rfile: BinaryIO, headers) -> None:
    """Read and drop a request body, so a keep-alive connection stays in step."""
    for _ in _iter_body(rfile, headers):
        pass


def _http_backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    candidate = Path(exec_path) / "git-http-backend"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("git-http-backend")
    if found:
        return found
    raise RuntimeError("git http-backend is not installed")


_BACKEND: str | None = None


def serve(
    handler,
    *,
    project_root: Path,
    owner: str,
    repo: str,
    sub: str,
    query: str,
    user: str,
    lock: threading.Lock,
    on_push: Callable[[list[RefUpdate]], None],
) -> int:
    """Run ``git http-backend`` for one request on ``handler`` (a BaseHTTPRequestHandler); return the status sent."""
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = _http_backend()
    bare = project_root / owner / f"{repo}.git"
    receive = sub == "/git-receive-pack"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_HTTP_MAX_REQUEST_BUFFER": str(100 * 1024 * 1024),
        "PATH_INFO": f"/{owner}/{repo}.git{sub}",
        "QUERY_STRING": query,
        "REQUEST_METHOD": handler.command,
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
        "REMOTE_USER": user,
        "REMOTE_ADDR": handler.client_address[0],
        "SERVER_PROTOCOL": handler.request_version,
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    if handler.headers.get("Git-Protocol"):
        env["HTTP_GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
    gzipped = (handler.headers.get("Content-Encoding") or "").lower() in ("gzip", "x-gzip")
    chunked = "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower()
    if not gzipped and not chunked and handler.headers.get("Content-Length"):
        env["CONTENT_LENGTH"] = handler.headers["Content-Length"]
    # Otherwise CONTENT_LENGTH is left unset: http-backend then reads the body until EOF.

    def run(before_finish: Callable[[], None] | None = None) -> int:
        proc = subprocess.Popen(
            [_BACKEND], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        stderr_chunks: list[bytes] = []

        def feed() -> None:
            body = _iter_body(handler.rfile, handler.headers)
            writing = True
            try:
                for chunk in (_gunzip(body) if gzipped else body):
                    if writing:
                        try:
                            proc.stdin.write(chunk)
                        except (BrokenPipeError, OSError):
                            writing = False  # the CGI gave up; keep reading so the connection stays in step
            except zlib.error:
                for _ in body:
                    pass
            finally:
                try:
                    proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass

        def collect_stderr() -> None:
            stderr_chunks.append(proc.stderr.read())

        feeder = threading.Thread(target=feed, daemon=True)
        err = threading.Thread(target=collect_stderr, daemon=True)
        feeder.start()
        err.start()
        status, reason, headers = 200, "OK", []
        while True:
            line = proc.stdout.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            value = value.strip()
            if name.lower() == "status":
                code, _, reason = value.partition(" ")
                status = int(code)
            else:
                headers.append((name, value))
        handler.send_response(status, reason or None)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        while True:
            data = proc.stdout.read1(_CHUNK) if hasattr(proc.stdout, "read1") else proc.stdout.read(_CHUNK)
            if not data:
                break
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        feeder.join()
        proc.wait()
        err.join()
        handler.git_stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
        if before_finish is not None:
            # Before the last chunk: once the client has the whole answer, the push must be on record.
            before_finish()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
        return status

    if not receive or handler.command != "POST":
        return run()

    with lock:
        before = ref_snapshot(bare)

        def record() -> None:
            updates = diff_refs(before, ref_snapshot(bare))
            if updates:
                on_push(updates)

        return run(record)
