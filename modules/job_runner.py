"""L3 processing: the one job function every UI click, API call and test goes through, for every kind of job.

`prepare()` refuses a bad request before it is queued (sampler, styles, settings, script names, infotext);
`submit()` puts it on the shared queue; the queued body is `run()`: it waits for the start-up model load, runs
the job on its per-job checkpoint (`override_settings.sd_model_checkpoint`), builds the kind's processing object,
runs the selected script or `process_images`, and keeps or restores the overrides (saving settings once).
Non-generation kinds (extras, merge, train) register a service and share the same queue and override rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from modules import img2img_batch, img2img_prepare, infotext_fields, sd_samplers
from modules import infotext as infotext_mod
from modules.errors import SettingsError, ValidationError, WebUIError
from modules.params import GenerationParams, Img2ImgParams, Txt2ImgParams
from modules.processed import Processed
from modules.processing import (
    StableDiffusionProcessing,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from modules.state import JobState

log = logging.getLogger(__name__)
MAX_INFOTEXT = 64 * 1024


@dataclass(frozen=True)
class GenerationKind:
    """What differs between txt2img and img2img at the job level: classes, script runner, output folders."""

    name: str
    params_class: type[GenerationParams]
    processing_class: type[StableDiffusionProcessing]
    scripts_attr: str
    samples_dir: tuple[str, str]
    grids_dir: tuple[str, str]


KINDS: dict[str, GenerationKind] = {
    "txt2img": GenerationKind("txt2img", Txt2ImgParams, StableDiffusionProcessingTxt2Img, "scripts_txt2img",
                              ("outdir_txt2img_samples", "outdir_samples"), ("outdir_txt2img_grids", "outdir_grids")),
    "img2img": GenerationKind("img2img", Img2ImgParams, StableDiffusionProcessingImg2Img, "scripts_img2img",
                              ("outdir_img2img_samples", "outdir_samples"), ("outdir_img2img_grids", "outdir_grids")),
}
# Services of the other job kinds (extras, merge, train): fn(runtime, params, state) -> result.
SERVICES: dict[str, Callable[[Any, Any, JobState], Any]] = {}


def register_service(kind: str, fn: Callable[[Any, Any, JobState], Any]) -> None:
    SERVICES[kind] = fn


@dataclass(frozen=True)
class JobRequest:
    """One job: its params, where it came from, and (from the UI) the script controls' flat values."""

    params: Any
    is_api: bool = False
    script_args: tuple | None = None  # the UI's values; None builds them from script_name / alwayson_scripts
    kind: str = ""
    output_dir: str | None = None  # img2img batch: save the images here instead of the settings' folder
    batch: dict[str, Any] | None = None  # img2img's Batch mode: folders and PNG-info options (img2img_batch)
    # Settings our own code sets for a job (never from a request body): e.g. the batch's file names.
    trusted_overrides: dict[str, Any] | None = None
    # The body of a non-generation kind (extras, merge, train, model and settings jobs): fn(runtime, params, state).
    service: Callable[[Any, Any, JobState], Any] | None = None

    @property
    def kind_name(self) -> str:
        return self.kind or getattr(type(self.params), "kind", "")


# --- before queueing --------------------------------------------------------------------------------------------
def _locked(opts: Any, key: str) -> bool:
    info = opts.data_labels.get(key)
    return opts.is_frozen(key) or bool(info is not None and info.restrict_api)


def _known_setting(opts: Any, key: str) -> bool:
    return key in opts.data_labels or key in opts.data


def resolve_checkpoint(runtime: Any, name: Any, field: str = "sd_model_checkpoint") -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(field, "must be a checkpoint title")
    info = runtime.registry.closest(name)
    if info is None:
        runtime.refresh_checkpoints()
        info = runtime.registry.closest(name)
    if info is None:
        raise ValidationError(
            field, f"checkpoint {name!r} not found; available: {', '.join(runtime.registry.titles()) or 'none'}")
    return info.title


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


def apply_infotext(runtime: Any, params: GenerationParams) -> GenerationParams:
    """Fill the fields the client did not send (and settings it did not override) from `infotext`, as A1111."""
    if not params.infotext:
        return params
    if len(params.infotext) > MAX_INFOTEXT:
        raise ValidationError("infotext", f"is longer than {MAX_INFOTEXT} characters")
    parsed = infotext_mod.parse_generation_parameters(params.infotext)
    given = params.model_fields_set
    found = infotext_fields.fields_from_infotext(parsed, type(params).kind or "txt2img")
    update = {k: v for k, v in found.items() if k not in given}
    overrides = dict(params.override_settings)
    opts = runtime.opts
    for key, value in infotext_fields.settings_from_infotext(
            parsed, opts, skip=lambda k: k in overrides or _locked(opts, k) or k == "sd_vae").items():
        overrides[key] = value
    update["override_settings"] = overrides
    data = params.model_dump(exclude_unset=True) | update
    data.pop("infotext", None)
    try:
        return type(params)(**data)
    except PydanticValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise ValidationError(f"infotext.{where}", err.get("msg", "invalid value")) from None


