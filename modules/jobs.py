"""One FIFO queue with one worker that owns the model: every UI click and API call is a job here."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modules.errors import WebUIError
from modules.state import JobState

log = logging.getLogger(__name__)
_counter = itertools.count(1)


@dataclass(eq=False)
class Job:
    """A queued unit of work with its own progress state, result and error."""

    name: str
    fn: Callable[[JobState], Any]
    id: str = field(default_factory=lambda: f"task({uuid.uuid4().hex[:15]})")
    number: int = field(default_factory=lambda: next(_counter))
    state: JobState = field(default_factory=JobState)
    status: str = "queued"  # queued, running, done, failed
    result: Any = None
    error: str | None = None
    exc: BaseException | None = None  # what the job raised, so adapters can map its type (e.g. to a status code)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """FIFO, one worker thread; interrupt/skip act on one job only; a failing job never stops the next."""

    def __init__(self) -> None:
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.current: Job | None = None
        self.finished: deque[Job] = deque(maxlen=64)
        self._by_id: dict[str, Job] = {}

    def submit(self, name: str, fn: Callable[[JobState], Any], task_id: str | None = None) -> Job:
        job = Job(name=name, fn=fn)
        if task_id:
            job.id = task_id
        with self._cond:
            self._queue.append(job)
            self._by_id[job.id] = job
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, daemon=True, name="job-worker")
                self._worker.start()
            self._cond.notify_all()
        return job

    def run(self, name: str, fn: Callable[[JobState], Any], timeout: float | None = None) -> Any:
        """Submit and wait; re-raise the job's error as WebUIError with its readable message."""
        job = self.submit(name, fn)
        return self.wait(job, timeout)

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        if not job.done.wait(timeout):
            raise TimeoutError(f"{job.name} did not finish in {timeout}s")
        if job.status == "failed":
            raise WebUIError(job.error or "the job failed")
        return job.result

    def position(self, job: Job) -> int:
        """0 while running or done; N when N jobs run or wait before it."""
        with self._cond:
            if job.status != "queued":
                return 0
            ahead = list(self._queue).index(job) if job in self._queue else 0
            return ahead + (1 if self.current is not None else 0)

    def get(self, task_id: str) -> Job | None:
        return self._by_id.get(task_id)

    def pending(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def interrupt(self, job: Job | None = None) -> None:
        target = job or self.current
        if target is not None:
            target.state.interrupt()

    def skip(self, job: Job | None = None) -> None:
        target = job or self.current
        if target is not None:
            target.state.skip()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait(timeout=60)
                    if not self._queue:
                        self._worker = None
                        return
                job = self._queue.popleft()
                self.current = job
            job.status, job.started = "running", time.time()
            cancelled = job.state.interrupted  # read before begin() resets the flags for the run
            job.state.begin(job.name)
            try:
                if cancelled:
                    raise WebUIError("interrupted before it started")
                job.result = job.fn(job.state)
                job.status = "done"
            except WebUIError as e:
                job.error, job.status, job.exc = str(e), "failed", e
                log.warning("%s failed: %s", job.name, e)
            except Exception as e:  # the traceback goes to the log, a readable line to the client
                job.error, job.status, job.exc = f"{type(e).__name__}: {e}", "failed", e
                log.exception("%s failed", job.name)
            finally:
                job.finished = time.time()
                with self._cond:
                    self.current = None
                    self.finished.append(job)
                    self._by_id = {k: v for k, v in self._by_id.items()
                                   if v.status in ("queued", "running") or v in self.finished}
                job.done.set()
