"""Request types shared by the UI and the API, with A1111's API field names and defaults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Txt2ImgParams(BaseModel):
    """The txt2img request (A1111's StableDiffusionTxt2ImgProcessingAPI): every field optional.

    Ranges are checked again by processing.validate, which also serves Python callers and scripts.
    """

    model_config = ConfigDict(extra="forbid")

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
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
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
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None
