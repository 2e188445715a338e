"""The built-in Extras operations (A1111's scripts/postprocessing_*.py and postprocessing-for-training):
Upscale, Simple Upscale, GFPGAN, CodeFormer, Auto focal point crop, Split oversized images, Auto-sized crop,
Create flipped copies. Their Gradio
controls are built by ui_extras.py; here is only what they do."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from modules import autocrop
from modules.errors import ValidationError
from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessing

log = logging.getLogger(__name__)


def limit_size_by_one_dimension(w: float, h: float, limit: int) -> tuple[int, int]:
    """Scale (w, h) down so the longer side is `limit`, keeping the aspect ratio."""
    if h > w and h > limit:
        w, h = limit * w / h, limit
    elif w > limit:
        w, h = limit, limit * h / w
    return int(round(w)), int(round(h))


_upscale_cache: OrderedDict[tuple, Image.Image] = OrderedDict()
"""A1111's upscale cache (`upscaling_max_images_in_cache`): changing only the face settings reuses the upscale."""


def _cache_key(runtime: Any, image: Image.Image, name: str, plan: tuple) -> tuple:
    """Pixels, upscaler and plan; for a model file also its path and mtime, so a replaced file is not stale."""
    from modules.upscaler import registry_for

    data = registry_for(runtime).find(name) if runtime is not None else None
    path = getattr(data, "data_path", None)
    mtime = Path(path).stat().st_mtime_ns if path and Path(path).exists() else None
    digest = hashlib.sha256(image.tobytes()).hexdigest()
    return (id(runtime), digest, image.size, image.mode, name, path, mtime, plan)


class ScriptPostprocessingUpscale(ScriptPostprocessing):
    name = "Upscale"
    order = 1000

    def _plan(self, image: Image.Image, upscale_mode: int, upscale_by: float, max_side_length: int,
              upscale_to_width: int | None, upscale_to_height: int | None, upscale_crop: bool,
              info: dict[str, Any] | None) -> tuple[float, int, int, bool, bool]:
        """(scale, width, height, crop, exact) for one image, writing A1111's infotext items. "Scale to" scales
        by the larger of the two ratios (the result covers WxH) and crops only with "Crop to fit"; a max side
        length gives an aspect-keeping size that is reached exactly."""
        if int(upscale_mode) == 1:
            w, h = int(upscale_to_width or 512), int(upscale_to_height or 512)
            if w < 1 or h < 1:
                raise ValidationError("upscaling_resize_w", f"the target size {w}x{h} is not positive")
            scale = max(w / image.width, h / image.height)
            if info is not None:
                info["Postprocess upscale to"] = f"{w}x{h}"
            return scale, w, h, bool(upscale_crop), False
        scale = float(upscale_by)
        if not scale > 0:
            raise ValidationError("upscaling_resize", f"the scale {scale} is not positive")
        if info is not None:
            info["Postprocess upscale by"] = upscale_by
        if max_side_length and max(image.size) * scale > max_side_length:
            w, h = limit_size_by_one_dimension(image.width * scale, image.height * scale, int(max_side_length))
            if info is not None:
                info["Max side length"] = max_side_length
            return max(w / image.width, h / image.height), w, h, False, True
        return scale, round(image.width * scale), round(image.height * scale), False, False

    def upscale(self, pp: PostprocessedImage, image: Image.Image, name: str, plan: tuple) -> Image.Image:
        from modules.upscaler import upscale_image

        scale, w, h, crop, exact = plan
        key = _cache_key(pp.runtime, image, name, plan)
        out = _upscale_cache.pop(key, None)
        if out is None:
            out = upscale_image(pp.runtime, name, image, (w, h) if exact else scale, pp.state, field="upscaler_1")
        limit = int(pp.runtime.opts.get("upscaling_max_images_in_cache", 5)) if pp.runtime is not None else 0
        if limit > 0:
            _upscale_cache[key] = out
            while len(_upscale_cache) > limit:
                _upscale_cache.popitem(last=False)
        if crop and out.size != (w, h):
            # A1111 centres the (covering) upscale on a WxH canvas: the same as a centre crop.
            left, top = (out.width - w) // 2, (out.height - h) // 2
            out = out.crop((left, top, left + w, top + h))
            pp.info["Postprocess crop to"] = f"{w}x{h}"
        return out

    def image_changed(self) -> None:
        _upscale_cache.clear()

    def process_firstpass(self, pp: PostprocessedImage, **args: Any) -> None:
        if args.get("upscale_enabled", True) is False:
            return
        _, w, h, _, _ = self._plan(pp.image, args.get("upscale_mode", 0), args.get("upscale_by", 2.0),
                                   args.get("max_side_length", 0), args.get("upscale_to_width"),
                                   args.get("upscale_to_height"), args.get("upscale_crop", False), None)
        pp.shared.target_width, pp.shared.target_height = w, h

    def process(self, pp: PostprocessedImage, upscale_enabled: bool = True, upscale_mode: int = 0,
                upscale_by: float = 2.0, max_side_length: int = 0, upscale_to_width: int | None = None,
                upscale_to_height: int | None = None, upscale_crop: bool = False, upscaler_1_name: str | None = None,
                upscaler_2_name: str | None = None, upscaler_2_visibility: float = 0.0, **_: Any) -> None:
        if not upscale_enabled:
            return
        name1 = None if upscaler_1_name in (None, "", "None") else upscaler_1_name
        name2 = None if upscaler_2_name in (None, "", "None") else upscaler_2_name
        if name1 is None:
            return  # A1111: with no first upscaler the operation does nothing (the second is a blend of it)
        plan = self._plan(pp.image, upscale_mode, upscale_by, max_side_length, upscale_to_width, upscale_to_height,
                          upscale_crop, pp.info)
        source = pp.image
        result = self.upscale(pp, source, name1, plan)
        pp.info["Postprocess upscaler"] = name1
        if name2 is not None and upscaler_2_visibility > 0:
            second = self.upscale(pp, source, name2, plan)
            if second.mode != result.mode:
                second = second.convert(result.mode)
            result = Image.blend(result, second, float(upscaler_2_visibility))
            pp.info["Postprocess upscaler 2"] = name2
        pp.image = result


