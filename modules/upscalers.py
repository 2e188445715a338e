"""L2 backend: the upscaler registry by A1111 name: latent modes, model-free image upscalers (model ones join later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

# A1111's shared.latent_upscale_modes: torch interpolate mode and antialias per dropdown name.
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
LATENT_UPSCALE_DEFAULT = "Latent"
# Image-space upscalers that need no model: A1111's UpscalerNone, UpscalerLanczos and UpscalerNearest.
IMAGE_UPSCALERS: dict[str, Image.Resampling | None] = {
    "None": None,
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class ImageUpscaler:
    """One image upscaler: `upscale(image, scale)` returns the image grown by about `scale`."""

    name: str
    upscale: Callable[[Image.Image, float], Image.Image]
    scale: float = 4.0  # the model's native scale (A1111's UpscalerData.scale); model-free ones report 4


def _pil_upscaler(name: str, resample: Image.Resampling | None) -> ImageUpscaler:
    def upscale(image: Image.Image, scale: float) -> Image.Image:
        if resample is None:
            return image
        return image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)

    return ImageUpscaler(name, upscale)


class UpscalerRegistry:
    """Image upscalers by name; model upscalers (Extras) register here and appear in every dropdown."""

    def __init__(self) -> None:
        self._items: dict[str, ImageUpscaler] = {n: _pil_upscaler(n, r) for n, r in IMAGE_UPSCALERS.items()}

    def register(self, upscaler: ImageUpscaler) -> None:
        self._items[upscaler.name] = upscaler

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str | None) -> ImageUpscaler | None:
        return self._items.get(name) if name else None


DEFAULT_REGISTRY = UpscalerRegistry()


def hires_upscaler_names(registry: UpscalerRegistry | None = None) -> list[str]:
    """The Hires. fix Upscaler dropdown: latent modes first, then the image upscalers, as A1111 orders them."""
    return [*LATENT_UPSCALE_MODES, *(registry or DEFAULT_REGISTRY).names()]


def is_known(name: str, registry: UpscalerRegistry | None = None) -> bool:
    return name in LATENT_UPSCALE_MODES or (registry or DEFAULT_REGISTRY).get(name) is not None
