"""Workers: take jobs from the queue, run the handler, and decide what a failure means.

Two kinds of failure, because they call for opposite reactions:

* ``TransientError`` (GitHub 5xx, a network error, a rate limit): the same job will likely work
  later, so it goes back to the queue with exponential backoff and jitter (jitter so that jobs
  that failed together don't all retry in the same second), and never sooner than the server
  asked (``Retry-After`` / ``x-ratelimit-reset``). After ``max_attempts`` it fails for good.
* Anything else is a bug or bad input: retrying would fail the same way (and spam the PR), so
  the job fails at once and ``on_failure`` tells the user (the app posts a comment).

A third way an attempt ends is the worker dying (``kill -9``, OOM) while it runs; the queue counts
that once, against that job, when it reclaims it. Such an attempt may well have completed the
handler's effects (the kill came between the last effect and ``complete``), and the handlers are
idempotent, so a job that only ever died gets one final run past ``max_attempts`` rather than
being failed unrun; if that run dies too, the job fails (bounded). The give-up reason says how
often the worker stopped, so ``on_failure`` can report what exists instead of "failed".

A handler's exception, or one raised by ``on_failure``, never kills a worker thread: one bad
job must not stop the others. Logs carry job ids, events, delivery ids and keys, never
payload bodies or headers (they may contain tokens or private code).
"""
from __future__ import annotations

import email.utils
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from bot.jobs.queue import Job, JobQueue
from bot.redact import scrub

__all__ = ["TransientError", "Worker", "retry_after_from_headers"]

log = logging.getLogger(__name__)


def retry_after_from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a server asked us to wait, from ``Retry-After`` (seconds or an HTTP date) or, for
    GitHub's primary rate limit, ``x-ratelimit-reset`` (epoch seconds) when
    ``x-ratelimit-remaining`` is 0 or absent. ``None`` when the headers ask nothing."""
    now = time.time() if now is None else now
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    value = lower.get("retry-after")
    if value is not None:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - now)
    reset = lower.get("x-ratelimit-reset")
    if reset is not None and lower.get("x-ratelimit-remaining", "0").strip() == "0":
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


class TransientError(Exception):
    """Retry later (GitHub 5xx, network error, rate limit).

    ``retry_after``: seconds the server asked for (``Retry-After``, or ``x-ratelimit-reset`` minus
    now), or ``None``; the worker never retries sooner than that.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_headers(cls, message: str, headers: Mapping[str, str], now: float | None = None) -> "TransientError":
        """A TransientError whose ``retry_after`` comes from a response's headers."""
        return cls(message, retry_after_from_headers(headers, now))


