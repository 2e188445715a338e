"""A1111's `modules.shared` for extensions only: a lazy facade over the Runtime bound at start-up."""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

from modules.options import OptionInfo, options_section
from modules.paths import SCRIPT_PATH

__all__ = ["OptionInfo", "options_section", "bind", "unbind", "LDMOnlyError"]

_runtime: Any = None
demo: Any = None
script_path = str(SCRIPT_PATH)
sd_upscalers: list[Any] = []
face_restorers: list[Any] = []
latent_upscale_modes: dict[str, Any] = {}
settings_components: dict[str, Any] = {}
tab_names: list[str] = []
hf_endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
total_tqdm: Any = None

LDM_ONLY = frozenset({"model", "cond_stage_model", "first_stage_model", "conditioner", "forge_objects",
                      "diffusion_model", "get_learned_conditioning", "decode_first_stage", "encode_first_stage",
                      "apply_model", "parameterization", "alphas_cumprod"})


class LDMOnlyError(AttributeError):
    """An extension reached for an LDM internal this diffusers-based webui does not have."""


def calling_extension() -> str:
    """Name of the extension whose code is on the stack (the innermost one), or 'unknown code'."""
    for frame in inspect.stack()[1:]:
        parts = os.path.normpath(frame.filename).split(os.sep)
        for root in ("extensions", "extensions-builtin"):
            if root in parts:
                i = len(parts) - 1 - parts[::-1].index(root)
                if i + 1 < len(parts) - 1:
                    return parts[i + 1]
    return "unknown code"


def ldm_only_error(what: str) -> LDMOnlyError:
    return LDMOnlyError(
        f"Extension {calling_extension()!r} uses {what}, an internal of A1111's LDM model that this webui (built "
        f"on diffusers) does not have. Extensions must use Script hooks, script_callbacks and the public "
        f"modules.shared/processing/images API; model changes go through the model patcher.")


class SdModelProxy:
    """What `shared.sd_model` returns: the flags extensions test, never the LDM internals."""

    def __init__(self, model: Any, info: Any, shorthash: str | None) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "sd_checkpoint_info", info)
        object.__setattr__(self, "sd_model_hash", shorthash)

    @property
    def is_sdxl(self) -> bool:
        return bool(self._model.is_sdxl)

    @property
    def is_sd1(self) -> bool:
        return bool(self._model.is_sd1)

    @property
    def is_sd2(self) -> bool:
        return bool(self._model.is_sd2)

    @property
    def is_sdxl_inpaint(self) -> bool:
        return self._model.variant == "sdxl-inpaint"

    @property
    def is_sd3(self) -> bool:
        return False

    @property
    def sd_model_checkpoint(self) -> str | None:
        return getattr(self.sd_checkpoint_info, "filename", None)

    @property
    def pipe(self) -> Any:
        """The diffusers pipeline (our own extension surface; read-only use)."""
        return self._model.pipe

    @property
    def device(self) -> Any:
        return self._model.device

    @property
    def dtype(self) -> Any:
        return self._model.dtype

    def __getattr__(self, name: str) -> Any:
        if name in LDM_ONLY:
            raise ldm_only_error(f"shared.sd_model.{name}")
        raise AttributeError(f"shared.sd_model has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in LDM_ONLY:
            raise ldm_only_error(f"shared.sd_model.{name}")
        object.__setattr__(self, name, value)


class _StateFacade:
    """A1111's global `shared.state`: reads and actions go to the job that is running now."""

    def _current(self) -> Any:
        jobs = getattr(_runtime, "jobs", None)
        job = getattr(jobs, "current", None)
        return getattr(job, "state", None)

    def __getattr__(self, name: str) -> Any:
        st = self._current()
        if st is not None:
            return getattr(st, name)
        defaults = {"interrupted": False, "skipped": False, "stopping_generation": False, "job": "", "job_no": 0,
                    "job_count": 0, "sampling_step": 0, "sampling_steps": 0, "textinfo": None,
                    "current_image": None, "processing_has_refined_job_count": False}
        if name in defaults:
            return defaults[name]
        if name in ("interrupt", "skip", "begin", "end", "nextjob", "stop_generating"):
            return lambda *a, **k: None
        raise AttributeError(f"shared.state has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        st = self._current()
        if st is not None:
            setattr(st, name, value)


state = _StateFacade()


def bind(runtime: Any) -> None:
    """Called once by the composition root so extensions see this runtime."""
    global _runtime
    _runtime = runtime


def unbind() -> None:
    global _runtime
    _runtime = None


def _need_runtime(name: str) -> Any:
    if _runtime is None:
        raise AttributeError(f"modules.shared.{name} is not available before the webui has started")
    return _runtime


def natural_sort_key(s: str, regex: re.Pattern = re.compile(r"([0-9]+)")) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in regex.split(s)]


def walk_files(path: str, allowed_extensions: list[str] | None = None) -> Any:
    if not os.path.exists(path):
        return
    allowed = {e.lower() for e in allowed_extensions} if allowed_extensions else None
    for root, _dirs, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is None or os.path.splitext(filename)[1].lower() in allowed:
                yield os.path.join(root, filename)


def listfiles(dirname: str) -> list[str]:
    names = sorted(os.listdir(dirname), key=natural_sort_key)
    return [os.path.join(dirname, x) for x in names if not x.startswith(".")]


def html_path(filename: str) -> str:
    return os.path.join(script_path, "html", filename)


def html(filename: str) -> str:
    path = html_path(filename)
    return open(path, encoding="utf8").read() if os.path.exists(path) else ""  # noqa: SIM115


def __getattr__(name: str) -> Any:
    if name == "opts":
        return _need_runtime(name).opts
    if name == "cmd_opts":
        return _need_runtime(name).cmd_opts
    if name == "sd_model":
        rt = _need_runtime(name)
        model = rt.models.current
        if model is None:
            return None
        return SdModelProxy(model, rt.models.current_info, rt.models.shorthash())
    if name == "models_path":
        return str(_need_runtime(name).paths.models_dir)
    if name == "data_path":
        return str(_need_runtime(name).paths.data_dir)
    if name == "prompt_styles":
        return _need_runtime(name).styles
    if name == "device":
        return _need_runtime(name).policy.device
    if name == "options_templates":
        return dict(_need_runtime(name).opts.data_labels)
    if name == "runtime":
        return _need_runtime(name)
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")
