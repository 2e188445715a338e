"""L3 processing (A1111's `modules.processing`): the processing kinds, validation and process_images.

Each kind (txt2img, img2img) is a StableDiffusionProcessing with A1111's fields and two methods of its own,
`init()` (once per job: hires target size, init-image latents and masks) and `sample()` (per batch); the loop that
calls them is `process_loop.run`, the same for every kind.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from modules import hires, image_conditioning, img2img_prepare, process_loop, refiner, sampling_run, sd_samplers
from modules.compat_surface import create_binary_mask, create_random_tensors, get_fixed_seed
from modules.errors import ValidationError
from modules.processed import VERSION, Processed, create_infotext, fix_seed
from modules.state import JobState

__all__ = ["VERSION", "Processed", "StableDiffusionProcessing", "StableDiffusionProcessingImg2Img",
           "StableDiffusionProcessingTxt2Img", "create_binary_mask", "create_infotext", "create_random_tensors",
           "fix_seed", "get_fixed_seed", "process_images", "validate"]
log = logging.getLogger(__name__)
opt_C = 4  # A1111's latent channels and
opt_f = 8  # image pixels per latent pixel, which extensions read


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

    # --- what each kind defines (A1111's init/sample), with the defaults the loop relies on -------------------
    def init(self, all_prompts: list[str], all_seeds: list[int], all_subseeds: list[int]) -> None:
        """Once per job, after prompts and seeds are set up and before the first batch."""

    def sample(self, conditioning: Any, unconditional_conditioning: Any, seeds: list[int], subseeds: list[int],
               subseed_strength: float, prompts: list[str]) -> torch.Tensor:
        """The final latents of one batch."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample()")

    def passes_per_batch(self) -> int:
        """Progress: how many sampling passes each batch takes (hires fix makes two)."""
        return 1

    def finish_image(self, index: int, image: Image.Image) -> Image.Image:
        """A decoded image of this batch made final (img2img pastes the inpainted region onto the original)."""
        return image

    def extra_result_images(self, index: int, image: Image.Image) -> list[Image.Image]:
        """Images shown beside the result but not saved or put in the grid (img2img's mask previews)."""
        return []

    def validate_kind(self) -> None:
        """Checks of the kind's own fields, before any work."""


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

    def validate_kind(self) -> None:
        if self.enable_hr:
            hires.validate_hires(self)

    def init(self, all_prompts: list[str], all_seeds: list[int], all_subseeds: list[int]) -> None:
        hires.prepare(self)

    def passes_per_batch(self) -> int:
        return 2 if self.enable_hr else 1

    def sample(self, conditioning: Any, unconditional_conditioning: Any, seeds: list[int], subseeds: list[int],
               subseed_strength: float, prompts: list[str]) -> torch.Tensor:
        samples = sampling_run.sample_txt2img(self, conditioning, unconditional_conditioning, seeds, subseeds)
        if self.enable_hr and not self.state.skipped:
            samples = hires.hires_pass(self, samples, seeds, subseeds)
        return samples


