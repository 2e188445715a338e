"""Save generated images as A1111 does (folders, numbered names, infotext, .txt sidecar) and build grids."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modules import filename_pattern
from modules.compat_surface import GridAnnotation  # noqa: F401 - A1111 name extensions import from here
from modules.errors import WebUIError
from modules.filename_pattern import FilenameContext, avoid_reserved_name, truncate_utf8
from modules.grid_annotations import draw_grid_annotations, draw_prompt_matrix, get_font
from modules.image_metadata import (
    ImageWriteError,
    InfotextTooLargeError,
    read_info_from_image,
    resolve_format,
    write_image_with_infotext,
)
from modules.image_resize import flatten, resize_image  # noqa: F401 - A1111 names extensions import from here

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULTS",
    "FilenameContext",
    "FilenameGenerator",
    "GridParams",
    "ImageSaveParams",
    "ImageWriteError",
    "draw_grid_annotations",
    "draw_prompt_matrix",
    "get_font",
    "get_next_sequence_number",
    "image_grid",
    "read_info_from_image",
    "save_image",
    "save_image_with_geninfo",
]

log = logging.getLogger(__name__)

# Settings this module reads, with A1111's names and defaults (`filenames_max_length` and
# `unix_filenames_sanitization` are command-line flags in A1111; an opts object may carry them too).
DEFAULTS: dict[str, Any] = {
    "samples_filename_pattern": "",
    "save_images_add_number": True,
    "save_images_replace_action": "Replace",
    "save_to_dirs": True,
    "grid_save_to_dirs": True,
    "directories_filename_pattern": "[date]",
    "directories_max_prompt_words": 8,
    "samples_format": "png",
    "grid_format": "png",
    "grid_extended_filename": False,
    "jpeg_quality": 80,
    "webp_lossless": False,
    "enable_pnginfo": True,
    "save_txt": False,
    "export_for_4chan": True,
    "img_downscale_threshold": 4.0,
    "target_side_length": 4000.0,
    "n_rows": -1,
    "grid_prevent_empty_spots": False,
    "grid_background_color": "#ffffff",
    "CLIP_stop_at_last_layers": 1,
    "filenames_max_length": filename_pattern.DEFAULT_MAX_PART_BYTES,
    "unix_filenames_sanitization": False,
}

_MAX_NUMBER_ATTEMPTS = 500
_dir_locks: dict[str, threading.Lock] = {}
_dir_locks_guard = threading.Lock()


class GridError(WebUIError, ValueError):
    """A grid cannot be built from the given images or row count."""


@dataclass
class ImageSaveParams:
    """What `on_before_image_saved` callbacks may change (A1111's `script_callbacks.ImageSaveParams`)."""

    image: Any
    p: Any
    filename: str
    pnginfo: dict[str, Any]


@dataclass
class GridParams:
    """What `on_image_grid` callbacks may change (A1111's `ImageGridLoopParams`)."""

    imgs: list[Any]
    cols: int
    rows: int


def _opt(opts: Any, key: str) -> Any:
    if opts is None:
        return DEFAULTS[key]
    getter = getattr(opts, "get", None)
    if callable(getter):
        return getter(key, DEFAULTS[key])
    return getattr(opts, key, DEFAULTS[key])


def _callback(name: str) -> Callable[..., Any] | None:
    """A dispatcher of `modules.script_callbacks`, only if the app already loaded it (no import here)."""
    module = sys.modules.get("modules.script_callbacks")
    func = getattr(module, name, None) if module is not None else None
    return func if callable(func) else None


# ------------------------------------------------------------------------------------------------ grids


def image_grid(
    imgs: Sequence[Image.Image],
    batch_size: int = 1,
    rows: int | None = None,
    *,
    opts: Any = None,
    on_grid: Callable[[GridParams], None] | None = None,
) -> Image.Image:
    """Paste images into a grid as A1111: cells as large as the largest image, smaller ones centred.

    Rows, when not given, follow the `n_rows` setting: > 0 that many, 0 = batch size, -1 = automatic
    (round(sqrt(n)), or with `grid_prevent_empty_spots` the largest divisor of n not above sqrt(n)).
    """
    from PIL import Image, ImageColor

    imgs = list(imgs)
    if not imgs:
        raise GridError("Cannot build an image grid from zero images")
    n = len(imgs)
    if rows is None:
        n_rows = int(_opt(opts, "n_rows"))
        if n_rows > 0:
            rows = n_rows
        elif n_rows == 0:
            rows = batch_size
        elif _opt(opts, "grid_prevent_empty_spots"):
            rows = max(1, math.floor(math.sqrt(n)))
            while n % rows != 0:
                rows -= 1
        else:
            rows = round(math.sqrt(n))
    rows = max(1, min(int(rows), n))
    params = GridParams(imgs, math.ceil(n / rows), rows)
    hook = on_grid or _callback("image_grid_callback")
    if hook is not None:
        hook(params)
    if params.rows < 1 or params.cols < 1 or params.rows * params.cols < len(params.imgs):
        raise GridError(f"A {params.cols}x{params.rows} grid cannot hold {len(params.imgs)} images")
    w = max(img.width for img in params.imgs)
    h = max(img.height for img in params.imgs)
    try:
        background = ImageColor.getcolor(str(_opt(opts, "grid_background_color")), "RGB")
    except ValueError:
        background = (255, 255, 255)
    grid = Image.new("RGB", size=(params.cols * w, params.rows * h), color=background)
    for i, img in enumerate(params.imgs):
        x = i % params.cols * w + (w - img.width) // 2
        y = i // params.cols * h + (h - img.height) // 2
        grid.paste(img, box=(x, y))
    return grid


# ----------------------------------------------------------------------------------------- file names


def get_next_sequence_number(path: str | os.PathLike[str], basename: str) -> int:
    """1 + the highest leading number of files in `path` (after `basename-` when a basename is given).

    Fix over A1111: folders are ignored, so a `2024-07-27` date folder does not push numbering to 02025.
    """
    prefix = f"{basename}-" if basename else ""
    highest = -1
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return 0
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or entry.is_dir():
            continue
        first = os.path.splitext(name[len(prefix) :])[0].split("-")[0]
        if first.isascii() and first.isdigit():  # int() refuses digits like '²'
            highest = max(highest, int(first))
    return highest + 1


def context_from_processing(
    p: Any, seed: int | None = None, prompt: str | None = None, image: Any = None, basename: str = "", opts: Any = None
) -> FilenameContext:
    """A FilenameContext from an A1111-style processing object (any of its attributes may be missing)."""

    def get(name: str, default: Any = None) -> Any:
        value = getattr(p, name, default) if p is not None else default
        return default if value is None else value

    negative = get("negative_prompt")
    if isinstance(negative, (list, tuple)):
        negative = negative[0] if negative else ""
    return FilenameContext(
        seed=seed,
        all_seeds=list(get("all_seeds", []) or []),
        prompt=prompt,
        negative_prompt=negative,
        styles=list(get("styles", []) or []),
        steps=get("steps"),
        cfg_scale=get("cfg_scale"),
        width=get("width"),
        height=get("height"),
        sampler_name=get("sampler_name"),
        scheduler=get("scheduler"),
        model_name=get("sd_model_name"),
        model_hash=get("sd_model_hash"),
        denoising_strength=get("denoising_strength"),
        clip_skip=get("clip_skip", _opt(opts, "CLIP_stop_at_last_layers")),
        batch_size=get("batch_size", 1),
        batch_index=get("batch_index", 0),
        n_iter=get("n_iter", 1),
        iteration=get("iteration", 0),
        job_timestamp=get("job_timestamp"),
        user=get("user"),
        vae_name=get("sd_vae_name"),
        basename=basename,
        image=image,
    )


class FilenameGenerator(filename_pattern.FilenameGenerator):
    """A1111's constructor signature `FilenameGenerator(p, seed, prompt, image, zip=False, basename="")`."""

    def __init__(
        self,
        p: Any,
        seed: int | None,
        prompt: str | None,
        image: Any,
        zip: bool = False,
        basename: str = "",
        *,
        opts: Any = None,
        context: FilenameContext | None = None,
    ) -> None:
        if context is None:
            context = context_from_processing(p, seed, prompt, image, basename, opts)
            context.zip = zip
        super().__init__(
            context,
            max_prompt_words=int(_opt(opts, "directories_max_prompt_words")),
            max_part_bytes=int(_opt(opts, "filenames_max_length")),
            unix_sanitization=bool(_opt(opts, "unix_filenames_sanitization")),
        )


def _name_max(path: str) -> int:
    try:
        return int(os.statvfs(path).f_namemax)
    except (AttributeError, OSError):
        return 255


def _fit_name(stem: str, ext: str, name_max: int) -> str:
    """`stem + ext` cut (in UTF-8 bytes, on a character boundary) to the filesystem's name limit.

    A1111 cut the whole path string to the limit in characters, which could cut into directory names.
    """
    stem = truncate_utf8(stem, name_max - len(ext.encode("utf-8"))).rstrip(" ")
    return avoid_reserved_name(stem + ext)


def _safe_subdir(base: str, dirname: str, name_max: int) -> str:
    """Join the expanded directory pattern under `base`, refusing anything that would leave it."""
    parts = []
    for part in dirname.replace("\\", "/").split("/"):
        part = part.strip(" ").rstrip(".")
        if part in ("", ".", ".."):
            continue
        parts.append(avoid_reserved_name(truncate_utf8(part, name_max).rstrip(" .")))
    target = os.path.join(base, *parts)
    if os.path.commonpath([os.path.abspath(base), os.path.abspath(target)]) != os.path.abspath(base):
        raise ImageWriteError(target, "directory pattern points outside the output folder")
    return target


def _dir_lock(path: str) -> threading.Lock:
    key = os.path.realpath(path)
    with _dir_locks_guard:
        return _dir_locks.setdefault(key, threading.Lock())


def _reserve(full_path: str) -> bool:
    """Create `full_path` empty and exclusively; False if it already exists (another save got there first)."""
    try:
        fd = os.open(full_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _reserve_numbered(path: str, basename: str, decoration: str, ext: str, name_max: int) -> str:
    with _dir_lock(path):
        start = get_next_sequence_number(path, basename)
        for i in range(_MAX_NUMBER_ATTEMPTS):
            number = f"{start + i:05}" if basename == "" else f"{basename}-{start + i:04}"
            full = os.path.join(path, _fit_name(f"{number}{decoration}", ext, name_max))
            if _reserve(full):
                return full
    raise ImageWriteError(
        os.path.join(path, f"{basename}*{decoration}{ext}"),
        f"no free file number after {_MAX_NUMBER_ATTEMPTS} attempts",
    )


def _reserve_with_suffix(path: str, stem: str, ext: str, name_max: int) -> str:
    """`stem.ext`, else `stem-1.ext`, `stem-2.ext`... (A1111's "Add number suffix" replace action)."""
    with _dir_lock(path):
        for n in range(_MAX_NUMBER_ATTEMPTS):
            candidate = stem if n == 0 else f"{stem}-{n}"
            full = os.path.join(path, _fit_name(candidate, ext, name_max))
            if _reserve(full):
                return full
    raise ImageWriteError(os.path.join(path, stem + ext), f"no free name after {_MAX_NUMBER_ATTEMPTS} attempts")


# ---------------------------------------------------------------------------------------------- saving


def save_image_with_geninfo(
    image: Image.Image,
    geninfo: str | None,
    filename: str,
    extension: str | None = None,
    existing_pnginfo: Mapping[str, Any] | None = None,
    pnginfo_section_name: str = "parameters",
    *,
    opts: Any = None,
) -> None:
    """Write one file with its infotext (A1111 name); honours `enable_pnginfo`, `jpeg_quality`, `webp_lossless`."""
    ext = (extension or os.path.splitext(filename)[1]).lstrip(".")
    if not _opt(opts, "enable_pnginfo"):
        geninfo, extra = None, None
    else:
        extra = {k: v for k, v in (existing_pnginfo or {}).items() if k != pnginfo_section_name}
    kwargs = {
        "quality": int(_opt(opts, "jpeg_quality")),
        "lossless_webp": bool(_opt(opts, "webp_lossless")),
        "extra_pnginfo": extra,
        "pnginfo_section_name": pnginfo_section_name,
    }
    try:
        write_image_with_infotext(image, filename, geninfo, ext, **kwargs)
    except InfotextTooLargeError as e:
        log.warning("%s; saving %s without it", e, filename)
        write_image_with_infotext(image, filename, None, ext, **kwargs)


def _write_text_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise ImageWriteError(path, e.strerror or str(e)) from e


def _export_for_4chan(image: Image.Image, fullfn: str, ext: str, opts: Any) -> None:
    """Extra downscaled .jpg next to big images (A1111's `export_for_4chan`); never overwrites anything."""
    from PIL import Image as PILImage

    side = float(_opt(opts, "target_side_length"))
    oversize = image.width > side or image.height > side
    too_big = os.stat(fullfn).st_size > float(_opt(opts, "img_downscale_threshold")) * 1024 * 1024
    # A1111 overwrote the full-size file with the downscaled copy when the format already was JPEG.
    if not (oversize or too_big) or ext.lower() in (".jpg", ".jpeg"):
        return
    if oversize:
        if image.width > image.height:
            size = round(side), round(image.height * side / image.width)
        else:
            size = round(image.width * side / image.height), round(side)
        image = image.resize(size, PILImage.Resampling.LANCZOS)
    jpg = os.path.splitext(fullfn)[0] + ".jpg"
    try:
        if not _reserve(jpg):
            log.warning("Not exporting downscaled copy: %s already exists", jpg)
            return
        write_image_with_infotext(image, jpg, None, "jpg", quality=int(_opt(opts, "jpeg_quality")))
    except (OSError, ValueError) as e:
        log.error("Saving downscaled JPG copy %s failed: %s", jpg, e)
        try:
            if os.path.getsize(jpg) == 0:
                os.remove(jpg)
        except OSError:
            pass


def save_image(
    image: Image.Image,
    path: str | os.PathLike[str],
    basename: str,
    seed: int | None = None,
    prompt: str | None = None,
    extension: str = "png",
    info: str | None = None,
    short_filename: bool = False,
    no_prompt: bool = False,
    grid: bool = False,
    pnginfo_section_name: str = "parameters",
    p: Any = None,
    existing_info: Mapping[str, Any] | None = None,
    forced_filename: str | None = None,
    suffix: str = "",
    save_to_dirs: bool | None = None,
    *,
    opts: Any = None,
    context: FilenameContext | None = None,
    before_save: Callable[[ImageSaveParams], None] | None = None,
    after_save: Callable[[ImageSaveParams], None] | None = None,
) -> tuple[str, str | None]:
    """Save an image the way A1111's `images.save_image` does; returns (image path, .txt path or None).

    Name: `<NNNNN>-<decoration>.<ext>` (`<basename>-<NNNN>...` with a basename), NNNNN = 1 + the highest
    number in the folder; decoration = `samples_filename_pattern`, else `[seed]` in a subfolder or
    `[seed]-[prompt_spaces]` without. A numbered name is reserved with O_EXCL, so a concurrent save gets
    the next number and nothing is ever overwritten. Un-numbered names (`save_images_add_number` off,
    `forced_filename`) follow `save_images_replace_action` ("Replace" overwrites, atomically). Any
    failure raises ImageWriteError naming the file, and leaves no partial file behind.
    """
    path = os.fspath(path)
    extension = extension.lstrip(".")
    if context is None:
        namegen: filename_pattern.FilenameGenerator = FilenameGenerator(
            p, seed, prompt, image, basename=basename, opts=opts
        )
    else:
        namegen = FilenameGenerator(p, seed, prompt, image, basename=basename, opts=opts, context=context)

    # JPEG and WebP cannot hold images this large; fall back to PNG like A1111.
    if ((image.height > 65535 or image.width > 65535) and extension.lower() in ("jpg", "jpeg")) or (
        (image.height > 16383 or image.width > 16383) and extension.lower() == "webp"
    ):
        log.warning("Image dimensions too large for %s; saving as PNG", extension)
        extension = "png"
    resolve_format(extension)  # unknown formats fail here, before any folder or file is created
    ext = "." + extension.lower()

    if save_to_dirs is None:
        save_to_dirs = (grid and _opt(opts, "grid_save_to_dirs")) or (
            not grid and _opt(opts, "save_to_dirs") and not no_prompt
        )
    name_max = _name_max(path) if os.path.isdir(path) else 255
    if save_to_dirs:
        dirname = namegen.apply(_opt(opts, "directories_filename_pattern") or "[prompt_words]")
        path = _safe_subdir(path, dirname.lstrip(" ").rstrip("\\ /"), name_max)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ImageWriteError(path, f"cannot create the folder: {e.strerror or e}") from e
    name_max = _name_max(path)

    add_number = bool(_opt(opts, "save_images_add_number"))
    replace = _opt(opts, "save_images_replace_action") == "Replace"
    try:
        if forced_filename is None:
            if short_filename or seed is None:
                decoration = ""
            elif save_to_dirs:  # fix: A1111 tested the save_to_dirs setting, not this save's choice
                decoration = _opt(opts, "samples_filename_pattern") or "[seed]"
            else:
                decoration = _opt(opts, "samples_filename_pattern") or "[seed]-[prompt_spaces]"
            # Literal "/" in a pattern would point into folders that do not exist.
            decoration = (namegen.apply(decoration) + suffix).replace("/", "_").replace("\\", "_")
            add_number = add_number or decoration == ""
            if add_number:
                fullfn = _reserve_numbered(path, basename, f"-{decoration}" if decoration else "", ext, name_max)
                reserved = True
            elif replace:
                fullfn, reserved = os.path.join(path, _fit_name(decoration, ext, name_max)), False
            else:
                fullfn, reserved = _reserve_with_suffix(path, decoration, ext, name_max), True
        elif replace:
            fullfn, reserved = os.path.join(path, _fit_name(forced_filename, ext, name_max)), False
        else:
            fullfn, reserved = _reserve_with_suffix(path, forced_filename, ext, name_max), True
    except OSError as e:
        if isinstance(e, ImageWriteError):
            raise
        raise ImageWriteError(os.path.join(path, f"*{ext}"), e.strerror or str(e)) from e

    pnginfo = dict(existing_info or {})
    if info is not None:
        pnginfo[pnginfo_section_name] = info
    params = ImageSaveParams(image, p, fullfn, pnginfo)
    try:
        hook = before_save or _callback("before_image_saved_callback")
        if hook is not None:
            hook(params)
        if params.filename != fullfn and reserved:  # a callback renamed the file: free our reservation
            _remove_if_empty(fullfn)
        info = params.pnginfo.get(pnginfo_section_name)
        save_image_with_geninfo(
            params.image,
            info,
            params.filename,
            os.path.splitext(params.filename)[1] or ext,
            params.pnginfo,
            pnginfo_section_name,
            opts=opts,
        )
    except BaseException as e:
        if reserved:
            _remove_if_empty(fullfn)
        if isinstance(e, ImageWriteError) or not isinstance(e, Exception):
            raise
        raise ImageWriteError(params.filename, f"{type(e).__name__}: {e}") from e
    fullfn = params.filename
    with contextlib.suppress(AttributeError):
        params.image.already_saved_as = fullfn  # A1111 extensions read this attribute

    if _opt(opts, "export_for_4chan"):
        _export_for_4chan(params.image, fullfn, os.path.splitext(fullfn)[1], opts)

    txt_fullfn = None
    if _opt(opts, "save_txt") and info is not None:
        txt_fullfn = os.path.splitext(fullfn)[0] + ".txt"
        _write_text_atomically(txt_fullfn, f"{info}\n")

    hook = after_save or _callback("image_saved_callback")
    if hook is not None:
        hook(params)
    return fullfn, txt_fullfn


def _remove_if_empty(path: str) -> None:
    """Drop a reservation placeholder (an empty file) without ever touching a real image."""
    try:
        if os.path.getsize(path) == 0:
            os.remove(path)
    except OSError:
        pass