def _find_script(runner: Any, title: str, *, alwayson: bool) -> Any:
    for script in runner.scripts:
        if bool(script.alwayson) == alwayson and script.title().lower() == title.lower():
            return script
    return None


def _script_titles(runner: Any, *, alwayson: bool) -> list[str]:
    return [s.title() for s in runner.scripts if bool(s.alwayson) == alwayson]


def _control_default(control: Any) -> Any:
    """A script control's initial value as its script receives it (an index for `type="index"` choices)."""
    value = getattr(control, "value", None)
    if callable(value):  # Gradio allows a function as the initial value; it only runs on page load
        return None
    if getattr(control, "type", None) == "index" and getattr(control, "choices", None):
        choices = [c[1] if isinstance(c, (tuple, list)) else c for c in control.choices]
        return choices.index(value) if value in choices else None
    return value


def build_script_args(runner: Any, params: GenerationParams) -> tuple:
    """The flat script_args list as the page lays it out: [selected script's 1-based index, each script's slice].

    API clients name the selected script (`script_name`, positional `script_args`) and the always-on ones
    (`alwayson_scripts: {title: {"args": [...]}}`); this puts their values where the UI's controls would be.
    """
    size = max([s.args_to or 0 for s in runner.scripts], default=1)
    flat: list[Any] = [None] * max(size, 1)

    def put(start: int, values: list[Any]) -> None:  # element-wise: a short list never shifts the others
        for i, value in enumerate(values):
            flat[start + i] = value

    flat[0] = 0
    for script in runner.scripts:  # as A1111: what a client leaves out takes the control's default
        if script.args_from is not None:
            put(script.args_from, [_control_default(c) for c in (script.controls or [])])
    if params.script_name:
        selected = _find_script(runner, params.script_name, alwayson=False)
        if selected is None:
            available = ", ".join(_script_titles(runner, alwayson=False)) or "none"
            raise ValidationError("script_name", f"no script named {params.script_name!r}; available: {available}")
        flat[0] = runner.selectable_scripts.index(selected) + 1
        if selected.args_from is not None and selected.args_to is not None:
            put(selected.args_from, list(params.script_args)[:selected.args_to - selected.args_from])
    for title, entry in params.alwayson_scripts.items():
        script = _find_script(runner, title, alwayson=True)
        if script is None:
            available = ", ".join(_script_titles(runner, alwayson=True)) or "none"
            raise ValidationError(f"alwayson_scripts.{title}",
                                  f"no always-on script with that title; available: {available}")
        if not isinstance(entry, dict) or not isinstance(entry.get("args", []), list):
            raise ValidationError(f"alwayson_scripts.{title}", 'must be an object like {"args": [...]}')
        if script.args_from is not None and script.args_to is not None:
            put(script.args_from, entry.get("args", [])[:script.args_to - script.args_from])
    return tuple(flat)


def prepare(runtime: Any, request: JobRequest) -> JobRequest:
    """Everything that can be refused before queueing; returns the request with infotext applied."""
    params = request.params
    if not isinstance(params, GenerationParams):
        return request
    params = apply_infotext(runtime, params)
    if isinstance(params, Img2ImgParams) and request.batch is None:
        img2img_prepare.check_request(params)
    try:
        sd_samplers.split_sampler_and_scheduler(params.sampler_name or params.sampler_index, params.scheduler)
    except ValueError as e:
        raise ValidationError("sampler_name", str(e)) from None
    if params.styles and runtime.styles is not None:
        missing = runtime.styles.missing(params.styles)
        if missing:
            raise ValidationError(
                "styles", f"unknown styles {missing}; available: {', '.join(runtime.styles.names()) or 'none'}")
    check_override_settings(runtime, params.override_settings)
    if request.script_args is None:
        build_script_args(getattr(runtime, KINDS[type(params).kind].scripts_attr), params)
    return dataclasses.replace(request, params=params)


def submit(runtime: Any, request: JobRequest, task_id: str | None = None) -> Any:
    """Check the request, then queue it; returns the queued Job (its result is the kind's result)."""
    request = prepare(runtime, request)
    return runtime.jobs.submit(request.kind_name, lambda state: run(runtime, request, state), task_id=task_id)


# --- the queued body ------------------------------------------------------------------------------------------
def ensure_model(runtime: Any, state: JobState) -> None:
    """A job that needs a model waits for the start-up load (queued ahead of it) and loads the selected
    checkpoint when none is loaded (after /unload-checkpoint), showing the load as its progress."""
    if runtime.models.current is not None or not runtime.registry.titles():
        return
    title = runtime.opts.sd_model_checkpoint or runtime.registry.titles()[0]
    state.textinfo = f"Loading {title}"
    runtime.switch_checkpoint(title)


