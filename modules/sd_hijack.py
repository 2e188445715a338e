"""A1111's `modules.sd_hijack` does not exist here: importing works, using it raises a clear error."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.shared import ldm_only_error

    raise ldm_only_error(f"modules.sd_hijack.{name}")
