"""L4 adapter support: what the API routes do, without any web framework: jobs on the shared queue, listings."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modules import job_runner, sd_samplers
from modules.errors import ModelNotFoundError, ValidationError, WebUIError
from modules.job_runner import JobRequest
from modules.jobs import Job
from modules.params import GenerationParams, Img2ImgParams
from modules.state import JobState

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
    """A job on the shared queue, whose error type maps to a status code."""

    def __init__(self, job: Job) -> None:
        self.job = job

    @property
    def done(self) -> bool:
        return self.job.done.is_set()

    def result(self) -> Any:
        """The job's result, or its error re-raised (WebUIError as is, anything else as JobFailedError)."""
        job = self.job
        if job.status != "failed":
            return job.result
        if isinstance(job.exc, WebUIError):
            raise job.exc
        if job.exc is None:  # failed before its function ran (e.g. interrupted while queued)
            raise WebUIError(job.error or "the job failed")
        raise JobFailedError(
            f"{job.name} failed with an internal error ({type(job.exc).__name__}); see the server log"
        )


def _check_task_id(runtime: Any, task_id: str | None) -> None:
    if task_id:
        existing = runtime.jobs.get(task_id)
        if existing is not None and existing.status in ("queued", "running"):
            raise TaskIdInUseError("force_task_id", f"a job with id {task_id!r} is already queued or running")


def submit(runtime: Any, name: str, fn: Callable[[JobState], Any], task_id: str | None = None) -> PendingJob:
    """A quick non-generation job (model, settings) on the shared queue."""
    _check_task_id(runtime, task_id)
    return PendingJob(job_runner.submit_service(runtime, name, fn, task_id=task_id))


def run_job(runtime: Any, name: str, fn: Callable[[JobState], Any]) -> Any:
    """Submit to the shared FIFO queue and block until done (for quick model/settings jobs)."""
    pending = submit(runtime, name, fn)
    pending.job.done.wait()
    return pending.result()


# --- generation --------------------------------------------------------------------------------------------------
def submit_generation(runtime: Any, params: GenerationParams) -> PendingJob:
    """Check (422 before queueing) and queue a txt2img/img2img request: the same job function the UI uses."""
    _check_task_id(runtime, params.force_task_id)
    return PendingJob(job_runner.submit(runtime, JobRequest(params, is_api=True), task_id=params.force_task_id))


def img2img_params(body: Any) -> Img2ImgParams:
    """The API's img2img body with its base64 images decoded (each refused with its field name)."""
    from modules.api.images import decode_base64_to_image

    init = [decode_base64_to_image(text, f"init_images.{i}") for i, text in enumerate(body.init_images)]
    if not init:
        raise ValidationError("init_images", "img2img needs at least one init image")
    mask = decode_base64_to_image(body.mask, "mask") if body.mask else None
    latent_mask = decode_base64_to_image(body.latent_mask, "latent_mask") if body.latent_mask else None
    data = {k: getattr(body, k) for k in body.model_fields_set if k in Img2ImgParams.model_fields}
    data.update(init_images=init, mask=mask, latent_mask=latent_mask)
    return Img2ImgParams(**data)


def prepare(runtime: Any, params: GenerationParams) -> GenerationParams:
    """The checks done before queueing, with the infotext applied (what the job will run)."""
    return job_runner.prepare(runtime, JobRequest(params, is_api=True)).params


check_override_settings = job_runner.check_override_settings
resolve_checkpoint = job_runner.resolve_checkpoint
_known_setting = job_runner._known_setting


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


def unload_checkpoint(runtime: Any) -> None:
    run_job(runtime, "unload-checkpoint", lambda state: runtime.models.unload())


def reload_checkpoint(runtime: Any) -> None:
    def reload(state: JobState) -> None:
        titles = runtime.registry.titles()
        if not titles:
            raise ModelNotFoundError("no checkpoint found to load")
        runtime.switch_checkpoint(runtime.opts.sd_model_checkpoint or titles[0])

    run_job(runtime, "reload-checkpoint", reload)
