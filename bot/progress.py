"""What long work is doing, and how far it is: one place the dbt runner and the jobs report into.

Long work (a push's check, a prod build, a dev build, an impact report, a preview) runs for tens of
seconds; without a word from it a person cannot tell a slow build from a hung one. Work reports
*steps* ("dbt build into prod") and dbt's *nodes* (`[12/36] model orders`, read from dbt's
structured log); who listens decides how it looks:

* a terminal: one live line, redrawn in place (rich), and a line per finished step;
* not a terminal, or CI: plain lines, one per step and per node (logs stay greppable);
* the service: log records, per job;
* `--quiet`: nothing.

The reporter is a context variable, so the code in between (push, impact, preview) passes nothing
along: the CLI or the job handler installs one around the work (`reporting`), and `current()` is
what the runner reports into. A worker thread installs its own for each job.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from typing import IO, Iterator, Mapping, Protocol


class Progress(Protocol):
    def step(self, text: str) -> None:
        """A new step begins (it ends when the next begins, or at `done`)."""

    def node(self, index: int, total: int, text: str, status: str | None = None) -> None:
        """dbt started (status None) or finished (its status: `success`, `error`, `pass`, …) node
        `index` of `total`."""

    def done(self, ok: bool = True) -> None:
        """The current step is over; a live line is cleared."""


class Silent:
    """`--quiet`, and work nobody watches."""

    def step(self, text: str) -> None:
        pass

    def node(self, index: int, total: int, text: str, status: str | None = None) -> None:
        pass

    def done(self, ok: bool = True) -> None:
        pass


def node_line(index: int, total: int, text: str, status: str | None = None) -> str:
    width = len(str(total))
    return f"[{index:>{width}}/{total}] {text}" + (f" {status}" if status else "")


class Lines:
    """Plain lines for a log file or CI: each step, and each node as dbt finishes it."""

    def __init__(self, stream: IO[str] | None = None, indent: str = "  "):
        self.stream = stream
        self.indent = indent

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def step(self, text: str) -> None:
        self._write(f"{self.indent}… {text}")

    def node(self, index: int, total: int, text: str, status: str | None = None) -> None:
        if status is not None:              # one line per node: its result (the start adds nothing to a log)
            self._write(f"{self.indent}  {node_line(index, total, text, status)}")

    def done(self, ok: bool = True) -> None:
        pass


class Live:
    """One line on a terminal, redrawn in place: the step, and the node dbt is on."""

    def __init__(self, stream: IO[str] | None = None):
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=False)
        self._status = None
        self._step = ""
        self._nodes = 0

    def _show(self, text: str) -> None:
        from rich.live import Live
        from rich.spinner import Spinner
        from rich.text import Text

        line = Text(text, overflow="ellipsis", no_wrap=True)
        if self._status is None:
            self._spinner = Spinner("dots", text=line)
            # stderr's own writes (`--verbose` dbt lines) print above the line; stdout is left alone,
            # it may be a file (`layersync impact > report.md`)
            self._status = Live(self._spinner, console=self.console, transient=True, refresh_per_second=8,
                                redirect_stdout=False, redirect_stderr=True)
            self._status.start()
        else:
            self._spinner.update(text=line)

    def step(self, text: str) -> None:
        """Replaces the line: a step of the work (`push-to-dbt: …`) gives way to its dbt run."""
        self._step, self._nodes = text, 0
        self._show(text)

    def node(self, index: int, total: int, text: str, status: str | None = None) -> None:
        self._nodes = max(self._nodes, index if status else 0)
        if status is None:
            self._show(f"{self._step}  {node_line(index, total, text)}")

    def done(self, ok: bool = True) -> None:
        """The live line goes; the step stays as one line (with how many nodes ran)."""
        if self._status is None:
            return
        self._status.stop()
        self._status = None
        nodes = f" ({self._nodes} nodes)" if self._nodes else ""
        self.console.print(f"{'✓' if ok else '✗'} {self._step}{nodes}", markup=False)


class Logged:
    """The service: the same progress as log records, each naming the job."""

    def __init__(self, logger: logging.Logger, job: str):
        self.logger = logger
        self.job = job

    def step(self, text: str) -> None:
        self.logger.info("job %s: %s", self.job, text)

    def node(self, index: int, total: int, text: str, status: str | None = None) -> None:
        if status is not None:
            self.logger.info("job %s: %s", self.job, node_line(index, total, text, status))

    def done(self, ok: bool = True) -> None:
        pass


def for_terminal(quiet: bool = False, stream: IO[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> Progress:
    """What a command shows on `stream` (default stderr, so stdout stays the result): a live line on
    a terminal, plain lines elsewhere and in CI (`CI` set, as CI systems do), nothing when quiet."""
    if quiet:
        return Silent()
    stream = stream or sys.stderr
    env = os.environ if environ is None else environ
    is_tty = getattr(stream, "isatty", lambda: False)()
    if is_tty and not env.get("CI") and env.get("TERM") != "dumb":
        return Live(stream)
    return Lines(stream)


_CURRENT: contextvars.ContextVar[Progress] = contextvars.ContextVar("layersync_progress", default=Silent())


def current() -> Progress:
    return _CURRENT.get()


@contextlib.contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Work inside reports into `progress`; a live line left open is cleared on the way out."""
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        progress.done()
        _CURRENT.reset(token)
