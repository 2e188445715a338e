"""Store infotext in image files (PNG text chunk, EXIF UserComment, GIF comment) and read it back, as A1111."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modules.errors import WebUIError
from modules.infotext import find_sampler_name

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

EXIF_IFD_POINTER = 0x8769
USER_COMMENT = 0x9286
UNICODE_PREFIX = b"UNICODE\0"
_ASCII_PREFIX = b"ASCII\0\0\0"
_JIS_PREFIX = b"JIS\0\0\0\0\0"
_UNDEFINED_PREFIX = b"\0" * 8
# A JPEG APP1 segment holds at most 65535 bytes including its 2-byte length.
MAX_JPEG_EXIF_BYTES = 65533

# Keys of `image.info` that are technical, not metadata a user wants to see (PNG Info tab, `items`).
IGNORED_INFO_KEYS = frozenset(
    {
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "dpi",
        "exif",
        "loop",
        "background",
        "timestamp",
        "duration",
        "progressive",
        "progression",
        "icc_profile",
        "chromaticity",
        "photoshop",
        # Not in A1111's list, but equally technical (would otherwise show up as junk in PNG Info).
        "transparency",
        "gamma",
        "srgb",
        "aspect",
        "adobe",
        "adobe_transform",
        "version",
        "xmp",
    }
)

# NovelAI sampler ids that A1111's alias table misses (A1111 turned them all into "Euler a").
_NOVELAI_SAMPLERS = {
    "k_dpmpp_2s_ancestral": "DPM++ 2S a",
    "k_dpm_2_ancestral": "DPM2 a",
    "ddim_v3": "DDIM",
}


class ImageWriteError(WebUIError, OSError):
    """An image file could not be written; names the file. Nothing partial is left behind."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"Could not save image {self.path}: {reason}")


class ImageFormatError(WebUIError, ValueError):
    """The requested file format is unknown to Pillow."""


class InfotextTooLargeError(WebUIError, ValueError):
    """The infotext does not fit in the format's metadata block (JPEG EXIF is limited to 64 KiB)."""


def build_user_comment_exif(text: str) -> bytes:
    """EXIF block (with the `Exif\\0\\0` header) holding only UserComment = `UNICODE\\0` + UTF-16-BE text.

    Built by hand so the tag has the EXIF-mandated UNDEFINED type (Pillow's Exif writer would store
    untyped bytes as BYTE); the layout is the same as piexif's, which A1111 uses.
    """
    comment = UNICODE_PREFIX + text.encode("utf-16-be")
    exif_ifd_offset = 8 + 2 + 12 + 4  # TIFF header, IFD0 (one entry), next-IFD pointer
    data_offset = exif_ifd_offset + 2 + 12 + 4
    tiff = b"MM\0\x2a" + struct.pack(">I", 8)
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", EXIF_IFD_POINTER, 4, 1, exif_ifd_offset) + struct.pack(">I", 0)
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", USER_COMMENT, 7, len(comment), data_offset)
    tiff += struct.pack(">I", 0) + comment
    return b"Exif\0\0" + tiff


def decode_user_comment(data: bytes) -> str:
    """Text of an EXIF UserComment, honouring its 8-byte charset prefix.

    `UNICODE` is UTF-16-BE per the EXIF spec (what A1111 writes); a BOM or a little-endian byte pattern
    written by other tools is honoured too. Unknown prefixes fall back to UTF-8 like A1111.
    """
    prefix, body = data[:8], data[8:]
    if prefix == UNICODE_PREFIX:
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = body.decode("utf-16", errors="replace")
        else:
            even_zeros = body[0::2].count(0)
            odd_zeros = body[1::2].count(0)
            text = body.decode("utf-16-le" if odd_zeros > even_zeros else "utf-16-be", errors="replace")
    elif prefix == _ASCII_PREFIX:
        text = body.decode("utf-8", errors="replace")
    elif prefix == _JIS_PREFIX:
        text = body.decode("shift_jis", errors="replace")
    elif prefix == _UNDEFINED_PREFIX:
        text = body.decode("utf-8", errors="ignore")
    else:
        text = data.decode("utf-8", errors="ignore")
    return text.rstrip("\0")


def resolve_format(format: str) -> tuple[str, str]:
    """(extension with dot, Pillow format name) for "png", ".jpg", "webp"... ; raises ImageFormatError."""
    from PIL import Image

    ext = "." + format.lower().lstrip(".")
    Image.init()
    pil_format = Image.registered_extensions().get(ext)
    if pil_format is None:
        raise ImageFormatError(f"Unknown image format {format!r}: Pillow has no writer for '{ext}' files")
    return ext, pil_format