class ScriptPostprocessingUpscaleSimple(ScriptPostprocessingUpscale):
    """A1111's "Simple Upscale": one upscaler and a scale, for use inside txt2img/img2img only."""

    name = "Simple Upscale"
    order = 900
    main_ui_only = True

    def process_firstpass(self, pp: PostprocessedImage, upscale_by: float = 2.0, **args: Any) -> None:
        pp.shared.target_width = round(pp.image.width * upscale_by)
        pp.shared.target_height = round(pp.image.height * upscale_by)

    def process(self, pp: PostprocessedImage, upscale_by: float = 2.0, upscaler_name: str | None = None,
                **_: Any) -> None:
        if upscaler_name in (None, "", "None"):
            return
        plan = self._plan(pp.image, 0, upscale_by, 0, None, None, False, pp.info)
        pp.image = self.upscale(pp, pp.image, upscaler_name, plan)
        pp.info["Postprocess upscaler"] = upscaler_name


def _restore(pp: PostprocessedImage, model: str, visibility: float, weight: float | None = None) -> None:
    from modules.face_restoration import restore_image

    restored = restore_image(pp.runtime, pp.image, model=model, weight=weight)
    if visibility < 1.0:
        restored = Image.blend(pp.image.convert("RGB"), restored, float(visibility))
    pp.image = restored


class ScriptPostprocessingGfpGan(ScriptPostprocessing):
    name = "GFPGAN"
    order = 2000

    def process(self, pp: PostprocessedImage, enable: bool = True, gfpgan_visibility: float = 1.0,
                **_: Any) -> None:
        if not enable or gfpgan_visibility <= 0:
            return
        _restore(pp, "GFPGAN", gfpgan_visibility)
        pp.info["GFPGAN visibility"] = round(float(gfpgan_visibility), 3)


class ScriptPostprocessingCodeFormer(ScriptPostprocessing):
    name = "CodeFormer"
    order = 3000

    def process(self, pp: PostprocessedImage, enable: bool = True, codeformer_visibility: float = 1.0,
                codeformer_weight: float = 0.0, **_: Any) -> None:
        if not enable or codeformer_visibility <= 0:
            return
        _restore(pp, "CodeFormer", codeformer_visibility, codeformer_weight)
        pp.info["CodeFormer visibility"] = round(float(codeformer_visibility), 3)
        pp.info["CodeFormer weight"] = round(float(codeformer_weight), 3)


def split_pic(image: Image.Image, inverse_xy: bool, width: int, height: int, overlap_ratio: float) -> list[Image.Image]:
    """Resize the long image to the target width, then cut it into overlapping target-sized pieces."""
    if inverse_xy:
        from_w, from_h, to_w, to_h = image.height, image.width, height, width
    else:
        from_w, from_h, to_w, to_h = image.width, image.height, width, height
    h = from_h * to_w // from_w
    image = image.resize((h, to_w) if inverse_xy else (to_w, h))
    count = max(1, math.ceil((h - to_h * overlap_ratio) / (to_h * (1.0 - overlap_ratio))))
    step = (h - to_h) / (count - 1) if count > 1 else 0
    out = []
    for i in range(count):
        y = int(step * i)
        out.append(image.crop((y, 0, y + to_h, to_w)) if inverse_xy else image.crop((0, y, to_w, y + to_h)))
    return out


