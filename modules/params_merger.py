"""The Checkpoint Merger request (A1111's `run_modelmerger` argument names), shared by the tab and the API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

INTERP_METHODS = ("No interpolation", "Weighted sum", "Add difference")
CHECKPOINT_FORMATS = ("safetensors", "ckpt")
# A1111's "Copy config from" radio is type="index": 0..3 in this order.
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")
NO_VAE = "None"


class MergeParams(BaseModel):
    """One merge. Field names and defaults are A1111's `run_modelmerger` arguments; `block_weights` and
    `overwrite` are ours."""

    model_config = ConfigDict(extra="forbid")

    primary_model_name: str = Field("", max_length=1000)
    secondary_model_name: str | None = Field(None, max_length=1000)
    tertiary_model_name: str | None = Field(None, max_length=1000)
    interp_method: Literal["No interpolation", "Weighted sum", "Add difference"] = "Weighted sum"
    # Not clamped to 0..1 (the slider's range): extrapolation (M > 1 or < 0) is a known community technique.
    multiplier: float = Field(0.3, ge=-10, le=10, allow_inf_nan=False)
    save_as_half: bool = False
    custom_name: str = Field("", max_length=200)
    checkpoint_format: Literal["safetensors", "ckpt"] = "safetensors"
    config_source: int = Field(0, ge=0, le=3)
    bake_in_vae: str = Field(NO_VAE, max_length=1000)
    discard_weights: str = Field("", max_length=10_000)
    save_metadata: bool = True
    add_merge_recipe: bool = True
    copy_metadata_fields: bool = True
    metadata_json: str = Field("{}", max_length=1_000_000)
    # Beyond A1111: per-block multipliers for the UNet (a preset name or comma-separated numbers, see
    # modules/merge_blocks.py), and permission to replace an existing file of the same name.
    block_weights: str | list[float] | None = None
    overwrite: bool = False

    @field_validator("config_source", mode="before")
    @classmethod
    def _config_label(cls, value: Any) -> Any:
        """Accept the radio's labels as well as A1111's index."""
        if isinstance(value, str) and value in CONFIG_SOURCES:
            return CONFIG_SOURCES.index(value)
        return value

    @field_validator("secondary_model_name", "tertiary_model_name", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", "None") else value

    @field_validator("bake_in_vae", mode="before")
    @classmethod
    def _no_vae(cls, value: Any) -> Any:
        return NO_VAE if value in (None, "") else value
