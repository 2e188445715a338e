"""L2 backend: inpainting masks as A1111 shapes them: binarise, blur per axis, crop box, fill the masked area."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter
from scipy.ndimage import convolve1d


def create_binary_mask(image: Image.Image, round: bool = True) -> Image.Image:  # noqa: A002 - A1111's name
    """A mask image -> "L". A transparent RGBA mask uses its alpha (A1111 masks drawn on a layer); `round`
    thresholds at half so anti-aliased brush edges do not leave a faint half-mask."""
    transparent = image.mode == "RGBA" and image.getextrema()[-1] != (255, 255)
    mask = image.split()[-1] if transparent else image.convert("L")
    if round:
        mask = mask.point(lambda v: 255 if v > 127 else 0)
    return mask


def grow(mask: Image.Image, pixels: int) -> Image.Image:
    """Grow (pixels > 0) or shrink (< 0) the mask's white area by that many pixels."""
    if pixels == 0:
        return mask
    size = 2 * abs(int(pixels)) + 1
    return mask.filter(ImageFilter.MaxFilter(size) if pixels > 0 else ImageFilter.MinFilter(size))


def blur(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's separate X/Y Gaussian mask blur (sigma = the blur value, in pixels)."""
    if blur_x <= 0 and blur_y <= 0:
        return mask
    arr = np.asarray(mask, dtype=np.float32)
    for axis, sigma in ((1, blur_x), (0, blur_y)):
        if sigma <= 0:
            continue
        radius = int(2.5 * sigma + 0.5)
        xs = np.arange(-radius, radius + 1, dtype=np.float32)
        kernel = np.exp(-(xs**2) / (2 * sigma * sigma))
        kernel /= kernel.sum()
        arr = convolve1d(arr, kernel, axis=axis, mode="nearest")
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")


def get_crop_region(mask: Image.Image | np.ndarray, pad: int = 0) -> tuple[int, int, int, int]:
    """The box (x1, y1, x2, y2) around the mask's non-zero pixels, grown by `pad` and kept inside the image;
    the whole image for an empty mask. Takes a PIL image or (as extensions pass) a NumPy array."""
    if isinstance(mask, np.ndarray):
        mask = Image.fromarray(mask.astype(np.uint8))
    box = mask.convert("L").point(lambda v: 255 if v > 0 else 0).getbbox()
    if box is None:
        return 0, 0, mask.width, mask.height
    x1, y1, x2, y2 = box
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.width), min(y2 + pad, mask.height)


def expand_crop_region(crop_region: tuple[int, int, int, int], processing_width: int, processing_height: int,
                       image_width: int, image_height: int) -> tuple[int, int, int, int]:
    """Grow the box to the processing size's aspect ratio (centred, shifted back inside the image)."""
    x1, y1, x2, y2 = crop_region
    ratio_crop = (x2 - x1) / (y2 - y1)
    ratio_processing = processing_width / processing_height
    if ratio_crop > ratio_processing:
        desired = int((x2 - x1) / ratio_processing + 0.5)
        diff = int((desired - (y2 - y1)) / 2)
        y1, y2 = y1 - diff, y2 + diff
        if y2 >= image_height:
            y1, y2 = y1 - (y2 - image_height), image_height
        if y1 < 0:
            y2, y1 = min(y2 - y1, image_height), 0
    else:
        desired = int((y2 - y1) * ratio_processing + 0.5)
        diff = int((desired - (x2 - x1)) / 2)
        x1, x2 = x1 - diff, x2 + diff
        if x2 >= image_width:
            x1, x2 = x1 - (x2 - image_width), image_width
        if x1 < 0:
            x2, x1 = min(x2 - x1, image_width), 0
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """"fill" masked content: the masked area painted with the colours around it.

    Normalised blurs at shrinking radii (blur of the kept pixels divided by the blur of their weight), each
    laid over the previous, so large holes get the broad surrounding colour and their edges the nearby detail.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    keep = 1.0 - np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    out = rgb.copy()
    for radius in (256, 64, 16, 4, 2, 1):
        weight = Image.fromarray((keep * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
        w = np.asarray(weight, dtype=np.float32) / 255.0
        colour = np.stack([np.asarray(Image.fromarray((rgb[..., c] * keep).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius)), dtype=np.float32) for c in range(3)], axis=-1)
        reached = w > 0.05  # enough kept pixels nearby for a stable average
        out[reached] = colour[reached] / w[reached, None]
    out = out * (1 - keep[..., None]) + rgb * keep[..., None]
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")