def build_processing(runtime: Any, params: GenerationParams, state: JobState, *, is_api: bool = False
                     ) -> StableDiffusionProcessing:
    """Request params -> the kind's processing object, bound to the loaded model and this job."""
    kind = KINDS[type(params).kind]
    model = runtime.models.current
    if model is None:
        raise WebUIError(runtime.model_status or "No checkpoint is loaded; pick one in the checkpoint list.")
    try:
        sampler, scheduler = sd_samplers.split_sampler_and_scheduler(
            params.sampler_name or params.sampler_index, params.scheduler)
    except ValueError as e:
        raise ValidationError("sampler_name", str(e)) from None
    allowed = {f.name for f in dataclasses.fields(kind.processing_class) if f.init}
    fields = params.processing_fields(allowed)
    fields["comments"] = dict(params.comments or {})
    p = kind.processing_class(sampler_name=sampler, scheduler=scheduler, **fields)
    info = runtime.models.current_info
    p.sd_model = model
    p.sd_model_name = info.name_for_extra if info else None
    p.sd_model_hash = runtime.models.shorthash()
    p.opts = runtime.opts
    p.state = state
    p.is_api = is_api
    p.conditioner = runtime.conditioner_for(model)
    p.runtime = runtime  # hires checkpoint and refiner switch models through it
    p.styles_db = getattr(runtime, "styles", None)
    p.extra_networks = getattr(runtime, "extra_networks", None)  # <lora:...> handlers, VAE selection
    p.scripts = getattr(runtime, kind.scripts_attr)
    p.outpath_samples = str(runtime.output_dir(*kind.samples_dir))
    p.outpath_grids = str(runtime.output_dir(*kind.grids_dir))
    if is_api and not params.save_images:
        p.do_not_save_samples = p.do_not_save_grid = True
    return p


@contextlib.contextmanager
def job_settings(runtime: Any, overrides: dict[str, Any], restore_afterwards: bool) -> Iterator[dict[str, Any]]:
    """The job's checkpoint and its other overrides: on the job only (default), or kept afterwards with one
    settings save. Yields the overrides that processing applies as its overlay."""
    overrides = dict(overrides)
    checkpoint = overrides.pop("sd_model_checkpoint", None)
    if restore_afterwards:
        with runtime.checkpoint_for_job(checkpoint, True):
            yield overrides
        return
    if checkpoint and checkpoint != runtime.current_title():
        runtime.switch_checkpoint(checkpoint, save=False)
    yield overrides
    for key, value in overrides.items():
        runtime.opts.set(key, value, is_api=True)
    if checkpoint or overrides:
        runtime.save_settings()


def run(runtime: Any, request: JobRequest, state: JobState) -> Any:
    """The job body for every kind."""
    params = request.params
    kind = request.kind_name
    if request.service is not None:
        return request.service(runtime, params, state)
    if kind in SERVICES:
        return SERVICES[kind](runtime, params, state)
    if kind not in KINDS:
        raise WebUIError(f"unknown job kind {kind!r}")
    ensure_model(runtime, state)
    if request.batch is not None:
        def run_one(one: Any, output_dir: str | None, saving: dict[str, Any]) -> Any:
            return run(runtime, dataclasses.replace(request, params=one, batch=None, output_dir=output_dir,
                                                    trusted_overrides=saving), state)

        return img2img_batch.run_batch(params, state, run_one, **request.batch)
    overrides = check_override_settings(runtime, params.override_settings)
    with job_settings(runtime, overrides, params.override_settings_restore_afterwards) as job_overrides:
        job_overrides = {**job_overrides, **(request.trusted_overrides or {})}
        p = build_processing(runtime, params.model_copy(update={"override_settings": job_overrides}), state,
                             is_api=request.is_api)
        if request.output_dir:
            p.outpath_samples = request.output_dir
        runner = p.scripts
        if request.script_args is not None:
            p.script_args = tuple(request.script_args)
        elif runner is not None:
            p.script_args = build_script_args(runner, params)
        processed: Processed | None = None
        if runner is not None and p.script_args:
            with p.opts.override(p.override_settings) if p.override_settings else contextlib.nullcontext():
                processed = runner.run(p, *p.script_args)
        return processed if processed is not None else process_images(p)


def submit_service(runtime: Any, kind: str, fn: Callable[[JobState], Any], task_id: str | None = None) -> Any:
    """Queue a non-generation job (extras, merge, train, a model or settings change) through the same job
    function; returns the Job."""
    return submit(runtime, JobRequest(None, kind=kind, service=lambda _rt, _params, state: fn(state)),
                  task_id=task_id)


def run_now(runtime: Any, request: JobRequest) -> Any:
    """Submit and wait (tests, benchmarks and scripts): the same queue and body as the UI and the API."""
    job = submit(runtime, request)
    return runtime.jobs.wait(job)