class ScriptPostprocessingSplitOversized(ScriptPostprocessing):
    name = "Split oversized images"
    order = 4000

    def process(self, pp: PostprocessedImage, enable: bool = False, split_threshold: float = 0.5,
                overlap_ratio: float = 0.2, **_: Any) -> None:
        if not enable:
            return
        width, height = pp.shared.target_width, pp.shared.target_height
        if not width or not height:
            return
        if pp.image.height > pp.image.width:
            ratio, inverse_xy = (pp.image.width * height) / (pp.image.height * width), False
        else:
            ratio, inverse_xy = (pp.image.height * width) / (pp.image.width * height), True
        if ratio >= 1.0 or ratio > split_threshold:
            return
        first, *others = split_pic(pp.image, inverse_xy, width, height, float(overlap_ratio))
        pp.image = first
        pp.extra_images = [pp.create_copy(x) for x in others]


class ScriptPostprocessingCreateFlippedCopies(ScriptPostprocessing):
    name = "Create flipped copies"
    order = 4030

    def process(self, pp: PostprocessedImage, enable: bool = False, option: list[str] | None = None,
                **_: Any) -> None:
        if not enable:
            return
        option = ["Horizontal"] if option is None else option
        if "Horizontal" in option:
            pp.extra_images.append(ImageOps.mirror(pp.image))
        if "Vertical" in option:
            pp.extra_images.append(pp.image.transpose(Image.Transpose.FLIP_TOP_BOTTOM))
        if "Both" in option:
            pp.extra_images.append(pp.image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
                                   .transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def _yunet_path(runtime: Any) -> str | None:
    """models/opencv/<YuNet file> when the user put it there; else faces are skipped, and the log says where
    the file goes (nothing is downloaded)."""
    if runtime is None:
        return None
    path = Path(runtime.paths.models_dir) / "opencv" / autocrop.YUNET_FILE
    if path.is_file():
        return str(path)
    log.info("Auto focal point crop: no face detector; put %s in %s to weigh faces", autocrop.YUNET_FILE,
             path.parent)
    return None


class ScriptPostprocessingFocalCrop(ScriptPostprocessing):
    """Crop to the upscale's target size around the focal point of faces, corners and entropy."""

    name = "Auto focal point crop"
    order = 3010

    def process(self, pp: PostprocessedImage, enable: bool = False, face_weight: float = 0.9,
                entropy_weight: float = 0.15, edges_weight: float = 0.5, debug: bool = False, **_: Any) -> None:
        if not enable:
            return
        width, height = pp.shared.target_width, pp.shared.target_height
        if not width or not height:  # as A1111: the size comes from the Upscale operation ("Scale to")
            return
        for label, value in (("face", face_weight), ("entropy", entropy_weight), ("edges", edges_weight)):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValidationError(f"Focal point {label} weight", f"must be from 0 to 1, got {value!r}")
        settings = autocrop.FocalSettings(int(width), int(height), float(face_weight), float(entropy_weight),
                                          float(edges_weight), _yunet_path(pp.runtime) if face_weight else None)
        result, *others = autocrop.crop_image(pp.image, settings, debug=bool(debug))
        pp.image = result
        pp.extra_images += [pp.create_copy(x, nametags=["focal-crop-debug"], disable_processing=True)
                            for x in others]


class ScriptPostprocessingAutosizedCrop(ScriptPostprocessing):
    """Crop each image to the size on a 64 px grid that fits its aspect ratio best (A1111's Auto-sized crop)."""

    name = "Auto-sized crop"
    order = 4020

    def process(self, pp: PostprocessedImage, enable: bool = False, mindim: int = 384, maxdim: int = 768,
                minarea: int = 64 * 64, maxarea: int = 640 * 640, objective: str = "Maximize area",
                threshold: float = 0.1, **_: Any) -> None:
        if not enable:
            return
        size = autocrop.best_size(pp.image.width, pp.image.height, int(mindim), int(maxdim), int(minarea),
                                  int(maxarea), objective, float(threshold))
        if size is None:  # no size within the bounds matches this aspect ratio: left as it is, as A1111 does
            log.info("Auto-sized crop: no size fits a %dx%d image within the bounds; skipped", *pp.image.size)
            return
        pp.image = autocrop.center_crop(pp.image, *size)


BUILTIN: tuple[type[ScriptPostprocessing], ...] = (
    ScriptPostprocessingUpscale, ScriptPostprocessingUpscaleSimple, ScriptPostprocessingGfpGan,
    ScriptPostprocessingCodeFormer, ScriptPostprocessingFocalCrop, ScriptPostprocessingSplitOversized,
    ScriptPostprocessingAutosizedCrop, ScriptPostprocessingCreateFlippedCopies,
)
