"""Cheap live previews: a linear latent->RGB map ("Approx cheap") and TAESD decoding when its weights are on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.errors import ModelLoadError, ValidationError

# Latent channel -> (R, G, B) weights; the result is in [-1, 1] like the VAE's output.
# SD1/SD2: Keturn's fit for SD 1.4, "Decoding latents to RGB without upscaling",
# https://discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204/2 (also A1111's "Approx cheap").
SD_LATENT_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
# SDXL: the fit published as `latent_rgb_factors` of the SDXL latent format in ComfyUI's comfy/latent_formats.py.
SDXL_LATENT_RGB = (
    (0.3920, 0.4054, 0.4549),
    (-0.2634, -0.0196, 0.0653),
    (0.0568, 0.1687, -0.0755),
    (-0.3112, -0.2359, -0.2076),
)

# Folder names (diffusers layout) and single decoder files (A1111 / madebyollin names) we look for, in order.
_TAESD_DIRS = {False: ("taesd",), True: ("taesdxl",)}
_TAESD_FILES = {False: ("taesd_decoder.safetensors",), True: ("taesdxl_decoder.safetensors",)}
_DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _single_latent(latent: torch.Tensor) -> torch.Tensor:
    if not isinstance(latent, torch.Tensor):
        raise ValidationError("latent", f"expected a torch.Tensor, got {type(latent).__name__}")
    if latent.dim() == 4 and latent.shape[0] == 1:
        latent = latent[0]
    if latent.dim() != 3 or latent.shape[0] != 4:
        raise ValidationError("latent", f"expected one 4-channel latent (4, H, W), got shape {tuple(latent.shape)}")
    return latent


def latent_to_rgb(latent: torch.Tensor, is_sdxl: bool) -> torch.Tensor:
    """Linear approximation of the VAE decode at latent resolution: (4, H, W) -> (3, H, W), roughly in [-1, 1]."""
    latent = _single_latent(latent).float()
    weights = torch.tensor(SDXL_LATENT_RGB if is_sdxl else SD_LATENT_RGB, dtype=torch.float32, device=latent.device)
    return torch.einsum("chw,cr->rhw", latent, weights)


def to_image(rgb: torch.Tensor) -> Image.Image:
    """(3, H, W) values in [-1, 1] -> RGB image; out-of-range values clamp, NaN becomes mid grey."""
    rgb = torch.nan_to_num(rgb.detach().float().cpu(), nan=0.0)
    pixels = ((rgb.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()), mode="RGB")


def cheap_approximation(latent: torch.Tensor, is_sdxl: bool) -> Image.Image:
    """Preview image (latent size, i.e. 1/8 of the output) for one latent of shape (4, H, W) or (1, 4, H, W)."""
    return to_image(latent_to_rgb(latent, is_sdxl))


def find_taesd(models_dir: Path | str, is_sdxl: bool) -> Path | None:
    """Local TAESD weights for SD1/SD2 (taesd) or SDXL (taesdxl), or None; never downloads.

    Looks in ``<models_dir>/VAE-approx`` (A1111's folder) and in ``models_dir`` itself for a diffusers folder
    (``taesd/`` with config.json and safetensors weights) or a single ``taesd_decoder.safetensors`` file.
    """
    base = Path(models_dir)
    for folder in (base / "VAE-approx", base):
        for name in _TAESD_DIRS[is_sdxl]:
            candidate = folder / name
            if (candidate / "config.json").is_file() and (candidate / _DIFFUSERS_WEIGHTS).is_file():
                return candidate
        for name in _TAESD_FILES[is_sdxl]:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def _decoder_state_from_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename madebyollin's decoder keys to diffusers' DecoderTiny keys.

    The original decoder is one nn.Sequential that starts with a parameter-free clamp module; diffusers applies
    that clamp in forward() instead, so every layer index is one lower.
    """
    renamed = {}
    for key, tensor in state.items():
        key = key.removeprefix("decoder.")
        index, _, rest = key.partition(".")
        if not index.isdigit() or not rest:
            raise ValueError(f"unexpected tensor name {key!r} for a TAESD decoder")
        renamed[f"layers.{int(index) - 1}.{rest}"] = tensor
    return renamed


def load_taesd(path: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """Load a TAESD model found by :func:`find_taesd` as diffusers ``AutoencoderTiny`` from local files only.

    A single decoder file gives a model whose decoder is loaded (the encoder is left untrained: decode only).
    """
    from diffusers import AutoencoderTiny  # heavy import, only when a preview really needs TAESD

    path = Path(path)
    try:
        if path.is_dir():
            model = AutoencoderTiny.from_pretrained(path, local_files_only=True, use_safetensors=True)
        else:
            from safetensors.torch import load_file

            model = AutoencoderTiny()
            missing, unexpected = model.decoder.load_state_dict(
                _decoder_state_from_original(load_file(str(path))), strict=False
            )
            if missing or unexpected:
                raise ValueError(f"decoder weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(path, f"not a usable TAESD model ({exc})") from exc
    return model.to(device=device, dtype=dtype).eval()


@torch.no_grad()
def taesd_decode(model, latent: torch.Tensor) -> Image.Image:
    """Full-size preview of one latent (4, H, W) or (1, 4, H, W) with a TAESD ``AutoencoderTiny``."""
    param = next(model.parameters())
    latent = _single_latent(latent).to(device=param.device, dtype=param.dtype)
    # TAESD works directly on the UNet's (scaled) latents; its scaling_factor is 1.
    decoded = model.decode(latent.unsqueeze(0)).sample[0]
    return to_image(decoded)
