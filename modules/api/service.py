"""What the API routes do, without any web framework: checks at the boundary, jobs on the shared queue, listings."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from modules import infotext as infotext_mod
from modules import sd_samplers
from modules.errors import ModelNotFoundError, SettingsError, ValidationError, WebUIError
from modules.jobs import Job
from modules.params import Txt2ImgParams
from modules.processing import Processed, process_images
from modules.state import JobState
from modules.txt2img import build_processing

log = logging.getLogger(__name__)

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin")
SECRET_FLAGS = ("api_auth", "gradio_auth", "gradio_auth_path", "ngrok", "tls_keyfile")
WAIT_POLL_SECONDS = 0.02


class JobFailedError(WebUIError):
    """A job raised something other than a WebUIError (a bug); the message is generic, the log has the details."""


class TaskIdInUseError(ValidationError):
    pass


# --- running jobs ------------------------------------------------------------------------------------------------
class PendingJob:
    """A job submitted to the shared queue, remembering the exception object so its type maps to a status code."""

    def __init__(self, runtime: Any, name: str, fn: Callable[[JobState], Any], task_id: str | None = None) -> None:
        self.exc: BaseException | None = None

        def wrapped(state: JobState) -> Any:
            try:
                return fn(state)
            except BaseException as e:
                self.exc = e
                raise

        if task_id:
            existing = runtime.jobs.get(task_id)
            if existing is not None and existing.status in ("queued", "running"):
                raise TaskIdInUseError("force_task_id", f"a job with id {task_id!r} is already queued or running")
        self.job: Job = runtime.jobs.submit(name, wrapped, task_id=task_id)

    @property
    def done(self) -> bool:
        return self.job.done.is_set()

    def result(self) -> Any:
        """The job's result, or its error re-raised (WebUIError as is, anything else as JobFailedError)."""
        job = self.job
        if job.status != "failed":
            return job.result
        if isinstance(self.exc, WebUIError):
            raise self.exc
        if self.exc is None:  # failed before its function ran (e.g. interrupted while queued)
            raise WebUIError(job.error or "the job failed")
        raise JobFailedError(
            f"{job.name} failed with an internal error ({type(self.exc).__name__}); see the server log"
        )


def run_job(runtime: Any, name: str, fn: Callable[[JobState], Any]) -> Any:
    """Submit to the shared FIFO queue and block until done (for quick model/settings jobs)."""
    pending = PendingJob(runtime, name, fn)
    pending.job.done.wait()
    return pending.result()


# --- txt2img -----------------------------------------------------------------------------------------------------
# Infotext key -> (request field, cast): the fields A1111's `infotext` request field may fill.
_INFOTEXT_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", lambda v: int(float(v))),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", lambda v: int(float(v))),
    "Size-1": ("width", lambda v: int(float(v))),
    "Size-2": ("height", lambda v: int(float(v))),
    "Variation seed": ("subseed", lambda v: int(float(v))),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", lambda v: int(float(v))),
    "Seed resize from-2": ("seed_resize_from_h", lambda v: int(float(v))),
    "Denoising strength": ("denoising_strength", float),
}


