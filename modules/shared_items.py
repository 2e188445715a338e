"""A1111's `modules.shared_items`: the choice lists the settings dropdowns use."""

from __future__ import annotations

from typing import Any


def _runtime() -> Any:
    from modules import shared

    return shared._need_runtime("shared_items")


def sd_vae_items() -> list[str]:
    return list(_runtime().vaes.choices())


def refresh_vae_list() -> None:
    _runtime().vaes.refresh()


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules import sd_models

    return sd_models.checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    _runtime().refresh_checkpoints()


def sd_unet_items() -> list[str]:
    return ["Automatic", "None"]


def list_samplers() -> list[Any]:
    from modules.compat_surface import all_samplers

    return all_samplers
