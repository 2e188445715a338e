"""L2 backend: the model's VAE as processing uses it: encode (posterior mean), decode with NaN fallback, tensor<->PIL."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.errors import WebUIError

log = logging.getLogger(__name__)


class NansError(WebUIError):
    """A1111's NansException: the model or VAE produced NaN values at this precision."""


def decode_latents(model: Any, latents: torch.Tensor, auto_upcast: bool = True) -> torch.Tensor:
    """VAE decode to [B, 3, H, W] in 0..1; retries in fp32 on NaNs (A1111's auto VAE precision)."""
    vae = model.pipe.vae
    param = next(vae.parameters())
    scaled = latents / vae.config.scaling_factor
    if getattr(vae.config, "shift_factor", None):
        scaled = scaled + vae.config.shift_factor
    with torch.no_grad():
        out = vae.decode(scaled.to(param.device, param.dtype), return_dict=False)[0]
        if torch.isnan(out).any() and auto_upcast and param.dtype != torch.float32:
            log.warning("VAE produced NaNs in %s; decoding again in float32", param.dtype)
            vae.to(torch.float32)
            out = vae.decode(scaled.to(param.device, torch.float32), return_dict=False)[0]
    if torch.isnan(out).any():
        # Say so instead of saving a black image.
        raise NansError("The image came out as NaN values (the model or VAE overflowed at this precision). "
                        "Try lower prompt weights, another VAE, or --no-half / --no-half-vae.")
    return ((out.float() + 1) / 2).clamp(0, 1)


def encode_images(model: Any, images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in 0..1 -> scaled latents with the model's VAE.

    A1111 samples the VAE posterior with torch's global, unseeded generator, which makes that draw irreproducible;
    we take the posterior mean, the value those samples scatter around (the SD VAEs' posterior std is tiny).
    """
    vae = model.pipe.vae
    param = next(vae.parameters())
    with torch.no_grad():
        dist = vae.encode((images * 2 - 1).to(param.device, param.dtype)).latent_dist
    latents = dist.mean.float()
    if getattr(vae.config, "shift_factor", None):
        latents = latents - vae.config.shift_factor
    return latents * vae.config.scaling_factor


def to_pil(x: torch.Tensor) -> Image.Image:
    """[3, H, W] in 0..1 -> an RGB image (rounded, as A1111 saves)."""
    arr = (x.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype("uint8")
    return Image.fromarray(arr)


def from_pil(image: Image.Image) -> torch.Tensor:
    """An image -> [3, H, W] float32 in 0..1 (RGB)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def images_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """A batch of same-size images -> [B, 3, H, W] in 0..1."""
    return torch.stack([from_pil(im) for im in images])