def _cast_setting(default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        return str(value).lower() in ("true", "1", "yes")
    if isinstance(default, int):
        return int(float(value))
    if isinstance(default, float):
        return float(value)
    return str(value)


def apply_infotext(runtime: Any, params: Txt2ImgParams) -> Txt2ImgParams:
    """Fill the fields the client did not send (and settings it did not override) from `infotext`, as A1111."""
    if not params.infotext:
        return params
    if len(params.infotext) > 64 * 1024:
        raise ValidationError("infotext", "is longer than 65536 characters")
    parsed = infotext_mod.parse_generation_parameters(params.infotext)
    given = params.model_fields_set
    update: dict[str, Any] = {}
    for key, (field, cast) in _INFOTEXT_FIELDS.items():
        if key in parsed and field not in given:
            try:
                update[field] = cast(parsed[key])
            except (TypeError, ValueError):
                raise ValidationError("infotext", f"{key}: {parsed[key]!r} is not a valid value") from None
    overrides = dict(params.override_settings)
    opts = runtime.opts
    for setting, info in opts.data_labels.items():
        if (
            info.infotext
            and info.infotext in parsed
            and setting not in overrides
            and not _locked(opts, setting)
            and setting != "sd_vae"
        ):
            with contextlib.suppress(TypeError, ValueError):
                overrides[setting] = _cast_setting(info.default, parsed[info.infotext])
    update["override_settings"] = overrides
    data = params.model_dump(exclude_unset=True) | update
    data.pop("infotext", None)
    try:
        return Txt2ImgParams(**data)
    except PydanticValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise ValidationError(f"infotext.{where}", err.get("msg", "invalid value")) from None


def _locked(opts: Any, key: str) -> bool:
    info = opts.data_labels.get(key)
    return opts.is_frozen(key) or bool(info is not None and info.restrict_api)


def _known_setting(opts: Any, key: str) -> bool:
    return key in opts.data_labels or key in opts.data


def check_override_settings(runtime: Any, overrides: dict[str, Any], field: str = "override_settings") -> dict:
    """Refuse unknown, locked (folders, security, frozen) and ill-typed settings before anything runs."""
    opts = runtime.opts
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        where = f"{field}.{key}"
        if not _known_setting(opts, key):
            raise ValidationError(where, "no such setting")
        if _locked(opts, key):
            raise ValidationError(where, "this setting cannot be changed through the API")
        if key == "sd_model_checkpoint":
            checked[key] = resolve_checkpoint(runtime, value, where)
            continue
        try:
            checked[key] = opts.validate(key, value)
        except SettingsError as e:
            raise ValidationError(where, str(e)) from None
    return checked


def resolve_checkpoint(runtime: Any, name: Any, field: str = "sd_model_checkpoint") -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(field, "must be a checkpoint title")
    info = runtime.registry.closest(name)
    if info is None:
        runtime.refresh_checkpoints()
        info = runtime.registry.closest(name)
    if info is None:
        raise ValidationError(
            field, f"checkpoint {name!r} not found; available: {', '.join(runtime.registry.titles()) or 'none'}"
        )
    return info.title


def _check_sampler(sampler: str | None, scheduler: str | None, field: str) -> None:
    try:
        sd_samplers.split_sampler_and_scheduler(sampler or "", scheduler)
    except ValueError as e:
        raise ValidationError(field, str(e)) from None


def _find_script(runner: Any, title: str, *, alwayson: bool) -> Any:
    for script in runner.scripts:
        if bool(script.alwayson) == alwayson and script.title().lower() == title.lower():
            return script
    return None


def _script_titles(runner: Any, *, alwayson: bool) -> list[str]:
    return [s.title() for s in runner.scripts if bool(s.alwayson) == alwayson]


def build_script_args(runner: Any, params: Txt2ImgParams) -> tuple[Any, tuple]:
    """(selected script or None, the flat script_args list the runner slices per script, as A1111 lays it out)."""
    selected = None
    if params.script_name:
        selected = _find_script(runner, params.script_name, alwayson=False)
        if selected is None:
            available = ", ".join(_script_titles(runner, alwayson=False)) or "none"
            raise ValidationError("script_name", f"no script named {params.script_name!r}; available: {available}")
    size = max([s.args_to or 0 for s in runner.scripts], default=0)
    flat: list[Any] = [None] * size
    if selected is not None and selected.args_from is not None:
        flat[selected.args_from : selected.args_to] = list(params.script_args)[: selected.args_to - selected.args_from]
    for title, entry in params.alwayson_scripts.items():
        script = _find_script(runner, title, alwayson=True)
        if script is None:
            available = ", ".join(_script_titles(runner, alwayson=True)) or "none"
            raise ValidationError(
                f"alwayson_scripts.{title}", f"no always-on script with that title; available: {available}"
            )
        if not isinstance(entry, dict) or not isinstance(entry.get("args", []), list):
            raise ValidationError(f"alwayson_scripts.{title}", 'must be an object like {"args": [...]}')
        if script.args_from is not None and script.args_to is not None:
            args = entry.get("args", [])[: script.args_to - script.args_from]
            flat[script.args_from : script.args_from + len(args)] = args
    return selected, tuple(flat)


def prepare_txt2img(runtime: Any, params: Txt2ImgParams) -> Txt2ImgParams:
    """Everything that can be refused before queueing: sampler, styles, settings and script names."""
    params = apply_infotext(runtime, params)
    _check_sampler(params.sampler_name or params.sampler_index, params.scheduler, "sampler_name")
    if params.styles and runtime.styles is not None:
        missing = runtime.styles.missing(params.styles)
        if missing:
            raise ValidationError(
                "styles", f"unknown styles {missing}; available: {', '.join(runtime.styles.names()) or 'none'}"
            )
    check_override_settings(runtime, params.override_settings)
    build_script_args(runtime.scripts_txt2img, params)
    return params


def _ensure_model(runtime: Any) -> None:
    """After /unload-checkpoint the next generation loads the selected model again, as A1111 does."""
    if runtime.models.current is None and runtime.registry.titles():
        runtime.switch_checkpoint(runtime.opts.sd_model_checkpoint or runtime.registry.titles()[0])


def txt2img_job(runtime: Any, params: Txt2ImgParams) -> Callable[[JobState], Processed]:
    """The job body: optional per-job checkpoint, the selected script or process_images, settings kept or not."""
    overrides = check_override_settings(runtime, params.override_settings)
    checkpoint = overrides.pop("sd_model_checkpoint", None)
    job_params = params.model_copy(update={"override_settings": overrides})

    def run(state: JobState) -> Processed:
        _ensure_model(runtime)
        previous = runtime.current_title()
        switched = bool(checkpoint and checkpoint != previous)
        if switched:
            runtime.switch_checkpoint(checkpoint)
        try:
            p = build_processing(runtime, job_params, state, is_api=True)
            selected, p.script_args = build_script_args(runtime.scripts_txt2img, job_params)
            processed = None
            if selected is not None:
                processed = selected.run(p, *p.script_args[selected.args_from : selected.args_to])
            if processed is None:
                processed = process_images(p)
        finally:
            if switched and params.override_settings_restore_afterwards and previous:
                runtime.switch_checkpoint(previous)
        if not params.override_settings_restore_afterwards and overrides:
            for key, value in overrides.items():
                runtime.opts.set(key, value, is_api=True)
            runtime.save_settings()
        return processed

    return run


# --- progress ----------------------------------------------------------------------------------------------------
def progress(runtime: Any, id_task: str | None = None) -> tuple[dict[str, Any], Any]:
    """(A1111 progress fields, the live preview PIL image or None) for one job, by default the running one."""
    jobs = runtime.jobs
    queue_size = len(jobs.pending())
    job = jobs.get(id_task) if id_task else jobs.current
    if id_task and job is None:
        raise ModelNotFoundError(f"no job with id {id_task!r} is queued, running or recently finished")
    out: dict[str, Any] = {
        "progress": 0.0,
        "eta_relative": 0.0,
        "state": {},
        "textinfo": None,
        "id_task": job.id if job else None,
        "queue_position": None,
        "queue_size": queue_size,
    }
    if job is None:
        return out, None
    if job.status == "queued":
        position = jobs.position(job)
        out.update(queue_position=position, textinfo=f"In queue: {position}/{queue_size}")
        return out, None
    st = job.state
    started = st.time_start or job.started
    out["state"] = {
        "skipped": st.skipped,
        "interrupted": st.interrupted,
        "stopping_generation": st.stopping_generation,
        "job": st.job,
        "job_count": st.job_count,
        "job_no": st.job_no,
        "sampling_step": st.sampling_step,
        "sampling_steps": st.sampling_steps,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)) if started else "0",
    }
    if job.status in ("done", "failed"):
        out.update(progress=1.0, queue_position=0, textinfo=job.error if job.status == "failed" else "Done")
        return out, None
    out.update(progress=st.progress, eta_relative=st.eta() or 0.0, queue_position=0, textinfo=st.textinfo)
    return out, st.current_image


