"""L2 backend: img2img colour correction (`img2img_color_correction`): the result's colours matched to the input's.

As A1111: the a/b (colour) histograms of the result, in CIELAB, are matched to the init image's, and the result
keeps its own lightness (A1111 matches all three channels, then blends the original luminosity back in).
Pillow's littlecms does the sRGB <-> LAB conversion; histogram matching is a CDF lookup.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageCms

_SRGB = ImageCms.createProfile("sRGB")
_LAB = ImageCms.createProfile("LAB")
_TO_LAB = ImageCms.buildTransformFromOpenProfiles(_SRGB, _LAB, "RGB", "LAB")
_TO_RGB = ImageCms.buildTransformFromOpenProfiles(_LAB, _SRGB, "LAB", "RGB")


def to_lab(image: Image.Image) -> np.ndarray:
    """[H, W, 3] uint8 LAB (Pillow's 8-bit encoding) of an image."""
    return np.asarray(ImageCms.applyTransform(image.convert("RGB"), _TO_LAB))


def _match_channel(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map source values so their histogram follows the reference's (both uint8)."""
    src_counts = np.bincount(source.ravel(), minlength=256).astype(np.float64)
    ref_counts = np.bincount(reference.ravel(), minlength=256).astype(np.float64)
    src_cdf = np.cumsum(src_counts) / src_counts.sum()
    ref_cdf = np.cumsum(ref_counts) / ref_counts.sum()
    lookup = np.interp(src_cdf, ref_cdf, np.arange(256))
    return np.clip(np.round(lookup[source]), 0, 255).astype(np.uint8)


def _ordered(channel: np.ndarray) -> np.ndarray:
    """Pillow stores a/b as signed bytes; shift them to 0..255 in their real order for matching."""
    return (channel.view(np.int8).astype(np.int16) + 128).astype(np.uint8)


def _stored(channel: np.ndarray) -> np.ndarray:
    return (channel.astype(np.int16) - 128).astype(np.int8).view(np.uint8)


def apply(reference_lab: np.ndarray, image: Image.Image) -> Image.Image:
    """`image` with its colour distribution matched to the reference's, its own lightness kept."""
    lab = to_lab(image).copy()
    for channel in (1, 2):
        matched = _match_channel(_ordered(np.ascontiguousarray(lab[..., channel])),
                                 _ordered(np.ascontiguousarray(reference_lab[..., channel])))
        lab[..., channel] = _stored(matched)
    out = ImageCms.applyTransform(Image.fromarray(lab, "LAB"), _TO_RGB)
    out.info.update(image.info)
    return out
