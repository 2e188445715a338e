"""A1111's processing layer: the StableDiffusionProcessing objects, process_images and Processed."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from modules import infotext as infotext_mod
from modules.errors import ValidationError
from modules.state import JobState

log = logging.getLogger(__name__)
VERSION = "v1.10.1-diffusers"  # reported in infotext `Version`; A1111 readers key their back-compat on it


def _randint() -> int:
    return int(random.randrange(4294967294))


@dataclass(eq=False)
class StableDiffusionProcessing:
    """Everything one generation needs, with A1111's field names (extensions read and write these)."""

    prompt: str | list[str] = ""
    negative_prompt: str | list[str] = ""
    styles: list[str] = field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict[str, Any] = field(default_factory=dict)
    overlay_images: Any = None
    eta: float | None = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float | None = None
    ddim_discretize: str | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] = field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    sampler_index: int | None = None
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] = field(default_factory=dict)
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    # Not A1111 constructor fields, but attributes A1111 sets and extensions read.
    sd_model: Any = None
    sd_model_name: str | None = None
    sd_model_hash: str | None = None
    sd_vae_name: str | None = None
    sd_vae_hash: str | None = None
    scripts: Any = None
    script_args: tuple = ()
    opts: Any = None  # the Options object (with this job's overrides active)
    state: JobState = field(default_factory=JobState)
    conditioner: Any = None
    hooks: Any = None
    is_api: bool = False
    user: str | None = None

    def __post_init__(self) -> None:
        self.all_prompts: list[str] = []
        self.all_negative_prompts: list[str] = []
        self.all_seeds: list[int] = []
        self.all_subseeds: list[int] = []
        self.iteration = 0
        self.batch_index = 0
        self.main_prompt: str | None = None
        self.main_negative_prompt: str | None = None
        self.prompts: list[str] = []
        self.negative_prompts: list[str] = []
        self.seeds: list[int] = []
        self.subseeds: list[int] = []
        self.extra_network_data: dict = {}
        self.cached_c: dict = {}
        self.cached_uc: dict = {}
        self.job_timestamp = time.strftime("%Y%m%d%H%M%S")
        self.is_hr_pass = False
        self.refiner_checkpoint_info: Any = None  # resolved from refiner_checkpoint by validation

    @property
    def sd_model_is_sdxl(self) -> bool:
        return bool(self.sd_model is not None and self.sd_model.is_sdxl)

    def opt(self, key: str, default: Any = None) -> Any:
        return default if self.opts is None else self.opts.get(key, default)


