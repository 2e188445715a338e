"""Names, folders and facts for the bundled offline diffusers config folders (configs/<variant>/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIGS_DIR: Path = Path(__file__).resolve().parent.parent / "configs"

# One entry per bundled folder. Everything the loader needs to pick a folder and set up a pipeline without reading
# the JSON; tests/unit/test_configs.py checks each fact against the folder's files so the two cannot drift apart.
_VARIANTS: dict[str, dict[str, Any]] = {
    "sd1": {
        "pipeline_class": "StableDiffusionPipeline",
        "family": "sd1",
        "is_inpainting": False,
        "prediction_type": "epsilon",
        "default_resolution": 512,
        "diffusers_model_type": "v1",
    },
    "sd1-inpainting": {
        "pipeline_class": "StableDiffusionInpaintPipeline",
        "family": "sd1",
        "is_inpainting": True,
        "prediction_type": "epsilon",
        "default_resolution": 512,
        "diffusers_model_type": "inpainting",
    },
    "sd1-instruct-pix2pix": {
        "pipeline_class": "StableDiffusionInstructPix2PixPipeline",
        "family": "sd1",
        "is_inpainting": False,
        "prediction_type": "epsilon",
        "default_resolution": 512,
        "diffusers_model_type": "instruct-pix2pix",
    },
    "sd2-512": {
        "pipeline_class": "StableDiffusionPipeline",
        "family": "sd2",
        "is_inpainting": False,
        "prediction_type": "epsilon",
        "default_resolution": 512,
        # diffusers calls every SD2 checkpoint "v2"; epsilon vs v-prediction must be decided by the app.
        "diffusers_model_type": "v2",
    },
    "sd2-768-v": {
        "pipeline_class": "StableDiffusionPipeline",
        "family": "sd2",
        "is_inpainting": False,
        "prediction_type": "v_prediction",
        "default_resolution": 768,
        "diffusers_model_type": "v2",
    },
    "sd2-inpainting": {
        "pipeline_class": "StableDiffusionInpaintPipeline",
        "family": "sd2",
        "is_inpainting": True,
        "prediction_type": "epsilon",
        "default_resolution": 512,
        "diffusers_model_type": "inpainting_v2",
    },
    "sdxl-base": {
        "pipeline_class": "StableDiffusionXLPipeline",
        "family": "sdxl",
        "is_inpainting": False,
        "prediction_type": "epsilon",
        "default_resolution": 1024,
        "diffusers_model_type": "xl_base",
    },
    "sdxl-refiner": {
        "pipeline_class": "StableDiffusionXLImg2ImgPipeline",
        "family": "sdxl",
        "is_inpainting": False,
        "prediction_type": "epsilon",
        "default_resolution": 1024,
        "diffusers_model_type": "xl_refiner",
    },
    "sdxl-inpainting": {
        "pipeline_class": "StableDiffusionXLInpaintPipeline",
        "family": "sdxl",
        "is_inpainting": True,
        "prediction_type": "epsilon",
        "default_resolution": 1024,
        "diffusers_model_type": "xl_inpaint",
    },
}

VARIANTS: tuple[str, ...] = tuple(_VARIANTS)

# Latent scaling factors from the original LDM/SGM yaml files (model.params.scale_factor).
_SCALING_FACTOR = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025}


class UnknownVariantError(ValueError):
    """A config variant name that has no bundled folder."""


def _check(variant: str) -> dict[str, Any]:
    if variant not in _VARIANTS:
        raise UnknownVariantError(f"unknown model config variant {variant!r}; expected one of: {', '.join(VARIANTS)}")
    return _VARIANTS[variant]


def config_dir(variant: str) -> Path:
    """Return the diffusers-format config folder for variant (e.g. configs/sd1), for from_single_file(config=...)."""
    _check(variant)
    return CONFIGS_DIR / variant


def variant_info(variant: str) -> dict[str, Any]:
    """Return the facts about variant the loader needs (a fresh dict; safe to modify).

    Keys: variant, pipeline_class, family ("sd1"/"sd2"/"sdxl"), is_sdxl, is_sd2, is_inpainting, prediction_type
    ("epsilon"/"v_prediction"), scaling_factor (VAE latent scale), default_resolution (512/768/1024),
    diffusers_model_type (what diffusers' infer_diffusers_model_type returns for such a checkpoint).
    """
    facts = _check(variant)
    family = facts["family"]
    return {
        "variant": variant,
        **facts,
        "is_sdxl": family == "sdxl",
        "is_sd2": family == "sd2",
        "scaling_factor": _SCALING_FACTOR[family],
    }
