"""A1111's `modules.shared` for extensions only: a lazy facade over the Runtime bound at start-up."""

from __future__ import annotations

import inspect
import os
import re
import sys
import types
from typing import Any

from modules.options import OptionHTML, OptionInfo, options_section
from modules.paths import SCRIPT_PATH
from modules.state import JobState as State

__all__ = ["OptionHTML", "OptionInfo", "State", "options_section", "bind", "unbind", "LDMOnlyError"]

_runtime: Any = None
demo: Any = None
script_path = str(SCRIPT_PATH)
latent_upscale_modes: dict[str, Any] = {}
settings_components: dict[str, Any] = {}
tab_names: list[str] = []
hf_endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"

xformers_available = False
batch_cond_uncond = True  # A1111 1.6+: cond and uncond always go through the UNet in one batch
latent_upscale_default_mode = "Latent"
# A1111's table: dropdown name -> torch interpolate mode/antialias (the hires module holds the one we use).
latent_upscale_modes.update({
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
})

# Attributes of A1111's LDM model object. `first_stage_model`, `decode_first_stage`, `encode_first_stage`,
# `get_first_stage_encoding` and `get_learned_conditioning` have cheap diffusers equivalents (SdModelProxy).
LDM_ONLY = frozenset({"model", "cond_stage_model", "conditioner", "forge_objects", "diffusion_model",
                      "apply_model", "parameterization", "alphas_cumprod", "cond_stage_key", "state_dict",
                      "named_modules", "save_checkpoint", "network_layer_mapping"})


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
    def first_stage_model(self) -> Any:
        """The VAE with LDM's call shape: `.decode(z)` and `.encode(x)` on unscaled latents (diffusers' AutoencoderKL)."""
        return _FirstStage(self._model.pipe.vae)

    @property
    def scale_factor(self) -> float:
        return float(getattr(self._model.pipe.vae.config, "scaling_factor", 0.18215))

    def decode_first_stage(self, z: Any) -> Any:
        """Scaled latents -> images in [-1, 1], as LDM's method (through diffusers' VAE)."""
        return self.first_stage_model.decode(z / self.scale_factor)

    def encode_first_stage(self, x: Any) -> Any:
        """Images in [-1, 1] -> the latent distribution (has `.sample()` and `.mode()`, like LDM's)."""
        vae = self._model.pipe.vae
        return vae.encode(x.to(device=vae.device, dtype=vae.dtype)).latent_dist

    def get_first_stage_encoding(self, encoder_posterior: Any) -> Any:
        z = encoder_posterior.sample() if hasattr(encoder_posterior, "sample") else encoder_posterior
        return z * self.scale_factor

    def get_learned_conditioning(self, prompts: list[str]) -> Any:
        """Our text conditioner's output for these prompts (SD1/2: a tensor; SDXL: A1111's dict of tensors)."""
        texts = prompts if isinstance(prompts, list) else list(prompts)  # keep SdConditioning's attributes
        return _need_runtime("sd_model").conditioner_for(self._model).get_learned_conditioning(texts)

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