class Worker:
    """Runs queued jobs through ``handle`` on ``threads`` threads of this process.

    Several Worker processes may share one queue: the queue's claim is atomic and leased.
    """

    def __init__(
        self,
        queue: JobQueue,
        handle: Callable[[Job], None],
        *,
        threads: int = 2,
        max_attempts: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 600.0,
        lease_seconds: float = 600,
        on_failure: Callable[[Job, str], None] | None = None,
        poll_interval: float = 0.5,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ):
        """``worker_id`` names this worker in the queue (default: host, pid and a random suffix);
        ``rng`` makes the backoff jitter reproducible in tests."""
        if threads < 1:
            raise ValueError("threads must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.queue = queue
        self.handle = handle
        self.threads = threads
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease_seconds = lease_seconds
        self.on_failure = on_failure
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    # -- policy ------------------------------------------------------------------------------

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Delay before the retry that follows failed attempt number ``attempts`` (1-based).

        ``base_delay * 2**(attempts-1)`` capped at ``max_delay``, with "equal jitter" (a random
        point in its upper half: spreads retries, keeps the growth); never below ``retry_after``,
        which is not capped: a server's explicit wait (a rate-limit reset) must be honoured.
        """
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempts - 1)))
        with self._rng_lock:
            delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        return delay

    # -- running -----------------------------------------------------------------------------

    def _thread_worker_id(self) -> str:
        name = threading.current_thread().name
        return f"{self.worker_id}/{name}"

    def run_once(self) -> bool:
        """Claim one ready job and run it in this thread; False if none was ready.

        Never raises because of the job: its outcome is written to the queue. (Queue errors,
        e.g. an unwritable disk, do propagate: ``run`` logs them and keeps polling.)
        """
        wid = self._thread_worker_id()
        job = self.queue.claim(wid, self.lease_seconds)
        if job is None:
            return False
        ctx = f"job {job.id} ({job.event}, delivery {job.delivery_id}, key {job.key}, attempt {job.attempts + 1})"
        if job.attempts >= self.max_attempts:
            # Only reachable through lease expiries (a retry at the limit fails instead).
            if not self._final_run_due(job):
                reason = self._give_up_reason(job, job.attempts, job.last_error)
                log.error("%s: %s", ctx, reason)
                self._fail(job, wid, reason)
                return True
            log.warning("%s: the worker stopped %d times running this job; one final run", ctx, job.deaths)
        log.info("%s: started", ctx)
        started = time.monotonic()
        stop_heartbeat = self._start_heartbeat(job, wid)
        try:
            self.handle(job)
        except TransientError as exc:
            attempts = job.attempts + 1
            reason = scrub(f"TransientError: {exc.message}")
            if attempts >= self.max_attempts:
                reason = self._give_up_reason(job, attempts, reason)
                log.error("%s: %s", ctx, reason)
                self._fail(job, wid, reason)
            else:
                delay = self.backoff(attempts, exc.retry_after)
                log.warning("%s: transient failure, retry in %.1fs: %s", ctx, delay, reason)
                if not self.queue.retry(job.id, delay, reason, worker_id=wid):
                    log.warning("%s: lost its lease before retry was recorded", ctx)
        except Exception as exc:  # noqa: BLE001 - any other failure is permanent, by design
            reason = scrub(f"{type(exc).__name__}: {exc}")
            log.error("%s: failed permanently: %s", ctx, reason, exc_info=True)
            self._fail(job, wid, reason)
        else:
            if self.queue.complete(job.id, worker_id=wid):
                log.info("%s: done in %.2fs", ctx, time.monotonic() - started)
            else:
                log.warning("%s: finished after its lease was taken over; outcome left to the new holder", ctx)
        finally:
            stop_heartbeat()
        return True

    def _final_run_due(self, job: Job) -> bool:
        """A job whose every counted attempt was a death has never been seen to fail: its last run
        may have finished all its effects. It gets exactly one run at ``max_attempts`` (a death of
        that run makes ``attempts`` exceed it, and the job fails)."""
        return job.deaths == job.attempts == self.max_attempts

    @staticmethod
    def _give_up_reason(job: Job, attempts: int, last_error: str | None) -> str:
        """Says how many attempts were deaths: "gave up after 8 attempts" alone reads as "failed
        8 times" when the handler may never have failed at all."""
        stopped = f" (the worker stopped {job.deaths} times while running it)" if job.deaths else ""
        return scrub(f"gave up after {attempts} attempts{stopped}; last error: {last_error}")

    def _fail(self, job: Job, worker_id: str, reason: str) -> None:
        if not self.queue.fail(job.id, reason, worker_id=worker_id):
            log.warning("job %s: lost its lease before failure was recorded", job.id)
            return
        if self.on_failure is None:
            return
        try:
            self.on_failure(job, reason)
        except Exception:  # noqa: BLE001 - reporting a failure must not become a second one
            log.exception("job %s: on_failure raised", job.id)

    def _start_heartbeat(self, job: Job, worker_id: str) -> Callable[[], None]:
        """Renew the job's lease every third of ``lease_seconds`` while the handler runs, so a
        long job keeps it and a dead worker's job is resumed within one lease."""
        done = threading.Event()
        interval = max(0.05, self.lease_seconds / 3)

        def beat() -> None:
            try:
                while not done.wait(interval):
                    try:
                        if not self.queue.heartbeat(job.id, worker_id, self.lease_seconds):
                            log.warning("job %s: lease lost to another worker", job.id)
                            return
                    except Exception:  # noqa: BLE001
                        log.exception("job %s: heartbeat failed", job.id)
            finally:
                self.queue.close()

        thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join(timeout=5)

        return stop

    def run(self, stop: threading.Event) -> None:
        """Run ``threads`` threads that claim and run jobs until ``stop`` is set; returns once
        they have finished their current jobs (a stop never abandons a job half-done)."""

        def loop() -> None:
            while not stop.is_set():
                try:
                    ran = self.run_once()
                except Exception:  # noqa: BLE001 - e.g. the queue file briefly unavailable
                    log.exception("worker %s: queue error", self._thread_worker_id())
                    ran = False
                if not ran:
                    stop.wait(self.poll_interval)
            self.queue.close()

        workers = [threading.Thread(target=loop, name=f"worker-{i}", daemon=True) for i in range(self.threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
