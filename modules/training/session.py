"""The runtime side of a training run: the model to train on, previews through txt2img, settings and results."""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.errors import WebUIError
from modules.state import JobState
from modules.training.loop import Preview

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What a run produced; `info` is the line A1111's UI and API show."""

    kind: str
    name: str
    filename: str
    step: int
    interrupted: bool
    log_dir: str
    info: str
    losses: list[tuple[int, float]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def current_model(runtime: Any) -> Any:
    """The loaded model; after /unload-checkpoint the selected one is loaded again (as generation does)."""
    if runtime.models.current is None and runtime.registry.titles():
        runtime.switch_checkpoint(runtime.opts.sd_model_checkpoint or runtime.registry.titles()[0])
    model = runtime.models.current
    if model is None:
        raise WebUIError(runtime.model_status or "No checkpoint is loaded; pick one in the checkpoint list.")
    return model


def checkpoint_identity(runtime: Any) -> tuple[str | None, str | None]:
    """(short hash, name) of the loaded checkpoint, stored in trained files as A1111 does."""
    info = runtime.models.current_info
    try:
        shorthash = runtime.models.shorthash()
    except OSError:
        shorthash = None
    return shorthash, (info.name_for_extra if info else None)


def today() -> str:
    return datetime.date.today().strftime("%Y-%m-%d")


def save_settings(runtime: Any, log_dir: Path, params: Any, step: int, extra: dict[str, Any]) -> None:
    """`settings-<step>.json` in the log folder (A1111's `save_training_settings_to_txt`)."""
    if not runtime.opts.get("save_training_settings_to_txt", True):
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    data = {**params.model_dump(), **extra}
    (log_dir / f"settings-{step}.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def make_preview(runtime: Any, prompt: str, params: Any, *, from_txt2img: bool) -> Preview | None:
    """One image through the normal txt2img path (the model carries the network being trained)."""
    from modules.params import Txt2ImgParams
    from modules.processing import process_images
    from modules.txt2img import build_processing

    width = getattr(params, "training_width", None) or getattr(params, "resolution", 512)
    height = getattr(params, "training_height", None) or getattr(params, "resolution", 512)
    settings: dict[str, Any] = {"prompt": prompt, "steps": 20, "width": width, "height": height}
    if from_txt2img:
        sampler = getattr(params, "preview_sampler_index", None) or params.preview_sampler_name
        if isinstance(sampler, int):  # A1111 once sent the index into its sampler list
            from modules.sd_samplers import sampler_names

            names = sampler_names()
            sampler = names[sampler] if 0 <= sampler < len(names) else params.preview_sampler_name
        settings = {
            "prompt": params.preview_prompt or prompt, "negative_prompt": params.preview_negative_prompt,
            "steps": params.preview_steps,
            "sampler_name": sampler,
            "cfg_scale": params.preview_cfg_scale, "seed": params.preview_seed,
            "width": getattr(params, "preview_width", width), "height": getattr(params, "preview_height", height),
        }
    from modules.training.core import clean_model

    try:
        p = build_processing(runtime, Txt2ImgParams(**settings), JobState())
        p.do_not_save_samples = p.do_not_save_grid = True
        processed = process_images(p)
    except WebUIError as e:  # a preview that fails is reported, the training goes on
        log.warning("Training preview failed: %s", e)
        return None
    finally:
        # A <lora:...> in a preview prompt leaves its weights merged (as after any generation): take them off
        # so the next steps train against the checkpoint itself.
        clean_model(runtime, runtime.models.current)
    if not processed.images:
        return None
    infotext = processed.infotexts[0] if processed.infotexts else ""
    return Preview(processed.images[0], infotext)
