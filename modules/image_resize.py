"""L2 backend: A1111's images.resize_image: the four resize modes, growing through a named image upscaler."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from modules.upscalers import DEFAULT_REGISTRY, UpscalerRegistry

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
LANCZOS = Image.Resampling.LANCZOS


ModelUpscale = Callable[[Image.Image, str, tuple[int, int]], Image.Image]


def upscale_to(image: Image.Image, width: int, height: int, upscaler: str | None,
               registry: UpscalerRegistry | None = None, model_upscale: ModelUpscale | None = None) -> Image.Image:
    """Resize to exactly width x height; growing runs the upscaler to the scale first (A1111's resize()).

    The upscaler's output is cut down to a multiple of 8 before the exact Lanczos fit, as A1111 does; "None",
    shrinking and no upscaler are a plain Lanczos resize. A name that is not a model-free upscaler goes to
    `model_upscale(image, name, (w, h))` (the model upscalers of models/ESRGAN..., run tiled with progress).
    """
    chosen = (registry or DEFAULT_REGISTRY).get(upscaler)
    if chosen is None and upscaler and upscaler != "None" and model_upscale is not None:
        scale = max(width / image.width, height / image.height)
        if scale > 1.0:
            dest = (int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8))
            image = model_upscale(image, upscaler, dest)
    elif chosen is not None and chosen.name != "None":
        scale = max(width / image.width, height / image.height)
        if scale > 1.0:
            dest = (int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8))
            image = chosen.upscale(image, scale)
            if image.size != dest:
                image = image.resize(dest, resample=LANCZOS)
    if image.size != (width, height):
        image = image.resize((width, height), resample=LANCZOS)
    return image


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int, upscaler_name: str | None = None,
                 registry: UpscalerRegistry | None = None, model_upscale: ModelUpscale | None = None) -> Image.Image:
    """A1111's four modes: 0 just resize, 1 crop and resize (fill the box, crop the overhang), 2 resize and fill
    (fit inside, stretch the edge rows/columns into the gap), 3 just resize (the latent upscale is done elsewhere;
    here it is a plain resize, as A1111's mode 3 with no upscaler)."""
    if resize_mode not in (0, 1, 2, 3):
        raise ValueError(f"resize_mode must be 0-3 ({', '.join(RESIZE_MODES)}), got {resize_mode!r}")
    if resize_mode in (0, 3):
        return upscale_to(im, width, height, upscaler_name if resize_mode == 0 else "None", registry, model_upscale)
    ratio, src_ratio = width / height, im.width / im.height
    if resize_mode == 1:
        # Scale so the image covers the box, then crop the centre.
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
        resized = upscale_to(im, src_w, src_h, upscaler_name, registry, model_upscale)
        out = Image.new("RGB", (width, height))
        out.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return out
    # Resize and fill: fit inside the box, then fill the gap with the stretched edge of the image.
    src_w = width if ratio < src_ratio else im.width * height // im.height
    src_h = height if ratio >= src_ratio else im.height * width // im.width
    resized = upscale_to(im, src_w, src_h, upscaler_name, registry)
    out = Image.new("RGB", (width, height))
    out.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill = height // 2 - src_h // 2
        if fill > 0:
            out.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
            out.paste(resized.resize((width, fill), box=(0, resized.height, width, resized.height)),
                      box=(0, fill + src_h))
    elif ratio > src_ratio:
        fill = width // 2 - src_w // 2
        if fill > 0:
            out.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
            out.paste(resized.resize((fill, height), box=(resized.width, 0, resized.width, height)),
                      box=(fill + src_w, 0))
    return out


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """Any image mode -> RGB; transparency over `background` (A1111's img2img_background_color)."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background)
        base.alpha_composite(rgba)
        return base.convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale: scale to 8 bits, not clip
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray((arr / top * 255).round().astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")
