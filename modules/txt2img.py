"""The txt2img service: request params -> processing object -> process_images, for the UI and the API."""

from __future__ import annotations

from typing import Any

from modules import sd_samplers
from modules.errors import ValidationError, WebUIError
from modules.params import Txt2ImgParams
from modules.processing import Processed, StableDiffusionProcessingTxt2Img, process_images
from modules.state import JobState

_P_FIELDS = (
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
    "seed_resize_from_w", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height", "restore_faces", "tiling",
    "do_not_save_samples", "do_not_save_grid", "eta", "denoising_strength", "s_min_uncond", "s_churn", "s_tmax",
    "s_tmin", "s_noise", "override_settings", "override_settings_restore_afterwards", "refiner_checkpoint",
    "refiner_switch_at", "disable_extra_networks", "enable_hr", "firstphase_width", "firstphase_height", "hr_scale",
    "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name",
    "hr_scheduler", "hr_prompt", "hr_negative_prompt", "force_task_id",
)


def build_processing(runtime: Any, params: Txt2ImgParams, state: JobState, *, is_api: bool = False
                     ) -> StableDiffusionProcessingTxt2Img:
    """Turn request params into A1111's processing object, bound to the loaded model and this job."""
    model = runtime.models.current
    if model is None:
        raise WebUIError(runtime.model_status or "No checkpoint is loaded; pick one in the checkpoint list.")
    try:
        sampler, scheduler = sd_samplers.split_sampler_and_scheduler(
            params.sampler_name or params.sampler_index, params.scheduler)
    except ValueError as e:
        raise ValidationError("sampler_name", str(e)) from None
    fields = {name: getattr(params, name) for name in _P_FIELDS}
    fields["comments"] = dict(params.comments or {})
    p = StableDiffusionProcessingTxt2Img(sampler_name=sampler, scheduler=scheduler, **fields)
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
    p.scripts = runtime.scripts_txt2img
    p.outpath_samples = str(runtime.output_dir("outdir_txt2img_samples", "outdir_samples"))
    p.outpath_grids = str(runtime.output_dir("outdir_txt2img_grids", "outdir_grids"))
    if is_api and not params.save_images:
        p.do_not_save_samples = p.do_not_save_grid = True
    return p


def run(runtime: Any, params: Txt2ImgParams, state: JobState, *, is_api: bool = False) -> Processed:
    overrides = params.override_settings or {}
    # A per-request checkpoint applies to this job only (unless the request asks to keep its overrides).
    with runtime.checkpoint_for_job(overrides.get("sd_model_checkpoint"),
                                    params.override_settings_restore_afterwards is not False):
        return process_images(build_processing(runtime, params, state, is_api=is_api))
