"""Request types of the Extras tab and API, with A1111's field names (ExtrasSingleImageRequest,
ExtrasBatchImagesRequest), and the internal job description both front doors hand to `extras.run_extras`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ExtrasOptions(BaseModel):
    """The operations of one Extras run (A1111's ExtrasBaseRequest)."""

    model_config = ConfigDict(extra="forbid")

    resize_mode: Literal[0, 1] = Field(0, description="0 = scale by upscaling_resize, 1 = scale to width/height")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    codeformer_visibility: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    codeformer_weight: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    upscaling_resize: float = Field(2.0, ge=1, le=8, allow_inf_nan=False)
    upscaling_resize_w: int = Field(512, ge=1, le=16384)
    upscaling_resize_h: int = Field(512, ge=1, le=16384)
    upscaling_crop: bool = True
    upscaler_1: str = Field("None", max_length=500)
    upscaler_2: str = Field("None", max_length=500)
    extras_upscaler_2_visibility: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    upscale_first: bool = Field(False, description="accepted for A1111 clients; the operation order decides")


class ExtrasParams(ExtrasOptions):
    """POST /sdapi/v1/extra-single-image: the options plus `image` (base64)."""

    image: str = Field("", description="base64 image (raw or data URI)")


class FileData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(..., description="base64 image")
    name: str = Field("", max_length=1000, description="file name")


class ExtrasBatchParams(ExtrasOptions):
    """POST /sdapi/v1/extra-batch-images: the options plus `imageList`."""

    imageList: list[FileData] = Field(default_factory=list, max_length=1000)  # noqa: N815 - A1111's field name


EXTRAS_SINGLE, EXTRAS_BATCH, EXTRAS_DIRECTORY = 0, 1, 2


@dataclass
class ExtrasJob:
    """What `run_extras` does: the mode (A1111's extras_mode), the images or folders, the operations."""

    options: ExtrasOptions
    extras_mode: int = EXTRAS_SINGLE
    images: list[tuple[Any, str | None]] = field(default_factory=list)  # (PIL image, original file name)
    input_dir: str = ""
    output_dir: str = ""
    save_output: bool = True
    max_side_length: int = 0
    scripts_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Arguments of further operations by script name (training operations, extensions), as the tab sends."""

    def operation_args(self) -> dict[str, dict[str, Any]]:
        """A1111's mapping of the request fields to the Upscale, GFPGAN and CodeFormer operations."""
        o = self.options
        args: dict[str, dict[str, Any]] = {
            "Upscale": {
                "upscale_enabled": True, "upscale_mode": o.resize_mode, "upscale_by": o.upscaling_resize,
                "max_side_length": self.max_side_length, "upscale_to_width": o.upscaling_resize_w,
                "upscale_to_height": o.upscaling_resize_h, "upscale_crop": o.upscaling_crop,
                "upscaler_1_name": o.upscaler_1, "upscaler_2_name": o.upscaler_2,
                "upscaler_2_visibility": o.extras_upscaler_2_visibility,
            },
            "GFPGAN": {"enable": True, "gfpgan_visibility": o.gfpgan_visibility},
            "CodeFormer": {"enable": True, "codeformer_visibility": o.codeformer_visibility,
                           "codeformer_weight": o.codeformer_weight},
        }
        for name, values in self.scripts_args.items():
            args[name] = {**args.get(name, {}), **values}
        return args
