"""L3 processing: img2img's Batch mode: every image of a folder (with its mask, and optionally its own infotext)
through the img2img job, saved to an output folder; one queued job with progress over the files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from modules import infotext_fields
from modules.errors import ValidationError
from modules.image_metadata import read_info_from_image
from modules.infotext import parse_generation_parameters
from modules.state import JobState

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# The "PNG info" choices (A1111's img2img_batch_png_info_props) and the request fields each one fills.
PNG_INFO_PROPS = {"Prompt": ("prompt",), "Negative prompt": ("negative_prompt",), "Seed": ("seed",),
                  "CFG scale": ("cfg_scale",), "Sampler": ("sampler_name", "scheduler"), "Steps": ("steps",),
                  "Model hash": ()}


def _folder(text: str, field: str, must_exist: bool = True) -> Path | None:
    if not text or not text.strip():
        return None
    path = Path(text.strip()).expanduser()
    if must_exist and not path.is_dir():
        raise ValidationError(field, f"folder {str(path)!r} does not exist")
    return path


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_for(mask_dir: Path | None, image: Path) -> Path | None:
    if mask_dir is None:
        return None
    for candidate in (mask_dir / image.name, *(mask_dir / (image.stem + s) for s in IMAGE_SUFFIXES)):
        if candidate.is_file():
            return candidate
    return None


def run_batch(params: Any, state: JobState, run_one: Callable[[Any, str | None, dict], Any], *, input_dir: str,
              output_dir: str = "", mask_dir: str = "", use_png_info: bool = False,
              png_info_props: list[str] | None = None, png_info_dir: str = "") -> Any:
    """Run `params` (an Img2ImgParams) once per image of `input_dir` through `run_one(params, output_dir,
    save_settings)` (the img2img job body); returns the last Processed holding every image."""
    source = _folder(input_dir, "img2img_batch_input_dir")
    if source is None:
        raise ValidationError("img2img_batch_input_dir", "give the folder of images to process")
    masks = _folder(mask_dir, "img2img_batch_inpaint_mask_dir")
    info_dir = _folder(png_info_dir, "img2img_batch_png_info_dir")
    files = list_images(source)
    if not files:
        raise ValidationError("img2img_batch_input_dir", f"no images in {str(source)!r}")
    out_dir = _folder(output_dir, "img2img_batch_output_dir", must_exist=False)
    results: list[Any] = []
    last = None
    errors: list[str] = []
    for n, path in enumerate(files):
        if state.interrupted:
            break
        state.textinfo = f"Batch: {n + 1} of {len(files)}: {path.name}"
        try:
            image = Image.open(path)
            image.load()
        except (OSError, UnidentifiedImageError) as e:
            errors.append(f"{path.name}: not an image ({e})")
            continue
        update: dict[str, Any] = {"init_images": [image]}
        mask_path = _mask_for(masks, path)
        if mask_path is not None:
            update["mask"] = Image.open(mask_path)
        if use_png_info:
            update.update(_png_info_fields(info_dir / path.name if info_dir else path, params, png_info_props))
        saving: dict[str, Any] = {}
        if out_dir is not None:  # saved under the input's own name, as A1111's batch does
            pattern = path.stem if params.n_iter * params.batch_size == 1 else f"{path.stem}-[generation_number]"
            saving = {"save_to_dirs": False, "samples_filename_pattern": pattern, "save_images_add_number": False,
                      "save_images_replace_action": "Add number suffix"}  # never overwrite an earlier result
        last = run_one(params.model_copy(update=update), str(out_dir) if out_dir is not None else None, saving)
        results += last.images
    if last is None:
        raise ValidationError("img2img_batch_input_dir", "; ".join(errors) or "nothing was processed")
    last.images = results
    last.errors = list(last.errors) + errors
    return last


def _png_info_fields(path: Path, params: Any, props: list[str] | None) -> dict[str, Any]:
    """The chosen fields from an image's own infotext (A1111's "PNG info" batch option)."""
    try:
        with Image.open(path) as im:
            text, _ = read_info_from_image(im)
    except (OSError, UnidentifiedImageError):
        return {}
    if not text:
        return {}
    parsed = parse_generation_parameters(text)
    found = infotext_fields.fields_from_infotext(parsed, "img2img", strict=False)
    wanted = {f for prop in (props or list(PNG_INFO_PROPS)) for f in PNG_INFO_PROPS.get(prop, ())}
    out = {k: v for k, v in found.items() if k in wanted}
    if "prompt" in out and params.prompt:  # A1111: the typed prompt is added after the image's own
        out["prompt"] = f"{out['prompt']} {params.prompt}".strip()
    return out
