"""Images at the API boundary: strict base64 decoding with size and pixel caps, and encoding that keeps infotext."""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import TYPE_CHECKING, Any

from modules.errors import ValidationError
from modules.image_metadata import build_user_comment_exif, resolve_format

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES = 32 * 1024 * 1024
"""Largest decoded image file accepted (a 2048x2048 PNG is about 12 MB)."""

MAX_IMAGE_PIXELS = 64 * 1024 * 1024
"""Largest width*height accepted, checked from the header before any pixel is decoded (decompression bombs)."""

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.ASCII
)
_B64_ALPHABET = re.compile(rb"^[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*$")


def _strip_data_uri(text: str, field: str) -> str:
    if not text.startswith("data:"):
        return text
    m = _DATA_URI.match(text)
    if m is None or not m.group("b64"):
        raise ValidationError(field, "a data URI must look like 'data:image/png;base64,<data>'")
    mime = (m.group("mime") or "").lower()
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise ValidationError(field, f"the data URI declares {mime!r}, not an image type")
    return text[m.end() :]


def decode_base64_bytes(text: Any, field: str = "image", max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Raw or data-URI base64 to bytes; anything outside the base64 alphabet is refused, not skipped."""
    if not isinstance(text, str):
        raise ValidationError(field, f"must be a base64 string, got {type(text).__name__}")
    if text.startswith(("http://", "https://")):
        raise ValidationError(field, "image URLs are not accepted; send the image as base64")
    payload = _strip_data_uri(text.strip(), field).strip()
    if not payload:
        raise ValidationError(field, "the image is empty")
    if len(payload) > (max_bytes * 4) // 3 + 16:
        raise ValidationError(field, f"the image is larger than {max_bytes // (1024 * 1024)} MB")
    raw = payload.encode("ascii", errors="replace")
    if not _B64_ALPHABET.match(raw):
        raise ValidationError(field, "is not valid base64 (characters outside the base64 alphabet)")
    raw = raw.replace(b"\r", b"").replace(b"\n", b"")
    raw += b"=" * (-len(raw) % 4)  # clients often drop the padding; that alone is not ambiguous
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValidationError(field, f"is not valid base64 ({e})") from None
    if len(data) > max_bytes:
        raise ValidationError(field, f"the image is larger than {max_bytes // (1024 * 1024)} MB")
    return data


def open_image_bytes(data: bytes, field: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Fully decode image bytes, refusing non-images, truncated files and oversized (bomb) images."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            fmt = probe.format
            if width * height > max_pixels:
                raise ValidationError(
                    field,
                    f"the image is {width}x{height} pixels, more than the "
                    f"{max_pixels // (1024 * 1024)} megapixel limit",
                )
            probe.verify()  # checks chunk CRCs and structure without decoding pixels
        image = Image.open(io.BytesIO(data))
        image.load()  # verify() does not decode; a truncated body only fails here
    except ValidationError:
        raise
    except UnidentifiedImageError:
        raise ValidationError(field, "is not an image (or not in a format that can be read)") from None
    except Image.DecompressionBombError:
        raise ValidationError(field, "the image has too many pixels to be opened safely") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as e:
        raise ValidationError(field, f"the image is damaged or truncated ({type(e).__name__}: {e})") from None
    image.format = image.format or fmt
    return image


def decode_base64_to_image(text: Any, field: str = "image") -> Image.Image:
    """A1111's helper name: strict base64 (raw or data URI) to a fully loaded PIL image."""
    return open_image_bytes(decode_base64_bytes(text, field), field)


def encode_pil_to_base64(
    image: Image.Image, format: str = "png", infotext: str | None = None, quality: int = 80, lossless_webp: bool = False
) -> str:
    """Encode as A1111's API does (samples_format), keeping the infotext: PNG text chunk, JPEG/WebP EXIF."""
    from PIL import PngImagePlugin

    text = infotext if infotext is not None else image.info.get("parameters")
    ext, pil_format = resolve_format(format)
    buf = io.BytesIO()
    if ext == ".png":
        pnginfo = None
        if isinstance(text, str):
            pnginfo = PngImagePlugin.PngInfo()
            pnginfo.add_text("parameters", text)
        image.save(buf, format="PNG", pnginfo=pnginfo)
    elif ext in (".jpg", ".jpeg", ".webp"):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        kwargs: dict[str, Any] = {"quality": quality}
        if ext == ".webp":
            kwargs["lossless"] = lossless_webp
        if isinstance(text, str):
            kwargs["exif"] = build_user_comment_exif(text)
        rgb.save(buf, format=pil_format, **kwargs)
    else:
        raise ValueError(f"the API cannot encode images as {format!r}; use png, jpg or webp")
    return base64.b64encode(buf.getvalue()).decode("ascii")