class _FirstStage:
    """LDM's `first_stage_model` call shape over diffusers' VAE."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae

    def decode(self, z: Any) -> Any:
        return self.vae.decode(z.to(device=self.vae.device, dtype=self.vae.dtype)).sample

    def encode(self, x: Any) -> Any:
        return self.vae.encode(x.to(device=self.vae.device, dtype=self.vae.dtype)).latent_dist

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ldm_only_error(f"shared.sd_model.first_stage_model.{name}")


class _StateFacade:
    """A1111's global `shared.state`: reads and actions go to the job that is running now."""

    def _current(self) -> Any:
        jobs = getattr(_runtime, "jobs", None)
        job = getattr(jobs, "current", None)
        return getattr(job, "state", None)

    def __getattr__(self, name: str) -> Any:
        st = self._current()
        if st is not None and hasattr(st, name):
            return getattr(st, name)
        defaults = {"interrupted": False, "skipped": False, "stopping_generation": False, "job": "", "job_no": 0,
                    "job_count": 0, "sampling_step": 0, "sampling_steps": 0, "textinfo": None,
                    "current_image": None, "processing_has_refined_job_count": False, "oom": False,
                    "server_start": None, "time_start": None, "id_live_preview": 0, "current_latent": None}
        if name in defaults:
            return defaults[name]
        if st is None and name in ("interrupt", "skip", "begin", "end", "nextjob", "stop_generating",
                                   "assign_current_image", "set_current_image", "do_set_current_image",
                                   "dict", "request_restart"):
            return _no_job_action(name)
        if name in ("assign_current_image", "set_current_image", "do_set_current_image"):
            return lambda *a, **k: None  # live previews come from the denoiser's own hook
        raise AttributeError(f"shared.state has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        st = self._current()
        if st is not None:
            setattr(st, name, value)


def _no_job_action(name: str) -> Any:
    if name == "dict":
        return lambda: {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
                        "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    return lambda *a, **k: None


state = _StateFacade()


class _TotalTqdm:
    """A1111's `shared.total_tqdm`: the console bar over all steps of a job. Ours is drawn by the job itself,
    so these calls only keep count (extensions call them around their own loops)."""

    def __init__(self) -> None:
        self.total = 0
        self.n = 0

    def reset(self) -> None:
        self.n = 0

    def update(self) -> None:
        self.n += 1

    def updateTotal(self, new_total: int) -> None:  # noqa: N802 - A1111's name
        self.total = int(new_total)

    def clear(self) -> None:
        self.n, self.total = 0, 0


total_tqdm = _TotalTqdm()


class _MemMon:
    """A1111's `shared.mem_mon` (VRAM statistics for the UI); reads CUDA's counters when there is a GPU."""

    def monitor(self) -> None: ...

    def stop(self) -> dict[str, int]:
        return self.read()

    def read(self) -> dict[str, int]:
        import torch

        if not torch.cuda.is_available():
            return {}
        free, total = torch.cuda.mem_get_info()
        return {"free": free, "total": total, "active_peak": torch.cuda.max_memory_allocated(),
                "reserved_peak": torch.cuda.max_memory_reserved(), "system_peak": total - free}


mem_mon = _MemMon()


def refresh_checkpoints() -> list[str]:
    return list(_need_runtime("refresh_checkpoints").refresh_checkpoints())


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules import sd_models

    return sd_models.checkpoint_tiles(use_short)


def reload_gradio_theme(theme_name: str | None = None) -> None:
    """A1111 re-creates the Gradio theme; ours is chosen at start (--theme), so nothing to do."""


def bind(runtime: Any) -> None:
    """Called once by the composition root so extensions see this runtime."""
    global _runtime
    _runtime = runtime
    from modules import paths_internal

    paths_internal.bind(getattr(runtime, "paths", None))
    from modules import hashes

    hashes.bind_cache(getattr(runtime, "hash_cache", None))
    from modules import devices

    devices.bind(getattr(runtime, "policy", None), getattr(runtime, "cmd_opts", None))


def unbind() -> None:
    global _runtime
    _runtime = None
    from modules import paths_internal

    paths_internal.bind(None)
    from modules import hashes

    hashes.bind_cache(None)
    from modules import devices

    devices.bind(None)


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
    if name == "sd_upscalers":  # A1111's list of UpscalerData (built-in, model files, extensions' Upscalers)
        if _runtime is None:
            return []
        from modules import upscaler

        return upscaler.registry_for(_runtime).scalers
    if name == "face_restorers":
        if _runtime is None:
            return []
        from modules import face_restoration

        return face_restoration.restorers_for(_runtime)
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
    if name == "config_filename":
        return str(_need_runtime(name).paths.settings_file)
    if name == "hide_dirs":
        return {"visible": not getattr(_need_runtime(name).cmd_opts, "hide_ui_dir_config", False)}
    if name == "hypernetworks":
        return _need_runtime(name).hypernetworks
    if name == "interrogator":
        from modules.compat_surface import Interrogator

        return Interrogator()
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")


class _SharedModule(types.ModuleType):
    """Assigning `shared.sd_model` (an A1111 habit for swapping models) would hide the live model for good;
    refuse it with the call to use instead. Other attributes assign as usual (extensions patch some)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "sd_model":
            raise AttributeError(f"Extension {calling_extension()!r} assigns shared.sd_model: models are switched "
                                 f"with modules.sd_models.reload_model_weights(info=...), which keeps the one model "
                                 f"manager in charge.")
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _SharedModule
