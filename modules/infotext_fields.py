"""L1 request types: which infotext key fills which request field, per tab; one table for the UI paste and the API.

A1111 keeps these as per-tab "paste fields"; here `fields_from_infotext(parsed, kind)` turns parsed infotext into
request fields (Txt2ImgParams / Img2ImgParams names), and `settings_from_infotext` into setting overrides
(Clip skip, Model hash...) through the settings table's own infotext labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from modules.errors import ValidationError


def _int(v: Any) -> int:
    return int(float(v))


def _bool(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes", "on")


Cast = Callable[[Any], Any]
GENERATION_FIELDS: list[tuple[str, str, Cast]] = [
    ("Prompt", "prompt", str),
    ("Negative prompt", "negative_prompt", str),
    ("Steps", "steps", _int),
    ("Sampler", "sampler_name", str),
    ("Schedule type", "scheduler", str),
    ("CFG scale", "cfg_scale", float),
    ("Seed", "seed", _int),
    ("Size-1", "width", _int),
    ("Size-2", "height", _int),
    ("Variation seed", "subseed", _int),
    ("Variation seed strength", "subseed_strength", float),
    ("Seed resize from-1", "seed_resize_from_w", _int),
    ("Seed resize from-2", "seed_resize_from_h", _int),
    ("Denoising strength", "denoising_strength", float),
    ("Refiner", "refiner_checkpoint", str),
    ("Refiner switch at", "refiner_switch_at", float),
]
TXT2IMG_FIELDS: list[tuple[str, str, Cast]] = [
    *GENERATION_FIELDS,
    ("Hires upscale", "hr_scale", float),
    ("Hires upscaler", "hr_upscaler", str),
    ("Hires steps", "hr_second_pass_steps", _int),
    ("Hires resize-1", "hr_resize_x", _int),
    ("Hires resize-2", "hr_resize_y", _int),
    ("Hires checkpoint", "hr_checkpoint_name", str),
    ("Hires sampler", "hr_sampler_name", str),
    ("Hires schedule type", "hr_scheduler", str),
    ("Hires prompt", "hr_prompt", str),
    ("Hires negative prompt", "hr_negative_prompt", str),
]
IMG2IMG_FIELDS: list[tuple[str, str, Cast]] = [
    *GENERATION_FIELDS,
    ("Image CFG scale", "image_cfg_scale", float),
    ("Mask blur", "mask_blur", _int),
    ("Conditional mask weight", "", float),  # a setting (inpainting_mask_weight), filled by its label
]
TABLES = {"txt2img": TXT2IMG_FIELDS, "img2img": IMG2IMG_FIELDS}
# Keys whose presence (with Denoising strength) means hires fix was on, as A1111's paste decides.
HIRES_KEYS = ("Hires upscale", "Hires upscaler", "Hires resize-1")


def fields_from_infotext(parsed: dict[str, Any], kind: str, *, strict: bool = True) -> dict[str, Any]:
    """Request fields from A1111's parsed infotext for the tab `kind`; a bad value raises ValidationError
    naming its key (or, with strict=False, is left out so a paste fills what it can)."""
    out: dict[str, Any] = {}
    for key, field, cast in TABLES[kind]:
        if not field or key not in parsed:
            continue
        try:
            out[field] = cast(parsed[key])
        except (TypeError, ValueError):
            if strict:
                raise ValidationError("infotext", f"{key}: {parsed[key]!r} is not a valid value") from None
    if kind == "txt2img" and "Denoising strength" in parsed and any(k in parsed for k in HIRES_KEYS):
        out["enable_hr"] = True
    return out


def cast_setting(default: Any, value: Any) -> Any:
    """A setting's infotext text as the setting's own type."""
    if isinstance(default, bool):
        return _bool(value)
    if isinstance(default, int):
        return _int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def settings_from_infotext(parsed: dict[str, Any], opts: Any, skip: Callable[[str], bool] = lambda _k: False
                           ) -> dict[str, Any]:
    """Setting overrides named in the infotext (each setting's `infotext` label, e.g. "Clip skip")."""
    out: dict[str, Any] = {}
    for setting, info in opts.data_labels.items():
        label = getattr(info, "infotext", None)
        if label and label in parsed and not skip(setting):
            with contextlib.suppress(TypeError, ValueError):
                out[setting] = cast_setting(info.default, parsed[label])
    return out