def _to_jpeg_compatible(image: Image.Image, keep_alpha: bool) -> Image.Image:
    if image.mode in ("RGB", "L") or (keep_alpha and image.mode == "RGBA"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits (65535 / 257 = 255) instead of clipping.
        return image.convert("I").point(lambda v: v / 257).convert("L").convert("RGB")
    if keep_alpha and ("A" in image.mode or "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def _encode(
    image: Image.Image,
    fp: Any,
    ext: str,
    pil_format: str,
    infotext: str | None,
    quality: int,
    lossless_webp: bool,
    extra_pnginfo: Mapping[str, Any] | None,
    section: str,
) -> None:
    from PIL import PngImagePlugin

    if ext == ".png":
        chunks: dict[str, Any] = dict(extra_pnginfo or {})
        if infotext is not None:
            chunks[section] = infotext
        pnginfo = None
        if chunks:
            pnginfo = PngImagePlugin.PngInfo()
            for key, value in chunks.items():
                # tEXt when Latin-1 encodable, else uncompressed iTXt (Pillow decides), as A1111.
                pnginfo.add_text(key, value if isinstance(value, bytes) else str(value))
        image.save(fp, format=pil_format, pnginfo=pnginfo)
    elif ext in (".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".avifs"):
        exif = build_user_comment_exif(infotext) if infotext is not None else None
        if exif is not None and ext not in (".webp", ".avif", ".avifs") and len(exif) > MAX_JPEG_EXIF_BYTES:
            raise InfotextTooLargeError(
                f"infotext of {len(infotext or '')} characters does not fit in a JPEG EXIF block "
                f"({len(exif)} > {MAX_JPEG_EXIF_BYTES} bytes)"
            )
        # A1111 drops alpha for WebP too; WebP and AVIF support it, so we keep it there.
        image = _to_jpeg_compatible(image, keep_alpha=ext != ".jpg" and ext not in (".jpeg", ".jpe", ".jfif"))
        kwargs: dict[str, Any] = {"quality": quality}
        if ext == ".webp":
            kwargs["lossless"] = lossless_webp
        if exif is not None:
            kwargs["exif"] = exif
        image.save(fp, format=pil_format, **kwargs)
    elif ext == ".gif":
        kwargs = {"comment": infotext} if infotext is not None else {}
        image.save(fp, format=pil_format, **kwargs)
    else:
        image.save(fp, format=pil_format)


def write_image_with_infotext(
    image: Image.Image,
    path: str | os.PathLike[str],
    infotext: str | None,
    format: str,
    quality: int = 80,
    lossless_webp: bool = False,
    extra_pnginfo: Mapping[str, Any] | None = None,
    *,
    pnginfo_section_name: str = "parameters",
) -> None:
    """Write `image` to `path` with the infotext where A1111 puts it, atomically.

    PNG: `parameters` text chunk plus the `extra_pnginfo` items (e.g. `extras`, `postprocessing`).
    JPEG/WebP/AVIF: EXIF UserComment (`UNICODE\\0` + UTF-16-BE). GIF: the comment extension. Other
    formats: no metadata. The file is encoded into a temporary file beside `path` and renamed over it,
    so a failure leaves neither a half-written file nor a changed old one.
    """
    ext, pil_format = resolve_format(format)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)[:40]}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise ImageWriteError(path, e.strerror or str(e)) from e
    try:
        with os.fdopen(fd, "wb") as fp:
            _encode(image, fp, ext, pil_format, infotext, quality, lossless_webp, extra_pnginfo, pnginfo_section_name)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp_path, path)
    except InfotextTooLargeError:
        _remove_quietly(tmp_path)
        raise
    except Exception as e:
        _remove_quietly(tmp_path)
        raise ImageWriteError(path, f"{type(e).__name__}: {e}") from e


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def read_user_comment(exif_bytes: bytes) -> str | None:
    """The UserComment text from raw EXIF bytes, or None if absent or unreadable."""
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(exif_bytes)
        comment = exif.get_ifd(EXIF_IFD_POINTER).get(USER_COMMENT)
    except Exception as e:  # corrupt EXIF: treat as no comment, like A1111
        log.debug("unreadable EXIF block: %s", e)
        return None
    if isinstance(comment, str):
        return comment.rstrip("\0") or None
    if not isinstance(comment, (bytes, bytearray)) or not comment:
        return None
    return decode_user_comment(bytes(comment)) or None


def novelai_to_infotext(items: Mapping[str, Any], width: int, height: int) -> str | None:
    """Convert NovelAI's `Description` + JSON `Comment` into webui infotext, as A1111 does."""
    try:
        info = json.loads(items["Comment"])
        sampler_id = str(info.get("sampler", ""))
        sampler = find_sampler_name(sampler_id) or _NOVELAI_SAMPLERS.get(sampler_id) or "Euler a"
        return (
            f"{items.get('Description', '')}\n"
            f"Negative prompt: {info.get('uc', '')}\n"
            f"Steps: {info['steps']}, Sampler: {sampler}, CFG scale: {info['scale']}, Seed: {info['seed']}, "
            f"Size: {width}x{height}, Clip skip: 2, ENSD: 31337"
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        log.warning("Could not convert NovelAI metadata to infotext: %s", e)
        return None


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    """(infotext, other metadata items) of an opened image, like A1111's `read_info_from_image`.

    The infotext is the PNG `parameters` chunk, overridden by a non-empty EXIF UserComment, else a GIF
    comment; NovelAI PNGs are converted. Other chunks (ComfyUI `prompt`/`workflow`, `extras`,
    `postprocessing`...) are returned untouched in `items`, technical keys removed.
    """
    items: dict[str, Any] = dict(image.info or {})
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        exif_bytes = items["exif"]
        comment = read_user_comment(exif_bytes) if isinstance(exif_bytes, (bytes, bytearray)) else None
        if comment:
            geninfo = comment
    elif "comment" in items:  # GIF
        comment = items.pop("comment")
        geninfo = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else comment
    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)
    if items.get("Software") == "NovelAI":
        converted = novelai_to_infotext(items, image.width, image.height)
        if converted is not None:
            geninfo = converted
    return geninfo, items
