"""A1111's `Upscaler` / `UpscalerData` base classes (extensions subclass them), the model-free upscalers, and
the registry that lists built-in, model-file and extension upscalers by name."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from modules.errors import ValidationError, WebUIError

log = logging.getLogger(__name__)

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST
MAX_UPSCALE_SIDE = 16384
"""Largest side an upscale may produce (A1111's Extras sliders stop at 8192; the API had no limit)."""
MAX_UPSCALE_PIXELS = 120 * 1024 * 1024
"""Largest result in pixels: about 360 MB of RGB, plus the model's working tensors."""
MAX_PASSES = 3
"""A1111 runs a model at most three times to reach the target scale (4x model: up to 64x)."""


@dataclass
class UpscalerContext:
    """What the base classes read where A1111 read `shared`: bound by the registry, one per runtime."""

    models_dir: Path = Path("models")
    get_opt: Callable[[str, Any], Any] = lambda key, default=None: default
    device: Any = None
    dtype: Any = None  # torch dtype models run in when their architecture supports it (fp32 otherwise)
    half: bool = False
    console_progress: bool = True


_context = UpscalerContext()
_context_lock = threading.Lock()
current_state: contextvars.ContextVar[Any] = contextvars.ContextVar("upscaler_job_state", default=None)
"""The JobState of the job that is upscaling now (progress per tile, interrupt); None outside a job."""


def context() -> UpscalerContext:
    return _context


def bind_context(ctx: UpscalerContext) -> None:
    global _context
    _context = ctx


class UpscalerData:
    """One entry of the upscaler list (A1111 fields: name, data_path, scale, scaler, model)."""

    name: str | None = None
    data_path: str | None = None
    scale: float = 4
    scaler: Upscaler | None = None
    model: Any = None

    def __init__(self, name: str, path: str | None, upscaler: Upscaler | None = None, scale: float = 4,
                 model: Any = None, sha256: str | None = None) -> None:
        self.name = name
        self.data_path = path
        self.local_data_path = path
        self.scaler = upscaler
        self.scale = scale
        self.model = model
        self.sha256 = sha256
        self.architecture: str | None = None
        self.error: str | None = None  # why this file cannot be used (refused when picked)

    @property
    def model_path(self) -> str | None:
        return self.data_path

    @property
    def model_name(self) -> str | None:
        return getattr(self.scaler, "name", None)

    @property
    def model_url(self) -> str | None:
        return getattr(self.scaler, "model_url", None)

    def __repr__(self) -> str:
        return f"<UpscalerData name={self.name} path={self.data_path} scale={self.scale}>"


class Upscaler:
    """A1111's base class: subclasses set `name`, fill `self.scalers` and implement `do_upscale`."""

    name: str | None = None
    model_path: str | None = None
    model_name: str | None = None
    model_url: str | None = None
    enable = True
    filter = None
    model = None
    user_path: str | None = None
    scalers: list[UpscalerData]
    tile = True

    def __init__(self, create_dirs: bool = False) -> None:
        ctx = context()
        self.ctx = ctx  # the runtime this upscaler was built for (several runtimes may live in one process)
        self.mod_pad_h = None
        self.tile_size = int(ctx.get_opt("ESRGAN_tile", 192))
        self.tile_pad = int(ctx.get_opt("ESRGAN_tile_overlap", 8))
        self.device = ctx.device
        self.img = None
        self.output = None
        self.scale = 1
        self.half = ctx.half
        self.pre_pad = 0
        self.mod_scale = None
        self.model_download_path = None
        self.can_tile = True
        if not hasattr(self, "scalers"):
            self.scalers = []
        if self.model_path is None and self.name:
            self.model_path = os.path.join(ctx.models_dir, self.name)
        if self.model_path and create_dirs:
            os.makedirs(self.model_path, exist_ok=True)

    def do_upscale(self, img: Image.Image, selected_model: str | None) -> Image.Image:
        raise NotImplementedError

    def upscale(self, img: Image.Image, scale: float, selected_model: str | None = None) -> Image.Image:
        """Run `do_upscale` until the image is at least `scale` times larger (at most three passes), then
        Lanczos to the exact size. A1111 rounded the size down to a multiple of 8; we keep it exact."""
        self.scale = scale
        dest_w, dest_h = target_size(img.width, img.height, scale)
        for _ in range(MAX_PASSES):
            if img.width >= dest_w and img.height >= dest_h:
                break
            shape = (img.width, img.height)
            img = self.do_upscale(img, selected_model)
            if shape == (img.width, img.height):  # a 1x model (ScuNET) or a no-op upscaler: stop
                break
        if (img.width, img.height) != (dest_w, dest_h):
            img = img.resize((dest_w, dest_h), resample=LANCZOS)
        return img

    def load_model(self, path: str) -> Any:
        raise NotImplementedError

    def find_models(self, ext_filter: list[str] | None = None) -> list[str]:
        from modules import modelloader

        return modelloader.load_models(model_path=self.model_path or "", model_url=self.model_url,
                                       command_path=self.user_path, ext_filter=ext_filter)

    def update_status(self, prompt: str) -> None:
        log.info("Extras: %s", prompt)


class UpscalerNone(Upscaler):
    name = "None"
    scalers: list[UpscalerData] = []

    def __init__(self, dirname: str | None = None) -> None:
        super().__init__(False)
        self.scalers = [UpscalerData("None", None, self)]

    def load_model(self, path: str) -> Any:
        return None

    def do_upscale(self, img: Image.Image, selected_model: str | None = None) -> Image.Image:
        return img

    def upscale(self, img: Image.Image, scale: float, selected_model: str | None = None) -> Image.Image:
        return img  # A1111: "None" leaves the image as it is; resizing is the caller's business


class _ResampleUpscaler(Upscaler):
    resample: Image.Resampling = LANCZOS

    def __init__(self, dirname: str | None = None) -> None:
        super().__init__(False)
        self.scalers = [UpscalerData(self.name or "", None, self)]

    def load_model(self, path: str) -> Any:
        return None

    def do_upscale(self, img: Image.Image, selected_model: str | None = None) -> Image.Image:
        return img.resize((target_size(img.width, img.height, self.scale)), resample=self.resample)

    def upscale(self, img: Image.Image, scale: float, selected_model: str | None = None) -> Image.Image:
        dest = target_size(img.width, img.height, scale)
        return img if dest == img.size else img.resize(dest, resample=self.resample)


class UpscalerLanczos(_ResampleUpscaler):
    name = "Lanczos"
    resample = LANCZOS


class UpscalerNearest(_ResampleUpscaler):
    name = "Nearest"
    resample = NEAREST


BUILTIN_MODEL_FREE = (UpscalerNone, UpscalerLanczos, UpscalerNearest)


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_target_size(width: int, height: int, field: str = "upscaling_resize") -> None:
    """Refuse results no machine here can hold, before any work starts."""
    if width > MAX_UPSCALE_SIDE or height > MAX_UPSCALE_SIDE or width * height > MAX_UPSCALE_PIXELS:
        raise ValidationError(field, f"the result would be {width}x{height} pixels; the limit is "
                                     f"{MAX_UPSCALE_SIDE} pixels a side and {MAX_UPSCALE_PIXELS // 2**20} "
                                     "megapixels")


# --- registry ---------------------------------------------------------------------------------------------------
def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def _is_builtin(cls: type) -> bool:
    return cls.__module__ in ("modules.upscaler", "modules.upscaler_models") or cls.__name__.startswith("_")


@dataclass
class UpscalerRegistry:
    """The upscalers of one runtime: None/Lanczos/Nearest, model files from A1111's folders, extensions."""

    ctx: UpscalerContext
    cmd_opts: Any = None
    scalers: list[UpscalerData] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def refresh(self) -> list[UpscalerData]:
        """Scan again (files added or removed); detection results of unchanged files are reused."""
        from modules import upscaler_models

        with self._lock, _context_lock:
            bind_context(self.ctx)
            warnings: list[str] = []
            datas: list[UpscalerData] = []
            for cls in BUILTIN_MODEL_FREE:
                datas += cls(None).scalers
            for spec in upscaler_models.FOLDERS:
                flag = getattr(self.cmd_opts, f"{spec.flag}_models_path", None) if spec.flag else None
                scaler = upscaler_models.SpandrelUpscaler(spec, flag)
                datas += scaler.scalers
            for cls in _all_subclasses(Upscaler):
                if _is_builtin(cls):
                    continue
                cmd_name = f"{cls.__name__.lower().replace('upscaler', '')}_models_path"
                user_path = getattr(self.cmd_opts, cmd_name, None)
                try:
                    scaler = cls(user_path)
                    scaler.user_path = user_path
                    scaler.model_download_path = user_path or scaler.model_path
                    datas += list(scaler.scalers or [])
                except Exception as e:  # a broken extension upscaler must not hide the others
                    msg = f"upscaler {cls.__module__}.{cls.__name__} failed to load: {type(e).__name__}: {e}"
                    log.error("%s", msg)
                    warnings.append(msg)
            first = {"None": 0, "Lanczos": 1, "Nearest": 2}
            datas.sort(key=lambda d: (first.get(d.name or "", 3) if isinstance(d.scaler, BUILTIN_MODEL_FREE)
                                      else 3, (d.name or "").lower()))
            self.scalers = _unique_names(datas)
            self.warnings = warnings
            return self.scalers

    def names(self) -> list[str]:
        return [d.name or "" for d in self.scalers]

    def problems(self) -> list[UpscalerData]:
        """Files that are listed but refused when picked (unknown architecture, damaged, unsafe)."""
        return [d for d in self.scalers if d.error]

    def find(self, name: str | None, field: str = "upscaler_1") -> UpscalerData:
        """The entry called `name` (exact, then case-insensitive, A1111's matching); a clear error otherwise."""
        from modules import upscaler_models

        if name is None or name == "":
            name = "None"
        for d in self.scalers:
            if d.name == name:
                return d
        lowered = name.lower()
        for d in self.scalers:
            if (d.name or "").lower() == lowered:
                return d
        missing = upscaler_models.known_missing(name, self.ctx.models_dir, self.cmd_opts)
        if missing is not None:
            raise missing
        raise ValidationError(field, f"no upscaler called {name!r}; available: {', '.join(self.names())}")


def _unique_names(datas: list[UpscalerData]) -> list[UpscalerData]:
    """Two files with the same stem in different folders get the folder in the later one's name."""
    seen: set[str] = set()
    for d in datas:
        if d.name in seen and d.data_path:
            d.name = f"{d.name} ({Path(d.data_path).parent.name})"
        seen.add(d.name or "")
    return datas


_registry_lock = threading.Lock()


def registry_for(runtime: Any) -> UpscalerRegistry:
    """The runtime's UpscalerRegistry, built and scanned on first use (kept on the runtime object)."""
    with _registry_lock:
        reg = vars(runtime).get("_upscaler_registry")
        if reg is None:
            opts = runtime.opts
            policy = runtime.policy
            device = policy.device if "esrgan" not in (getattr(runtime.cmd_opts, "use_cpu", None) or []) else "cpu"
            ctx = UpscalerContext(models_dir=runtime.paths.models_dir, get_opt=opts.get, device=device,
                                  dtype=policy.dtype if device == policy.device else None,
                                  half=not getattr(runtime.cmd_opts, "no_half", False),
                                  console_progress=not getattr(runtime.cmd_opts, "disable_console_progressbars",
                                                               False))
            reg = UpscalerRegistry(ctx, runtime.cmd_opts)
            reg.refresh()
            vars(runtime)["_upscaler_registry"] = reg
        return reg


@contextlib.contextmanager
def job_state(state: Any) -> Iterator[None]:
    token = current_state.set(state)
    try:
        yield
    finally:
        current_state.reset(token)


def upscale_image(runtime: Any, name: str | None, image: Image.Image, scale_or_size: float | tuple[int, int],
                  state: Any = None, field: str = "upscaler") -> Image.Image:
    """Upscale with the upscaler called `name` to `scale` times the size, or exactly to (width, height).

    This is what Extras, hires fix and SD upscale call. Model upscalers run tiled with progress per tile
    on `state` and stop between tiles when it is interrupted (UpscaleInterrupted).
    """
    data = registry_for(runtime).find(name, field)
    if data.error:
        raise WebUIError(f"Upscaler {data.name!r} cannot be used: {data.error}")
    if isinstance(scale_or_size, tuple):
        width, height = int(scale_or_size[0]), int(scale_or_size[1])
        if width < 1 or height < 1:
            raise ValidationError(field, f"the target size {width}x{height} is not positive")
        scale = max(width / image.width, height / image.height)
    else:
        scale = float(scale_or_size)
        if not scale > 0:
            raise ValidationError(field, f"the scale {scale} is not positive")
        width, height = target_size(image.width, image.height, scale)
    check_target_size(width, height)
    assert data.scaler is not None
    with job_state(state):
        out = data.scaler.upscale(image, scale, data.data_path)
    if isinstance(scale_or_size, tuple) and out.size != (width, height):
        out = out.resize((width, height), resample=LANCZOS)
    return out


def hires_upscaler_names(runtime: Any, latent_modes: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The Hires. fix / SD upscale dropdown: latent modes first, then every upscaler by name (A1111's order)."""
    return [*latent_modes, *registry_for(runtime).names()]
