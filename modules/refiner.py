"""The refiner switch (A1111's built-in Refiner script) and the per-pass model switching hires fix shares with it."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import torch

from modules import tiling
from modules.errors import ValidationError

log = logging.getLogger(__name__)

REFINER_PASSES = ("first pass", "second pass", "both passes")
_UNSET_NAMES = ("", "None", "none")


def is_unset(name: Any) -> bool:
    """A1111 treats None, "" and "None" as "no refiner"."""
    return name is None or (isinstance(name, str) and name.strip() in _UNSET_NAMES)


def find_checkpoint(p: Any, field: str, name: str) -> Any:
    """The CheckpointInfo for `name` (A1111's closest match), or a ValidationError naming `field`."""
    runtime = getattr(p, "runtime", None)
    if runtime is None:
        raise ValidationError(field, "switching checkpoints needs the web UI runtime (p.runtime is not set)")
    info = runtime.registry.closest(str(name))
    if info is None:
        runtime.registry.refresh()  # the file may have been added since the last scan
        info = runtime.registry.closest(str(name))
    if info is None:
        available = ", ".join(runtime.registry.titles()) or "none"
        raise ValidationError(field, f"checkpoint {name!r} not found; available: {available}")
    return info


def validate_refiner(p: Any) -> None:
    """Resolve refiner_checkpoint into p.refiner_checkpoint_info; bad names or switch points fail before the job."""
    p.refiner_checkpoint_info = None
    if is_unset(p.refiner_checkpoint):
        p.refiner_checkpoint = None
        p.refiner_switch_at = None
        return
    at = p.refiner_switch_at
    if at is not None and (
        isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or not 0 <= at <= 1
    ):
        raise ValidationError("refiner_switch_at", f"must be a number from 0 to 1, got {at!r}")
    p.refiner_checkpoint_info = find_checkpoint(p, "refiner_checkpoint", p.refiner_checkpoint)


def short_title(p: Any, info: Any) -> str:
    """A1111's short title `name [hash]`, hashing the file now if the background hash has not finished."""
    runtime = getattr(p, "runtime", None)
    if runtime is not None:
        try:
            runtime.registry.calculate_shorthash(info)
        except OSError as e:
            log.warning("Could not hash %s: %s", info.filename, e)
    return info.short_title


class JobModels:
    """The checkpoints one job runs: its main model, the hires checkpoint and refiner it switches to, and back.

    Switching goes through the model manager (its LRU cache keeps both loaded when `sd_checkpoints_limit` >= 2)
    and updates p.sd_model / p.conditioner, as A1111's p.sd_model follows the loaded model. Every model the job
    touches gets the job's tiling for as long as the job runs. Leaving the context makes the main model current.
    """

    def __init__(self, p: Any) -> None:
        self.p = p
        self.runtime = getattr(p, "runtime", None)
        self.main_model = p.sd_model
        self.main_conditioner = p.conditioner
        info = None
        if self.runtime is not None and self.runtime.models.current is p.sd_model:
            info = self.runtime.models.current_info
        self.main_filename: str | None = info.filename if info is not None else None
        self.current_filename = self.main_filename
        self._stack = ExitStack()
        self._tiled: set[int] = set()

    def __enter__(self) -> JobModels:
        self._tile(self.p.sd_model)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.restore_main()
        finally:
            self._stack.close()

    def _tile(self, model: Any) -> None:
        if self.p.tiling and id(model) not in self._tiled:
            self._tiled.add(id(model))
            self._stack.enter_context(tiling.circular_padding(model, True))

    def is_current(self, info: Any) -> bool:
        return info is not None and info.filename == self.current_filename

    def use(self, info: Any) -> Any:
        """Make the checkpoint `info` the model of the running pass; returns it."""
        if self.is_current(info):
            return self.p.sd_model
        if self.runtime is None:
            raise ValidationError("sd_model_checkpoint", "switching checkpoints needs the web UI runtime")
        model = self.runtime.models.load(info.filename)
        self.current_filename = info.filename
        self.p.sd_model = model
        self.p.conditioner = self.runtime.conditioner_for(model)
        self._tile(model)
        return model

    def restore_main(self) -> None:
        """Back to the job's own model (a no-op when it never left)."""
        if self.current_filename == self.main_filename:
            return
        if self.runtime is None or self.main_filename is None:  # a model the manager does not know: keep the object
            self.p.sd_model, self.p.conditioner = self.main_model, self.main_conditioner
            self.current_filename = self.main_filename
            return
        model = self.runtime.models.load(self.main_filename)
        self.current_filename = self.main_filename
        if model is not self.main_model:  # evicted meanwhile (sd_checkpoints_limit 1) and loaded again
            self.main_model = model
            self.main_conditioner = self.runtime.conditioner_for(model)
        self.p.sd_model = self.main_model
        self.p.conditioner = self.main_conditioner
        self._tile(model)

    def use_main(self) -> Any:
        self.restore_main()
        return self.p.sd_model


def job_models(p: Any) -> JobModels:
    """The job's JobModels (created on first use for callers that run passes outside run_generation)."""
    models = getattr(p, "job_models", None)
    if models is None:
        models = JobModels(p)
        p.job_models = models
    return models


class RefinerDenoiser:
    """Wraps the CFG denoiser of one sampling run and hands over to the refiner at A1111's switch point.

    Like A1111's apply_refiner, the check runs at the start of every denoiser call: the fraction done is
    measured in model timesteps of the sigma being evaluated ((999 - t) / 1000), or in sampling steps with
    `refiner_switch_by_sample_steps`. On the first call at or past `refiner_switch_at` the refiner checkpoint is
    made current and `rebuild(model)` gives the denoiser (conds from the refiner's text encoders, its size and
    aesthetic conditioning) that serves this call and the rest of the run.
    """

    def __init__(
        self, p: Any, denoiser: Any, rebuild: Callable[[Any], Any], total_steps: int, is_hr_pass: bool
    ) -> None:
        self.p = p
        self.current = denoiser
        self.rebuild = rebuild
        self.total_steps = max(int(total_steps), 1)
        self.is_hr_pass = is_hr_pass
        self.switched = False
        self.switched_at_step: int | None = None

    @property
    def step(self) -> int:
        return self.current.step

    @step.setter
    def step(self, value: int) -> None:
        self.current.step = value

    @property
    def hooks(self) -> Any:
        return self.current.hooks

    def completed_ratio(self, sigma: torch.Tensor) -> float:
        p = self.p
        if p.opt("refiner_switch_by_sample_steps", False):
            p.extra_generation_params["Refiner switch by sampling steps"] = True
            return self.current.step / self.total_steps
        sigmas = self.current.inner.sigmas
        t = int(torch.argmin(torch.abs(sigmas.to(sigma.device) - torch.max(sigma))))
        return (len(sigmas) - 1 - t) / len(sigmas)

    def due(self, sigma: torch.Tensor) -> bool:
        p = self.p
        ratio = self.completed_ratio(sigma)
        if p.refiner_switch_at is not None and ratio < p.refiner_switch_at:
            return False
        info = p.refiner_checkpoint_info
        if info is None or job_models(p).is_current(info):
            return False
        if getattr(p, "enable_hr", False):
            which = p.opt("hires_fix_refiner_pass", "second pass")
            if which == "first pass" and self.is_hr_pass:
                return False
            if which == "second pass" and not self.is_hr_pass:
                return False
            if which != "second pass":
                p.extra_generation_params["Hires refiner"] = which
        return True

    def switch(self) -> None:
        p = self.p
        info = p.refiner_checkpoint_info
        p.extra_generation_params["Refiner"] = short_title(p, info)
        p.extra_generation_params["Refiner switch at"] = p.refiner_switch_at
        step = self.current.step
        model = job_models(p).use(info)
        self.current = self.rebuild(model)
        self.current.step = step
        self.switched = True
        self.switched_at_step = step
        log.info("Refiner: switched to %s at step %d of %d", info.title, step, self.total_steps)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if not self.switched and self.due(sigma):
            self.switch()
        return self.current(x, sigma, **kwargs)


def wrap(p: Any, denoiser: Any, rebuild: Callable[[Any], Any], total_steps: int, is_hr_pass: bool) -> Any:
    """The denoiser to sample with: the refiner wrapper when a refiner is set for this job, else `denoiser`."""
    if getattr(p, "refiner_checkpoint_info", None) is None:
        return denoiser
    return RefinerDenoiser(p, denoiser, rebuild, total_steps, is_hr_pass)
