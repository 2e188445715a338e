"""Model upscalers through spandrel: the files in A1111's folders, detection, tiled inference with blended
seams, progress per tile and interrupt between tiles."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modules import upscaler
from modules.errors import ModelLoadError, WebUIError
from modules.modelloader import ModelFileMissingError, friendly_name, list_model_files

log = logging.getLogger(__name__)


class UpscaleInterrupted(WebUIError):
    """The job was interrupted between two tiles."""

    def __init__(self) -> None:
        super().__init__("Interrupted")


@dataclass(frozen=True)
class FolderSpec:
    """One of A1111's upscaler folders: `models/<folder>`, its `--<flag>-models-path` and tile settings."""

    name: str
    folder: str
    flag: str | None
    tile_key: str = "ESRGAN_tile"
    overlap_key: str = "ESRGAN_tile_overlap"


FOLDERS = (
    FolderSpec("ESRGAN", "ESRGAN", "esrgan"),
    FolderSpec("RealESRGAN", "RealESRGAN", "realesrgan"),
    FolderSpec("BSRGAN", "BSRGAN", "bsrgan"),
    FolderSpec("SwinIR", "SwinIR", "swinir", "SWIN_tile", "SWIN_tile_overlap"),
    FolderSpec("ScuNET", "ScuNET", "scunet", "SCUNET_tile", "SCUNET_tile_overlap"),
    FolderSpec("DAT", "DAT", "dat", "DAT_tile", "DAT_tile_overlap"),
    FolderSpec("HAT", "HAT", None),
)

