"""A1111's `modules.patches`: the helper extensions use to replace a webui attribute and undo it later.

Our own code never patches anything; this only keeps extensions that do (2 of 30 surveyed) working, and lets
them undo cleanly on `on_script_unloaded`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

originals: defaultdict[str, dict[tuple[Any, str], Any]] = defaultdict(dict)


def patch(key: str, obj: Any, field: str, replacement: Any) -> Any:
    """Set `obj.field = replacement`, remembering the original under `key`; RuntimeError if already patched."""
    patch_key = (obj, field)
    if patch_key in originals[key]:
        raise RuntimeError(f"patch for {field} is already applied")
    original = getattr(obj, field)
    originals[key][patch_key] = original
    setattr(obj, field, replacement)
    return original


def undo(key: str, obj: Any, field: str) -> None:
    patch_key = (obj, field)
    if patch_key not in originals[key]:
        raise RuntimeError(f"there is no patch for {field} to undo")
    setattr(obj, field, originals[key].pop(patch_key))


def original(key: str, obj: Any, field: str) -> Any:
    return originals[key].get((obj, field), None)