def validate(p: StableDiffusionProcessing) -> None:
    """Reject out-of-range requests before any work starts; the message names the field."""
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
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) != p.n_iter * p.batch_size:
            raise ValidationError(name, f"a list needs one seed per image ({p.n_iter * p.batch_size}), "
                                        f"got {len(value)}")
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or not -1 <= v <= 4294967295:
                raise ValidationError(name, f"must be -1 (random) or a whole number up to 4294967295, got {v!r}")
    try:
        sd_samplers.split_sampler_and_scheduler(p.sampler_name, p.scheduler)
    except ValueError as e:
        raise ValidationError("sampler_name", str(e)) from None
    p.validate_kind()
    refiner.validate_refiner(p)


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run a generation with its per-job setting overrides active (never mutating global settings)."""
    if p.opts is not None and p.override_settings:
        with p.opts.override(p.override_settings):
            return _process_images_inner(p)
    return _process_images_inner(p)


def _process_images_inner(p: StableDiffusionProcessing) -> Processed:
    validate(p)
    if p.sd_model is None:
        raise ValidationError("sd_model_checkpoint", "no checkpoint is loaded; pick one in the checkpoint list")
    return process_loop.run(p)


process_images_inner = _process_images_inner  # A1111's name (settings overrides must already be active)


@dataclass(eq=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """img2img and inpainting: init images (and a mask) encoded once, then denoised part of the way per batch."""

    init_images: list[Any] = field(default_factory=list)
    resize_mode: int = 0
    denoising_strength: float | None = 0.75
    image_cfg_scale: float | None = None
    mask: Any = None  # the mask image (A1111 keeps the name; after init the latent mask lives in `latent_blend`)
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = True  # "Only masked"
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: Any = None
    force_task_id: str | None = None
    mask_grow: int = 0  # pixels: grow (> 0) or shrink (< 0) the mask before blurring
    soft_inpainting: bool = False  # the blurred mask as a per-pixel denoising strength (differential diffusion)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_blur is not None:  # A1111: one value sets both axes
            self.mask_blur_x = self.mask_blur_y = int(self.mask_blur)
        self.image_mask = self.mask
        self.init_latent: torch.Tensor | None = None
        self.source_images: torch.Tensor | None = None  # [B, 3, H, W] 0..1, what the conditioning is made from
        self.pixel_mask: torch.Tensor | None = None  # [B, 1, H, W], 1 where the model paints
        self.latent_blend: Any = None
        self.overlay_images: list[Image.Image] | None = None
        self.mask_for_overlay: Image.Image | None = None
        self.paste_to: tuple[int, int, int, int] | None = None
        self.color_corrections: list[Any] = []  # LAB of each init image when img2img_color_correction is on

    def validate_kind(self) -> None:
        img2img_prepare.validate(self)

    def init(self, all_prompts: list[str], all_seeds: list[int], all_subseeds: list[int]) -> None:
        img2img_prepare.init(self, all_seeds)

    def image_conditioning_for(self, model: Any, batch: int, width: int, height: int) -> torch.Tensor | None:
        source = self.source_images
        if source is None:
            return image_conditioning.for_txt2img(model, batch, width, height)
        return image_conditioning.for_img2img(model, source[:batch], self.pixel_mask if self.pixel_mask is None
                                              else self.pixel_mask[:batch], self.opt("inpainting_mask_weight", 1.0))

    def sample(self, conditioning: Any, unconditional_conditioning: Any, seeds: list[int], subseeds: list[int],
               subseed_strength: float, prompts: list[str]) -> torch.Tensor:
        assert self.init_latent is not None
        x = self.init_latent[: len(seeds)]
        multiplier = self.initial_noise_multiplier
        if multiplier is None:
            multiplier = self.opt("initial_noise_multiplier", 1.0)
        if multiplier != 1.0:
            self.extra_generation_params["Noise multiplier"] = multiplier
        samples = sampling_run.sample_img2img(
            self, x, conditioning, unconditional_conditioning, seeds, subseeds, steps=self.steps,
            sampler_name=self.sampler_name, scheduler=self.scheduler, width=self.width, height=self.height,
            conds_for=lambda model: sampling_run.first_pass_conds(self, model), requested_steps=False,
            noise_multiplier=multiplier)
        blend = self.latent_blend
        if blend is not None and not blend.soft:  # the kept region exactly as encoded, whatever the last step did
            samples = samples * blend.nmask.to(samples) + x.to(samples) * blend.mask.to(samples)
        return samples

    def finish_image(self, index: int, image: Image.Image) -> Image.Image:
        return img2img_prepare.apply_overlay(self, index, image)

    def extra_result_images(self, index: int, image: Image.Image) -> list[Image.Image]:
        return img2img_prepare.mask_previews(self, index, image)
