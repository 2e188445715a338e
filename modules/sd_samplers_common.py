"""A1111's `modules.sd_samplers_common`: the VAE helpers extensions call; the LDM `Sampler` class is not here."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])

approximation_indexes = {"Full": 0, "Approx NN": 1, "Approx cheap": 2, "TAESD": 3}
"""A1111's VAE method names; only "Full" decodes/encodes with the model's VAE here."""


class InterruptedException(BaseException):
    """A1111 raises this inside the sampler to stop it; our denoiser checks the job's interrupt flag instead."""


def setup_img2img_steps(p: Any, steps: int | None = None) -> tuple[int, int]:
    """(steps, t_enc) of an img2img pass, as A1111: the denoising strength decides how many steps run."""
    requested = steps or p.steps
    if getattr(p, "opt", None) and p.opt("img2img_fix_steps", False) or steps is not None:
        steps = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested - 1
    else:
        steps = requested
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


def _model(model: Any) -> Any:
    if model is None:
        from modules import shared

        model = shared.sd_model
    if model is None:
        from modules.errors import WebUIError

        raise WebUIError("no model is loaded: load a checkpoint first")
    return model


def _check_method(approximation: Any) -> None:
    if approximation not in (None, 0, "Full"):
        from modules.errors import WebUIError

        raise WebUIError(f"VAE method {approximation!r} is not available to extensions here; use 'Full'")


def samples_to_images_tensor(sample: Any, approximation: Any = None, model: Any = None) -> Any:
    """Scaled latents -> images in [-1, 1] through the model's VAE."""
    _check_method(approximation)
    return _model(model).decode_first_stage(sample)


def images_tensor_to_samples(image: Any, approximation: Any = None, model: Any = None) -> Any:
    """Images in [0, 1] -> scaled latents (A1111's input range; it maps to [-1, 1] before encoding)."""
    _check_method(approximation)
    m = _model(model)
    return m.get_first_stage_encoding(m.encode_first_stage(image * 2.0 - 1.0))


def single_sample_to_image(sample: Any, approximation: Any = None) -> Any:
    import numpy as np
    from PIL import Image

    x = samples_to_images_tensor(sample.unsqueeze(0), approximation)[0]
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(x))


def __getattr__(name: str) -> Any:
    if name in ("Sampler", "sample_to_image", "samples_to_image_grid", "store_latent", "apply_refiner",
                "TorchHijack", "replace_torchsde_browinan"):
        from modules.shared import ldm_only_error

        raise ldm_only_error(f"modules.sd_samplers_common.{name}")
    raise AttributeError(f"module 'modules.sd_samplers_common' has no attribute {name!r}")
