"""L1 request types shared by the UI and the API, with A1111's API field names and defaults.

`GenerationParams` holds what every generation kind takes; `Txt2ImgParams` and `Img2ImgParams` add their own
fields (A1111's StableDiffusionTxt2ImgProcessingAPI / StableDiffusionImg2ImgProcessingAPI). Ranges are checked
again by processing.validate, which also serves Python callers and scripts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

# Request fields that are not processing-object fields: how the job runs and what it returns.
JOB_FIELDS = frozenset({
    "sampler_index", "script_name", "script_args", "send_images", "save_images", "alwayson_scripts", "infotext",
    "firstpass_image", "include_init_images", "comments", "sampler_name", "scheduler",
})


class GenerationParams(BaseModel):
    """The fields every generation kind takes: prompt, seeds, sampler, size, batch, CFG, overrides, scripts."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str] = ""

    prompt: str = Field("", max_length=100_000)
    negative_prompt: str = Field("", max_length=100_000)
    styles: list[str] = Field(default_factory=list)
    seed: int = Field(-1, ge=-1, le=4294967295)
    subseed: int = Field(-1, ge=-1, le=4294967295)
    subseed_strength: float = Field(0.0, ge=0, le=1)
    seed_resize_from_h: int = Field(-1, ge=-1, le=2048)
    seed_resize_from_w: int = Field(-1, ge=-1, le=2048)
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=100)
    steps: int = Field(50, ge=1, le=150)
    cfg_scale: float = Field(7.0, ge=0, le=30, allow_inf_nan=False)
    width: int = Field(512, ge=64, le=2048, multiple_of=8)
    height: int = Field(512, ge=64, le=2048, multiple_of=8)
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    denoising_strength: float | None = Field(0.75, ge=0, le=1, allow_inf_nan=False)
    s_min_uncond: float | None = Field(None, allow_inf_nan=False)
    s_churn: float | None = Field(None, ge=0, allow_inf_nan=False)
    s_tmax: float | None = Field(None, ge=0)
    s_tmin: float | None = Field(None, ge=0, allow_inf_nan=False)
    s_noise: float | None = Field(None, ge=0, allow_inf_nan=False)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = Field(None, ge=0, le=1)
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None

    def processing_fields(self, allowed: frozenset[str] | set[str]) -> dict[str, Any]:
        """This request's values for the processing object's fields (`allowed`), job-only fields left out."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if name in allowed and name not in JOB_FIELDS}


class Txt2ImgParams(GenerationParams):
    """The txt2img request (A1111's StableDiffusionTxt2ImgProcessingAPI): every field optional."""

    kind: ClassVar[str] = "txt2img"

    firstpass_image: str | None = None
    enable_hr: bool = False
    firstphase_width: int = Field(0, ge=0, le=2048)
    firstphase_height: int = Field(0, ge=0, le=2048)
    hr_scale: float = Field(2.0, ge=1, le=4, allow_inf_nan=False)
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = Field(0, ge=0, le=150)
    hr_resize_x: int = Field(0, ge=0, le=4096)
    hr_resize_y: int = Field(0, ge=0, le=4096)
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = Field("", max_length=100_000)
    hr_negative_prompt: str = Field("", max_length=100_000)


class Img2ImgParams(GenerationParams):
    """The img2img request (A1111's StableDiffusionImg2ImgProcessingAPI). Images are base64 strings over the API
    and PIL images from the UI; the API layer decodes them before the job runs."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    kind: ClassVar[str] = "img2img"

    init_images: list[Any] = Field(default_factory=list)
    resize_mode: int = Field(0, ge=0, le=3)
    image_cfg_scale: float | None = Field(None, ge=0, le=30, allow_inf_nan=False)
    mask: Any = None
    mask_blur_x: int = Field(4, ge=0, le=256)
    mask_blur_y: int = Field(4, ge=0, le=256)
    mask_blur: int | None = Field(None, ge=0, le=256)
    mask_round: bool = True
    inpainting_fill: int = Field(0, ge=0, le=3)
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = Field(0, ge=0, le=256)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    initial_noise_multiplier: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    latent_mask: Any = None
    include_init_images: bool = False
    # Not in A1111: grow/shrink the mask in pixels, and soft inpainting as a per-pixel denoising strength.
    mask_grow: int = Field(0, ge=-256, le=256)
    soft_inpainting: bool = False
