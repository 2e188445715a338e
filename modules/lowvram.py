"""A1111's `modules.lowvram`: extensions ask it to free VRAM; models here move as a whole, so it has little to do."""

from __future__ import annotations

from typing import Any

module_in_gpu: Any = None


def send_everything_to_cpu() -> None:
    """A1111 moves the low-VRAM model parts to the CPU; nothing is split here, so only cached memory is freed."""
    from modules.devices import torch_gc

    torch_gc()


def is_enabled(sd_model: Any = None) -> bool:
    return False


def is_needed(sd_model: Any = None) -> bool:
    return False


def apply(sd_model: Any) -> None: ...


def setup_for_low_vram(sd_model: Any, use_medvram: bool) -> None: ...