def target_job(runtime: Any, id_task: str | None) -> Job | None:
    if not id_task:
        return runtime.jobs.current
    job = runtime.jobs.get(id_task)
    if job is None:
        raise ModelNotFoundError(f"no job with id {id_task!r} is queued, running or recently finished")
    return job


# --- settings ----------------------------------------------------------------------------------------------------
def get_options(runtime: Any) -> dict[str, Any]:
    return runtime.opts.as_dict()


def set_options(runtime: Any, values: dict[str, Any]) -> None:
    """Check every key first (all or nothing), then apply in the queue so no running job sees a half change.

    A key sent with its current value is accepted even when locked, so that GET-then-POST round trips work.
    """
    opts = runtime.opts
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if not _known_setting(opts, key):
            raise ValidationError(key, "no such setting")
        if key == "sd_model_checkpoint":
            title = resolve_checkpoint(runtime, value, key)
            if title != runtime.current_title() or runtime.models.current is None:
                changes[key] = title
            continue
        if value == opts.get(key):
            continue
        changes.update(check_override_settings(runtime, {key: value}, field="options"))
    if not changes:
        return
    checkpoint = changes.pop("sd_model_checkpoint", None)

    def apply(state: JobState) -> None:
        if checkpoint:
            runtime.switch_checkpoint(checkpoint)
        for key, value in changes.items():
            opts.set(key, value, is_api=True)
        runtime.save_settings()

    run_job(runtime, "options", apply)


