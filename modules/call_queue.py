"""A1111's `modules.call_queue` for extensions: run work in the one job queue, catch errors as HTML."""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)


def _jobs() -> Any:
    from modules import shared

    return shared._need_runtime("call_queue").jobs


def _in_worker() -> bool:
    return threading.current_thread().name == "job-worker"


class _QueueLock:
    """`with queue_lock:` holds the job queue: the body runs while no job runs, and jobs wait until it ends.

    A1111's queue_lock is the lock every generation takes; here the queue's worker is that lock, so the body
    occupies one job slot. Inside a job (the worker thread) it does not wait, as it would wait for itself.
    """

    def __init__(self) -> None:
        self._held = threading.local()

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        if _in_worker() or getattr(self._held, "depth", 0):
            self._held.depth = getattr(self._held, "depth", 0) + 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        started, release = threading.Event(), threading.Event()

        def occupy(_state: Any) -> None:
            started.set()
            release.wait()

        job = _jobs().submit("extension (queue_lock)", occupy)
        started.wait()
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            release.set()
            job.done.wait()

    def __enter__(self) -> None:
        self._ctx = self._hold()
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)

    def acquire(self) -> bool:
        self.__enter__()
        return True

    def release(self) -> None:
        self.__exit__(None, None, None)


queue_lock = _QueueLock()


def wrap_queued_call(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run `func` as one job of the queue (after the jobs ahead of it), returning its result."""

    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        if _in_worker():
            return func(*args, **kwargs)
        from modules.errors import WebUIError

        holder: dict[str, Any] = {}

        def job(_state: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as e:  # re-raised as itself below, so callers see the extension's own error
                holder["error"] = e
                raise

        try:
            return _jobs().run(getattr(func, "__name__", "extension call"), job)
        except WebUIError:
            if "error" in holder:
                raise holder["error"] from None
            raise

    return f


def wrap_gradio_call(func: Callable[..., Any], extra_outputs: list[Any] | None = None,
                     add_stats: bool = False) -> Callable[..., Any]:
    """A1111's UI wrapper: on an exception log it and return `extra_outputs` plus an error HTML line
    (the traceback stays in the console); with add_stats, append the time taken to the last output."""

    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            res = list(func(*args, **kwargs))
        except Exception as e:
            log.exception("Error in %s", getattr(func, "__name__", "an extension call"))
            message = f"{type(e).__name__}: {e}"
            res = [*(extra_outputs or [None]), f"<div class='error'>{html.escape(message)}</div>"]
        if add_stats and res and isinstance(res[-1], str):
            res[-1] += f"<div class='performance'><p class='time'>Time taken: {time.perf_counter() - t0:.1f} s</p></div>"
        return tuple(res)

    return f


def wrap_gradio_gpu_call(func: Callable[..., Any], extra_outputs: list[Any] | None = None) -> Callable[..., Any]:
    """Both: the call runs as a queued job, and its errors come back as HTML."""
    return wrap_gradio_call(wrap_queued_call(func), extra_outputs=extra_outputs, add_stats=True)
