"""L2 backend: the extra UNet input of inpainting (9-channel) and instruct-pix2pix (8-channel) checkpoints."""

from __future__ import annotations

from typing import Any

import torch

from modules import vae

LATENT_CHANNELS_SD = 4


def kind(model: Any) -> str:
    """"inpainting" (mask + masked-image latent), "instruct-pix2pix" (image latent) or "" (plain UNet)."""
    unet = model.pipe.unet
    extra = int(unet.config.in_channels) - int(unet.config.out_channels)
    if extra == LATENT_CHANNELS_SD + 1:
        return "inpainting"
    if extra == LATENT_CHANNELS_SD:
        return "instruct-pix2pix"
    return ""


def _latent_mask(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    return torch.nn.functional.interpolate(mask.float(), size=latent_hw, mode="bilinear", align_corners=False)


def inpainting(model: Any, source: torch.Tensor, mask: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """[B, 1 + 4, h, w]: the mask at latent size, then the latent of the source with the masked part greyed.

    `source` is [B, 3, H, W] in 0..1, `mask` [B, 1, H, W] with 1 where the model paints. `weight` is A1111's
    `inpainting_mask_weight`: 1 greys the masked part fully, 0 shows the model the whole original.
    """
    signed = source * 2 - 1
    masked = torch.lerp(signed, signed * (1.0 - mask), weight)
    latents = vae.encode_images(model, (masked + 1) / 2)
    return torch.cat([_latent_mask(mask, tuple(latents.shape[-2:])).to(latents), latents], dim=1)


def for_txt2img(model: Any, batch: int, width: int, height: int) -> torch.Tensor | None:
    """What an inpainting checkpoint sees in txt2img (A1111): a grey image, all of it masked; an instruct-pix2pix
    one gets no image (zero latents)."""
    which = kind(model)
    if which == "instruct-pix2pix":
        return torch.zeros(batch, LATENT_CHANNELS_SD, height // 8, width // 8)
    if which != "inpainting":
        return None
    grey = torch.full((batch, 3, height, width), 0.5)
    return inpainting(model, grey, torch.ones(batch, 1, height, width))


def for_img2img(model: Any, source: torch.Tensor, mask: torch.Tensor | None, weight: float = 1.0
                ) -> torch.Tensor | None:
    """The conditioning for an img2img/inpaint pass of `model` over `source` (0..1), None for a plain UNet."""
    which = kind(model)
    if which == "inpainting":
        if mask is None:
            mask = torch.ones(source.shape[0], 1, *source.shape[-2:])
        return inpainting(model, source, mask, weight)
    if which == "instruct-pix2pix":
        return vae.encode_images(model, source)
    return None