def cmd_flags(runtime: Any) -> dict[str, Any]:
    """Every flag, with secrets (credentials, key files) blanked as A1111's sysinfo does."""
    flags = dict(vars(runtime.cmd_opts))
    for key in SECRET_FLAGS:
        if flags.get(key):
            flags[key] = "<hidden>"
    return flags


# --- listings ----------------------------------------------------------------------------------------------------
def samplers() -> list[dict[str, Any]]:
    return [{"name": c.name, "aliases": list(c.aliases), "options": dict(c.options)} for c in sd_samplers.SAMPLERS]


def schedulers() -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "label": s.label,
            "aliases": list(s.aliases) or None,
            "default_rho": s.default_rho,
            "need_inner_model": s.need_inner_model,
        }
        for s in sd_samplers.SCHEDULERS
    ]


def _hires() -> Any:
    """The hires-fix module when this build has it (its upscaler names are what the API lists)."""
    try:
        from modules import hires
    except ImportError:
        return None
    return hires


def upscalers() -> list[dict[str, Any]]:
    hires = _hires()
    names = list(getattr(hires, "IMAGE_UPSCALERS", None) or ["None"])
    return [{"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4} for n in names]


def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": n} for n in getattr(_hires(), "LATENT_UPSCALE_MODES", None) or []]


def sd_models(runtime: Any) -> list[dict[str, Any]]:
    out = []
    for info in runtime.registry.list():
        config = info.config_override()
        out.append(
            {
                "title": info.title,
                "model_name": info.model_name,
                "hash": info.shorthash,
                "sha256": info.sha256,
                "filename": info.filename,
                "config": str(config) if config else None,
            }
        )
    return out


def _model_files(folders: Any, extensions: tuple[str, ...] = MODEL_EXTENSIONS) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            found += [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in extensions]
    return found


def sd_vaes(runtime: Any) -> list[dict[str, Any]]:
    return [{"model_name": p.name, "filename": str(p)} for p in _model_files(runtime.paths.vae_dirs)]


def hypernetworks(runtime: Any) -> list[dict[str, Any]]:
    return [{"name": p.stem, "path": str(p)} for p in _model_files([runtime.paths.hypernetwork_dir], (".pt",))]


def _safetensors_metadata(path: Path) -> dict[str, Any]:
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a damaged file is listed without metadata, not a failed request
        log.info("cannot read metadata of %s: %s", path, e)
        return {}


def loras(runtime: Any) -> list[dict[str, Any]]:
    out = []
    for p in _model_files([runtime.paths.lora_dir], (".safetensors", ".ckpt", ".pt")):
        meta = _safetensors_metadata(p)
        out.append({"name": p.stem, "alias": meta.get("ss_output_name") or p.stem, "path": str(p), "metadata": meta})
    return out


def prompt_styles(runtime: Any) -> list[dict[str, Any]]:
    db = runtime.styles
    if db is None:
        return []
    db.refresh_if_changed()
    return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in db.styles.values()]


def embeddings(runtime: Any) -> dict[str, Any]:
    db = runtime.embeddings
    if db is None:
        return {"loaded": {}, "skipped": {}}
    db.refresh()

    def item(e: Any) -> dict[str, Any]:
        return {
            "step": e.step if isinstance(e.step, int) else None,
            "sd_checkpoint": str(e.sd_checkpoint) if e.sd_checkpoint else None,
            "sd_checkpoint_name": str(e.sd_checkpoint_name) if e.sd_checkpoint_name else None,
            "shape": int(e.shape),
            "vectors": int(e.vectors),
        }

    index = getattr(db, "last_index", None)
    checked = index is not None and index.version == db.version  # fitted against the loaded model since the scan
    loaded = index.word_embeddings if checked else dict(getattr(db, "loaded", {}))
    skipped = {Path(path).stem: str(reason) for path, reason in getattr(db, "failed", {}).items()}
    if checked:
        skipped.update((name, str(reason)) for name, reason in index.skipped.items())
    return {
        "loaded": {name: item(e) for name, e in loaded.items()},
        "skipped": {name: {"reason": reason} for name, reason in skipped.items()},
    }


def refresh_embeddings(runtime: Any) -> None:
    if runtime.embeddings is not None:
        runtime.embeddings.refresh(force=True)


def memory() -> dict[str, Any]:
    import psutil

    process = psutil.Process(os.getpid())
    rss = process.memory_info().rss
    vm = psutil.virtual_memory()
    ram = {"free": vm.available, "used": rss, "total": vm.total}
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "CUDA is not available"}}
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()
    cuda = {
        "system": {"free": free, "used": total - free, "total": total},
        "active": {"current": stats.get("active_bytes.all.current", 0), "peak": stats.get("active_bytes.all.peak", 0)},
        "allocated": {
            "current": stats.get("allocated_bytes.all.current", 0),
            "peak": stats.get("allocated_bytes.all.peak", 0),
        },
        "reserved": {
            "current": stats.get("reserved_bytes.all.current", 0),
            "peak": stats.get("reserved_bytes.all.peak", 0),
        },
        "inactive": {
            "current": stats.get("inactive_split_bytes.all.current", 0),
            "peak": stats.get("inactive_split_bytes.all.peak", 0),
        },
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }
    return {"ram": ram, "cuda": cuda}


