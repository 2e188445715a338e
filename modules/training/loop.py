"""The optimisation loop every trainer runs: accumulation, schedules, clipping, progress, CSV, saves, previews."""

from __future__ import annotations

import csv
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.training.core import TrainingError, clip_gradients
from modules.training.dataset import Dataset, DatasetEntry
from modules.training.lr_schedule import StepSchedule

log = logging.getLogger(__name__)


@dataclass
class TrainingMonitor:
    """What the Train tab shows while a run goes: loss per step and the preview images so far."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (file path, caption)
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def loss_rows(self) -> list[tuple[int, float]]:
        with self.lock:
            return list(self.losses)


@dataclass
class LoopConfig:
    name: str
    steps: int  # the run ends when the step counter reaches this (A1111's "Max steps")
    initial_step: int
    gradient_step: int
    clip_mode: str
    clip: StepSchedule | None
    create_image_every: int
    save_every: int
    write_csv_every: int
    log_dir: Path
    csv_name: str
    weight_decay: float = 0.0


@dataclass
class Group:
    """One optimizer parameter group and its learning-rate schedule."""

    params: list[torch.Tensor]
    schedule: StepSchedule


@dataclass
class Preview:
    """A preview image, its infotext, and extra PNG text chunks (the embedding itself, `sd-ti-embedding`)."""

    image: Any
    infotext: str
    chunks: dict[str, str] = field(default_factory=dict)


@dataclass
class LoopResult:
    step: int
    interrupted: bool
    losses: list[tuple[int, float]]
    images: list[str]
    last_loss: float | None


def _save_preview(image: Any, infotext: str, chunks: dict[str, str], path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    for key, value in chunks.items():
        info.add_text(key, value)
    image.save(path, pnginfo=info)


def run_loop(cfg: LoopConfig, state: Any, dataset: Dataset, rng: Any, groups: list[Group],
             compute_loss: Callable[[list[DatasetEntry]], torch.Tensor],
             save: Callable[[int, bool], None],
             preview: Callable[[int, list[DatasetEntry]], Preview | None] | None = None,
             monitor: TrainingMonitor | None = None) -> LoopResult:
    """Optimise until `cfg.steps` (or the schedule ends, or the job is interrupted); save the last state always."""
    from tqdm import tqdm

    monitor = monitor or TrainingMonitor()
    params = [p for g in groups for p in g.params]
    optimizer = torch.optim.AdamW([{"params": g.params, "lr": g.schedule.value_at(cfg.initial_step) or 0.0}
                                   for g in groups], weight_decay=cfg.weight_decay)
    step = cfg.initial_step
    total = max(cfg.steps - cfg.initial_step, 0)
    per_epoch = max(1, -(-len(dataset) // dataset.batch_size))
    state.job_count, state.job_no, state.sampling_steps, state.sampling_step = 1, 0, total, 0
    state.time_start = time.time()  # ETA from the first step, not from dataset preparation
    csv_path = cfg.log_dir / cfg.csv_name
    pending_rows: list[list[Any]] = []
    recent: list[float] = []
    images: list[str] = []
    interrupted = False
    last_batch: list[DatasetEntry] = []
    last_loss = None
    bar = tqdm(total=total, desc=f"Training {cfg.name}", disable=None)

    def batches() -> Any:
        epoch = 0
        while True:
            for batch in dataset.batches(rng):
                yield epoch, batch
            epoch += 1

    source = batches()
    try:
        while step < cfg.steps:
            rates = [g.schedule.value_at(step) for g in groups]
            if any(r is None for r in rates):
                break  # A1111: the learning-rate schedule ended before max steps
            for pg, rate in zip(optimizer.param_groups, rates, strict=True):
                pg["lr"] = rate
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(cfg.gradient_step):
                if state.interrupted:
                    interrupted = True
                    break
                epoch, last_batch = next(source)
                loss = compute_loss(last_batch) / cfg.gradient_step
                loss.backward()
                step_loss += float(loss.detach())
            if interrupted:
                break
            if not math.isfinite(step_loss):
                # Stepping would write NaN into the trained vectors; the files keep their last saved state.
                raise TrainingError(f"the loss became {step_loss} at step {step + 1}; nothing more was saved "
                                    "(try a lower learning rate)")
            if cfg.clip is not None:
                clip_gradients(params, cfg.clip_mode, cfg.clip.value_at(step))
            optimizer.step()
            step += 1
            last_loss = step_loss
            recent = (recent + [step_loss])[-32:]
            mean = sum(recent) / len(recent)
            with monitor.lock:
                monitor.losses.append((step, step_loss))
            epoch_step = (step - 1) % per_epoch + 1
            pending_rows.append([step, (step - 1) // per_epoch, epoch_step, f"{mean:.7f}", rates[0]])
            state.sampling_step = step - cfg.initial_step
            state.textinfo = monitor.message = (f"[Epoch {(step - 1) // per_epoch}: {epoch_step}/{per_epoch}] "
                                                f"step {step}/{cfg.steps}, loss: {step_loss:.7f} (mean {mean:.7f})")
            bar.update(1)
            bar.set_postfix(loss=f"{mean:.5f}")
            if cfg.write_csv_every and step % cfg.write_csv_every == 0:
                _write_csv(csv_path, pending_rows)
            if cfg.save_every and step % cfg.save_every == 0:
                save(step, True)
            if preview is not None and cfg.create_image_every and step % cfg.create_image_every == 0:
                made = preview(step, last_batch)
                if made is not None:
                    path = cfg.log_dir / "images" / f"{cfg.name}-{step}.png"
                    _save_preview(made.image, made.infotext, made.chunks, path)
                    images.append(str(path))
                    with monitor.lock:
                        monitor.images.append((str(path), made.infotext.split("\n")[0]))
    finally:
        bar.close()
        _write_csv(csv_path, pending_rows)
    save(step, False)  # the last state, also after an interrupt
    return LoopResult(step, interrupted, monitor.loss_rows(), images, last_loss)


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["step", "epoch", "epoch_step", "loss", "learn_rate"])
        writer.writerows(rows)
    rows.clear()