@dataclass(eq=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float | None = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        # Set by validation and hires.prepare; A1111's attribute names, which extensions read.
        self.hr_checkpoint_info: Any = None
        self.hr_size: Any = None
        self.hr_upscale_to_x = self.hr_upscale_to_y = 0
        self.truncate_x = self.truncate_y = 0
        self.latent_scale_mode: tuple[str, bool] | None = None
        self.all_hr_prompts: list[str] = []
        self.all_hr_negative_prompts: list[str] = []
        self.hr_prompts: list[str] = []
        self.hr_negative_prompts: list[str] = []
        self.hr_c: Any = None
        self.hr_uc: Any = None


class Processed:
    """The result of process_images, with A1111's fields and its `js()` JSON (the API's `info`)."""

    def __init__(self, p: StableDiffusionProcessing, images: list[Any], seed: int = -1, info: str = "",
                 subseed: int | None = None, infotexts: list[str] | None = None, comments: str = "",
                 index_of_first_image: int = 0) -> None:
        self.images = images
        self.prompt = p.prompt if isinstance(p.prompt, str) else (p.prompt[0] if p.prompt else "")
        self.negative_prompt = (p.negative_prompt if isinstance(p.negative_prompt, str)
                                else (p.negative_prompt[0] if p.negative_prompt else ""))
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = comments
        self.width, self.height = p.width, p.height
        self.sampler_name, self.scheduler = p.sampler_name, p.scheduler
        self.cfg_scale, self.steps, self.batch_size = p.cfg_scale, p.steps, p.batch_size
        self.restore_faces, self.styles = p.restore_faces, p.styles
        self.sd_model_name, self.sd_model_hash = p.sd_model_name, p.sd_model_hash
        self.sd_vae_name, self.sd_vae_hash = p.sd_vae_name, p.sd_vae_hash
        self.seed_resize_from_w, self.seed_resize_from_h = p.seed_resize_from_w, p.seed_resize_from_h
        self.denoising_strength = p.denoising_strength
        self.extra_generation_params = dict(p.extra_generation_params)
        self.index_of_first_image = index_of_first_image
        self.clip_skip = p.opt("CLIP_stop_at_last_layers", 1)
        self.eta = p.eta
        self.job_timestamp = p.job_timestamp
        self.all_prompts = list(p.all_prompts)
        self.all_negative_prompts = list(p.all_negative_prompts)
        self.all_seeds = list(p.all_seeds)
        self.all_subseeds = list(p.all_subseeds)
        self.infotexts = infotexts or [info]
        self.version = VERSION
        self.is_using_inpainting_conditioning = False
        self.saved_files: list[str] = []
        self.errors: list[str] = []

    def js(self) -> str:
        return json.dumps({
            "prompt": self.prompt, "all_prompts": self.all_prompts, "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts, "seed": self.seed, "all_seeds": self.all_seeds,
            "subseed": self.subseed, "all_subseeds": self.all_subseeds, "subseed_strength": self.subseed_strength,
            "width": self.width, "height": self.height, "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale, "steps": self.steps, "batch_size": self.batch_size,
            "restore_faces": self.restore_faces, "face_restoration_model": None,
            "sd_model_name": self.sd_model_name, "sd_model_hash": self.sd_model_hash,
            "sd_vae_name": self.sd_vae_name, "sd_vae_hash": self.sd_vae_hash,
            "seed_resize_from_w": self.seed_resize_from_w, "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength, "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts,
            "styles": self.styles, "job_timestamp": self.job_timestamp, "clip_skip": self.clip_skip,
            "is_using_inpainting_conditioning": self.is_using_inpainting_conditioning, "version": self.version,
            # Not in A1111's info: what went wrong without failing the job (a LoRA that does not fit, a file that
            # could not be saved), so API clients see what the UI log shows.
            "comments": self.comments, "errors": list(self.errors),
        }, default=lambda _o: None)  # as A1111: callables in extra_generation_params (hires prompts) become null


def fix_seed(p: StableDiffusionProcessing) -> None:
    """Replace -1 seeds with random ones (A1111's fix_seed)."""
    p.seed = _randint() if p.seed is None or int(p.seed) == -1 else int(p.seed)
    p.subseed = _randint() if p.subseed is None or int(p.subseed) == -1 else int(p.subseed)


def create_infotext(p: StableDiffusionProcessing, all_prompts: list[str], all_seeds: list[int],
                    all_subseeds: list[int], comments: Any = None, iteration: int = 0, position_in_batch: int = 0,
                    use_main_prompt: bool = False, index: int | None = None,
                    all_negative_prompts: list[str] | None = None) -> str:
    """A1111's infotext for one image, keys in A1111's emission order."""
    from modules import sd_samplers

    if index is None:
        index = position_in_batch + iteration * p.batch_size
    negs = all_negative_prompts if all_negative_prompts is not None else p.all_negative_prompts
    clip_skip = p.opt("CLIP_stop_at_last_layers", 1)
    cfg = sd_samplers.find_sampler_config(p.sampler_name)
    sched = sd_samplers.find_scheduler(p.scheduler)
    if sched.function is None and cfg.scheduler:  # Automatic resolved to the sampler's own schedule
        sched = sd_samplers.find_scheduler(cfg.scheduler)
    sched_label = sched.label
    uses_ensd = p.opt("eta_noise_seed_delta", 0) != 0 and cfg.uses_ensd
    # Named as in A1111: callables in extra_generation_params (e.g. Hires prompt) receive these locals.
    prompt_text = p.main_prompt if use_main_prompt else (all_prompts[index] if index < len(all_prompts) else "")
    negative_prompt = p.main_negative_prompt if use_main_prompt else (negs[index] if index < len(negs) else "")
    params: dict[str, Any] = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": sched_label,
        "CFG scale": p.cfg_scale,
        "Seed": all_seeds[index] if index < len(all_seeds) else p.seed,
        "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if p.opt("add_model_hash_to_info", True) else None,
        "Model": p.sd_model_name if p.opt("add_model_name_to_info", True) else None,
        "VAE hash": p.sd_vae_hash if p.opt("add_vae_hash_to_info", True) else None,
        "VAE": p.sd_vae_name if p.opt("add_vae_name_to_info", True) else None,
        "Variation seed": (None if p.subseed_strength == 0 else
                           (all_subseeds[index] if index < len(all_subseeds) else p.subseed)),
        "Variation seed strength": None if p.subseed_strength == 0 else p.subseed_strength,
        "Seed resize from": (None if p.seed_resize_from_w <= 0 or p.seed_resize_from_h <= 0
                             else f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"),
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        "Clip skip": None if clip_skip <= 1 else clip_skip,
        "ENSD": p.opt("eta_noise_seed_delta", 0) if uses_ensd else None,
        "RNG": p.opt("randn_source", "GPU") if p.opt("randn_source", "GPU") != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
    }
    for key, value in p.extra_generation_params.items():
        if key == "Denoising strength":
            continue
        params[key] = value(**locals()) if callable(value) else value
    if p.opt("add_version_to_infotext", True):
        params["Version"] = VERSION
    return infotext_mod.create_infotext(prompt_text, negative_prompt, params)


def validate(p: StableDiffusionProcessing) -> None:
    """Reject out-of-range requests before any work starts; the message names the field."""
    import math

    from modules import sd_samplers

    for name, lo, hi in (("width", 64, 2048), ("height", 64, 2048)):
        value = getattr(p, name)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValidationError(name, f"must be a whole number from {lo} to {hi}, got {value!r}")
        if value % 8:
            raise ValidationError(name, f"must be a multiple of 8, got {value}")
    if not isinstance(p.steps, int) or not 1 <= p.steps <= 150:
        raise ValidationError("steps", f"must be from 1 to 150, got {p.steps!r}")
    if not isinstance(p.cfg_scale, (int, float)) or not math.isfinite(p.cfg_scale) or not 0 <= p.cfg_scale <= 30:
        raise ValidationError("cfg_scale", f"must be a number from 0 to 30, got {p.cfg_scale!r}")
    if not isinstance(p.batch_size, int) or not 1 <= p.batch_size <= 8:
        raise ValidationError("batch_size", f"must be from 1 to 8, got {p.batch_size!r}")
    if not isinstance(p.n_iter, int) or not 1 <= p.n_iter <= 100:
        raise ValidationError("n_iter", f"batch count must be from 1 to 100, got {p.n_iter!r}")
    if not isinstance(p.subseed_strength, (int, float)) or not 0 <= p.subseed_strength <= 1:
        raise ValidationError("subseed_strength", f"must be from 0 to 1, got {p.subseed_strength!r}")
    for name in ("seed", "subseed"):
        value = getattr(p, name)
        if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= 4294967295:
            raise ValidationError(name, f"must be -1 (random) or a whole number up to 4294967295, got {value!r}")
    try:
        sd_samplers.split_sampler_and_scheduler(p.sampler_name, p.scheduler)
    except ValueError as e:
        raise ValidationError("sampler_name", str(e)) from None
    validate_hires_and_refiner(p)


def validate_hires_and_refiner(p: StableDiffusionProcessing) -> None:
    """The hr_* fields (when hires fix is on) and the refiner checkpoint, resolved against the checkpoint list."""
    from modules import hires, refiner

    if getattr(p, "enable_hr", False):
        hires.validate_hires(p)
    refiner.validate_refiner(p)


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run a generation with its per-job setting overrides active (never mutating global settings)."""
    if p.opts is not None and p.override_settings:
        with p.opts.override(p.override_settings):
            return _process_images_inner(p)
    return _process_images_inner(p)


def _process_images_inner(p: StableDiffusionProcessing) -> Processed:
    from modules.generation import run_generation

    validate(p)
    if p.sd_model is None:
        raise ValidationError("sd_model_checkpoint", "no checkpoint is loaded; pick one in the checkpoint list")
    return run_generation(p)