_RE = "https://github.com/xinntao/Real-ESRGAN/releases/download"
# A1111's names for the files it downloads: listed under these names when the file is present, so infotext
# such as "Hires upscaler: R-ESRGAN 4x+" keeps working; when absent, picking the name says what to put where.
KNOWN_FILES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "ESRGAN_4x": ("ESRGAN", ("ESRGAN_4x.pth",), "https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth"),
    "R-ESRGAN 4x+": ("RealESRGAN", ("RealESRGAN_x4plus.pth",), f"{_RE}/v0.1.0/RealESRGAN_x4plus.pth"),
    "R-ESRGAN 4x+ Anime6B": ("RealESRGAN", ("RealESRGAN_x4plus_anime_6B.pth",),
                             f"{_RE}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"),
    "R-ESRGAN 2x+": ("RealESRGAN", ("RealESRGAN_x2plus.pth",), f"{_RE}/v0.2.1/RealESRGAN_x2plus.pth"),
    "R-ESRGAN General 4xV3": ("RealESRGAN", ("realesr-general-x4v3.pth",), f"{_RE}/v0.2.5.0/realesr-general-x4v3.pth"),
    "R-ESRGAN General WDN 4xV3": ("RealESRGAN", ("realesr-general-wdn-x4v3.pth",),
                                  f"{_RE}/v0.2.5.0/realesr-general-wdn-x4v3.pth"),
    "R-ESRGAN AnimeVideo": ("RealESRGAN", ("realesr-animevideov3.pth",), f"{_RE}/v0.2.5.0/realesr-animevideov3.pth"),
    "SwinIR 4x": ("SwinIR", ("SwinIR_4x.pth", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
                  "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                  "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
    "ScuNET GAN": ("ScuNET", ("ScuNET.pth", "scunet_color_real_gan.pth"),
                   "https://github.com/cszn/KAIR/releases/download/v1.0/scunet_color_real_gan.pth"),
    "ScuNET PSNR": ("ScuNET", ("ScuNET_PSNR.pth", "scunet_color_real_psnr.pth"),
                    "https://github.com/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth"),
    "DAT x2": ("DAT", ("DAT_x2.pth",), "https://huggingface.co/w-e-w/DAT/resolve/main/experiments/pretrained_models/DAT/DAT_x2.pth"),
    "DAT x3": ("DAT", ("DAT_x3.pth",), "https://huggingface.co/w-e-w/DAT/resolve/main/experiments/pretrained_models/DAT/DAT_x3.pth"),
    "DAT x4": ("DAT", ("DAT_x4.pth",), "https://huggingface.co/w-e-w/DAT/resolve/main/experiments/pretrained_models/DAT/DAT_x4.pth"),
}
_NAME_BY_FILE = {(folder, f.lower()): name for name, (folder, files, _) in KNOWN_FILES.items() for f in files}


def known_missing(name: str, models_dir: Path, cmd_opts: Any = None) -> ModelFileMissingError | None:
    """For an A1111 upscaler name whose file is absent: the error that says which file goes where."""
    for known, (folder, files, url) in KNOWN_FILES.items():
        if known.lower() == name.lower():
            return ModelFileMissingError(files[0], Path(models_dir) / folder, url, what=f"The upscaler {known!r}")
    return None


# --- detection ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFacts:
    """What spandrel says about a file, or why it cannot be used."""

    architecture: str | None
    scale: int
    purpose: str | None
    error: str | None = None


_facts: dict[tuple[str, int, int], ModelFacts] = {}
_facts_lock = threading.Lock()


def describe_file(path: Path) -> ModelFacts:
    """Architecture, scale and purpose from spandrel (cached per file size and mtime); never raises."""
    from modules import modelloader

    try:
        st = path.stat()
    except OSError as e:
        return ModelFacts(None, 4, None, f"cannot read the file ({e})")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _facts_lock:
        if key in _facts:
            return _facts[key]
    try:
        descriptor = modelloader.describe_state_dict(modelloader.load_state_dict(path), path)
        purpose = str(descriptor.purpose)
        arch = descriptor.architecture.name
        error = None
        if purpose == "FaceSR":
            error = f"this is a {arch} face restoration model; put it into models/{_face_folder(arch)}"
        elif purpose not in ("SR", "Restoration") or descriptor.input_channels != descriptor.output_channels:
            error = f"this {arch} model ({purpose}) is not an image upscaler"
        facts = ModelFacts(arch, int(descriptor.scale), purpose, error)
        del descriptor
    except ModelLoadError as e:
        facts = ModelFacts(None, 4, None, e.reason)
    except Exception as e:  # spandrel can fail in many ways on odd files; the file is refused, never run
        log.exception("spandrel failed on %s", path)
        facts = ModelFacts(None, 4, None, f"spandrel could not read it ({type(e).__name__}: {e})")
    with _facts_lock:
        _facts[key] = facts
    return facts


def _face_folder(arch: str) -> str:
    return "Codeformer" if arch.lower() == "codeformer" else "GFPGAN"


# --- tiled inference ------------------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """(tile length, start offsets) covering `length` with tiles of at most `tile` overlapping by at least
    `overlap`. The tiles are made as small as their count allows, so no work is wasted on extra overlap."""
    if tile <= 0 or length <= tile:
        return length, [0]
    overlap = max(0, min(overlap, tile // 2))
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count))
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return size, starts


def _ramp(size: int, left: int, right: int) -> Any:
    """Blend weights along one axis: rising over the left overlap, falling over the right one. Two
    neighbouring ramps add up to exactly 1, so a seam is a linear cross-fade."""
    import torch

    w = torch.ones(size)
    if left > 0:
        w[:left] = (torch.arange(left) + 0.5) / left
    if right > 0:
        w[size - right:] = torch.minimum(w[size - right:], (right - torch.arange(right) - 0.5) / right)
    return w


def pil_to_tensor(image: Image.Image) -> Any:
    """RGB 0..1, shape (1, 3, H, W): the input spandrel documents (A1111 fed BGR)."""
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def tensor_to_pil(tensor: Any) -> Image.Image:
    arr = tensor[0].float().clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
    return Image.fromarray(arr, "RGB")


def run_tiled(descriptor: Any, x: Any, tile: int, overlap: int, state: Any = None, desc: str = "Tiles",
              console: bool = True) -> Any:
    """Run an ImageModelDescriptor over (1, C, H, W) in tiles; result (1, C, H*s, W*s) in float32 on x's device."""
    import torch
    from tqdm import tqdm

    _, channels, h, w = x.shape
    s = int(descriptor.scale)
    th, ys = tile_starts(h, tile, overlap)
    tw, xs = tile_starts(w, tile, overlap)
    total = len(ys) * len(xs)
    if state is not None:
        state.sampling_steps, state.sampling_step = total, 0
    if total == 1:
        out = descriptor(x).float()
        if state is not None:
            state.sampling_step = 1
        return out
    out = torch.zeros((1, descriptor.output_channels, h * s, w * s), dtype=torch.float32, device=x.device)
    weight = torch.zeros((1, 1, h * s, w * s), dtype=torch.float32, device=x.device)
    bar = tqdm(total=total, desc=desc, unit="tile", disable=not console, leave=False)
    try:
        for iy, y0 in enumerate(ys):
            top = (ys[iy - 1] + th - y0) if iy > 0 else 0
            bottom = (y0 + th - ys[iy + 1]) if iy + 1 < len(ys) else 0
            wy = _ramp(th * s, top * s, bottom * s)
            for ix, x0 in enumerate(xs):
                if state is not None and state.interrupted:
                    raise UpscaleInterrupted()
                left = (xs[ix - 1] + tw - x0) if ix > 0 else 0
                right = (x0 + tw - xs[ix + 1]) if ix + 1 < len(xs) else 0
                wx = _ramp(tw * s, left * s, right * s)
                mask = (wy[:, None] * wx[None, :]).to(x.device)[None, None]
                piece = descriptor(x[:, :, y0:y0 + th, x0:x0 + tw]).float()
                out[:, :, y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] += piece * mask
                weight[:, :, y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] += mask
                bar.update(1)
                if state is not None:
                    state.sampling_step += 1
    finally:
        bar.close()
    del channels
    return out / weight.clamp_min(1e-8)


def upscale_with_model(descriptor: Any, image: Image.Image, tile: int, overlap: int, state: Any = None,
                       console: bool = True) -> Image.Image:
    """One pass of a spandrel model over a PIL image (RGB in, RGB out), tiled when larger than `tile`."""
    import torch

    param = next(iter(descriptor.model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = pil_to_tensor(image).to(device=device, dtype=dtype)
    with torch.inference_mode():
        out = run_tiled(descriptor, x, tile, overlap, state, desc=f"Upscaling {image.width}x{image.height}",
                        console=console)
    return tensor_to_pil(out)


def _model_dtype(descriptor: Any, ctx: upscaler.UpscalerContext) -> Any:
    """fp16 on CUDA/MPS and bf16 where the runtime's dtype asks for it, when the architecture supports it."""
    import torch

    wanted = getattr(ctx, "dtype", None)
    if wanted == torch.float16 and descriptor.supports_half:
        return torch.float16
    if wanted == torch.bfloat16 and descriptor.supports_bfloat16:
        return torch.bfloat16
    return torch.float32


# --- the upscaler over A1111's folders ------------------------------------------------------------------------
_loaded_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def load_descriptor(path: str, ctx: upscaler.UpscalerContext) -> Any:
    """The spandrel model of a file, on the runtime's device and dtype; one model is kept loaded at a time."""
    from modules import modelloader

    p = Path(path)
    st = p.stat() if p.exists() else None
    key = f"{p.resolve()}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}:{ctx.device}:{ctx.dtype}"
    with _loaded_lock:
        if key in _loaded:
            return _loaded[key]
        _loaded.clear()  # free the previous model before loading the next
    descriptor = modelloader.load_spandrel_model(p, device=ctx.device or "cpu")
    if descriptor.purpose not in ("SR", "Restoration"):
        raise ModelLoadError(p, f"this {descriptor.architecture.name} model is not an image upscaler")
    descriptor.to(_model_dtype(descriptor, ctx))
    with _loaded_lock:
        _loaded[key] = descriptor
    return descriptor


def unload_models() -> None:
    with _loaded_lock:
        _loaded.clear()


class SpandrelUpscaler(upscaler.Upscaler):
    """Every model file in one of A1111's upscaler folders, named by file stem (A1111's names for its own)."""

    def __init__(self, spec: FolderSpec, user_path: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        ctx = upscaler.context()
        self.model_path = str(Path(ctx.models_dir) / spec.folder)
        self.user_path = user_path
        super().__init__(False)
        self.tile_size = int(ctx.get_opt(spec.tile_key, 192))
        self.tile_pad = int(ctx.get_opt(spec.overlap_key, 8))
        include_hidden = bool(ctx.get_opt("list_hidden_files", True))
        folders = [Path(user_path).expanduser()] if user_path else []
        folders.append(Path(self.model_path))
        self.scalers = []
        for path in list_model_files(folders, include_hidden=include_hidden):
            facts = describe_file(path)
            name = _NAME_BY_FILE.get((spec.folder, path.name.lower()), friendly_name(path))
            data = upscaler.UpscalerData(name, str(path), self, scale=facts.scale)
            data.architecture, data.error = facts.architecture, facts.error
            self.scalers.append(data)

    def load_model(self, path: str) -> Any:
        return load_descriptor(path, self.ctx)

    def do_upscale(self, img: Image.Image, selected_model: str | None) -> Image.Image:
        if not selected_model:
            raise WebUIError(f"{self.name}: no model file selected")
        ctx = self.ctx
        descriptor = self.load_model(selected_model)
        tile = int(ctx.get_opt(self.spec.tile_key, self.tile_size))
        overlap = int(ctx.get_opt(self.spec.overlap_key, self.tile_pad))
        return upscale_with_model(descriptor, img, tile, overlap, upscaler.current_state.get(),
                                  console=ctx.console_progress)