def _script_name(script: Any) -> str:
    return script.name or script.title().lower()


def scripts_list(runtime: Any) -> dict[str, list[str]]:
    return {
        "txt2img": [_script_name(s) for s in runtime.scripts_txt2img.scripts],
        "img2img": [_script_name(s) for s in runtime.scripts_img2img.scripts],
    }


def script_info(runtime: Any) -> list[dict[str, Any]]:
    out = []
    for runner, is_img2img in ((runtime.scripts_txt2img, False), (runtime.scripts_img2img, True)):
        for s in runner.scripts:
            api_info = getattr(s, "api_info", None)
            args = [dict(vars(a)) if not isinstance(a, dict) else a for a in getattr(api_info, "args", None) or []]
            out.append(
                {"name": _script_name(s), "is_alwayson": bool(s.alwayson), "is_img2img": is_img2img, "args": args}
            )
    return out


def extensions(runtime: Any) -> list[dict[str, Any]]:
    out = []
    for ext in getattr(runtime, "extensions", None) or []:
        if not getattr(ext, "remote", None):
            continue
        out.append(
            {
                "name": ext.name,
                "remote": ext.remote,
                "branch": getattr(ext, "branch", "") or "",
                "commit_hash": getattr(ext, "commit_hash", "") or "",
                "version": getattr(ext, "version", "") or "",
                "commit_date": getattr(ext, "commit_date", 0) or 0,
                "enabled": bool(getattr(ext, "enabled", True)),
            }
        )
    return out


def unload_checkpoint(runtime: Any) -> None:
    run_job(runtime, "unload-checkpoint", lambda state: runtime.models.unload())


def reload_checkpoint(runtime: Any) -> None:
    def reload(state: JobState) -> None:
        titles = runtime.registry.titles()
        if not titles:
            raise ModelNotFoundError("no checkpoint found to load")
        runtime.switch_checkpoint(runtime.opts.sd_model_checkpoint or titles[0])

    run_job(runtime, "reload-checkpoint", reload)
