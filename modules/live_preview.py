"""Live previews during sampling: TAESD when its weights are on disk, else the cheap linear approximation."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules import sd_vae_approx

log = logging.getLogger(__name__)
_taesd: dict[str, Any] = {}
_lock = threading.Lock()


def _taesd_model(models_dir: Path, is_sdxl: bool, device: Any) -> Any:
    path = sd_vae_approx.find_taesd(models_dir, is_sdxl)
    if path is None:
        return None
    key = f"{path}:{device}"
    with _lock:
        if key not in _taesd:
            try:
                _taesd[key] = sd_vae_approx.load_taesd(path, device=device)
            except Exception as e:  # a broken preview model must not stop generation
                log.warning("TAESD at %s could not be loaded (%s); using the cheap preview", path, e)
                _taesd[key] = None
        return _taesd[key]


def preview_image(method: str, latent: torch.Tensor, is_sdxl: bool, models_dir: Path | None,
                  decode_full: Any = None) -> Image.Image:
    """One preview image of `latent` (C, H, W) by the `show_progress_type` setting.

    "Full" decodes with the model's VAE; "TAESD" uses TAESD weights from models/VAE-approx when present and
    falls back to the linear approximation otherwise; "Approx cheap" always uses the approximation.
    """
    if method == "Full" and decode_full is not None:
        return decode_full(latent)
    if method == "TAESD" and models_dir is not None:
        model = _taesd_model(Path(models_dir), is_sdxl, latent.device)
        if model is not None:
            return sd_vae_approx.taesd_decode(model, latent)
    return sd_vae_approx.cheap_approximation(latent.float(), is_sdxl)
