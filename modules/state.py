"""Progress, interrupt and skip of one running job (A1111's `shared.state`, but one object per job)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobState:
    """What a job is doing now; written by the processing thread, read by the UI and /progress."""

    job: str = ""
    job_count: int = 0
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    textinfo: str | None = None
    time_start: float | None = None
    current_latent: Any = None
    current_image: Any = None
    current_image_sampling_step: int = 0
    id_live_preview: int = 0
    server_start: float = field(default_factory=time.time)
    _interrupted: threading.Event = field(default_factory=threading.Event)
    _skipped: threading.Event = field(default_factory=threading.Event)
    _stopping_generation: bool = False

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    @property
    def skipped(self) -> bool:
        return self._skipped.is_set()

    def interrupt(self) -> None:
        """Stop the whole job at the next step boundary."""
        self._interrupted.set()

    def skip(self) -> None:
        """Abandon the current image batch and go on with the next."""
        self._skipped.set()

    def stop_generating(self) -> None:
        """Finish the current image, then stop (A1111's 'interrupt after current')."""
        self._stopping_generation = True

    @property
    def stopping_generation(self) -> bool:
        return self._stopping_generation

    def begin(self, job: str = "") -> None:
        self.job = job
        self.time_start = time.time()
        self.job_no = 0
        self.sampling_step = 0
        self._interrupted.clear()
        self._skipped.clear()
        self._stopping_generation = False

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0
        self.current_image_sampling_step = 0
        self._skipped.clear()

    def set_step(self, step: int, total: int | None = None) -> None:
        self.sampling_step = step
        if total is not None:
            self.sampling_steps = total

    @property
    def progress(self) -> float:
        """Fraction done over all images of the job, as A1111's /progress computes it."""
        if self.job_count <= 0:
            return 0.0
        per_job = 1 / self.job_count
        done = self.job_no * per_job
        if self.sampling_steps > 0:
            done += per_job * self.sampling_step / self.sampling_steps
        return min(max(done, 0.0), 1.0)

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the time spent so far."""
        if self.time_start is None or self.progress <= 0:
            return None
        elapsed = time.time() - self.time_start
        return elapsed / self.progress - elapsed
