"""A1111's `modules.cache`: named sections of the data folder's cache.json that extensions keep values in.

The running app's HashCache owns that file (the `hashes` sections); the sections asked for here live in the
same in-memory dict and are written by it, so neither writer drops the other's sections.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modules.hashes import HashCache

_own: HashCache | None = None


def _store() -> HashCache:
    """The runtime's hash cache; before start-up (or without one) a HashCache over SD_WEBUI_CACHE_FILE or
    <data dir>/cache.json, as A1111."""
    global _own
    from modules import shared

    rt = shared._runtime
    if rt is not None and getattr(rt, "hash_cache", None) is not None and not os.environ.get("SD_WEBUI_CACHE_FILE"):
        return rt.hash_cache
    from modules import paths_internal

    path = Path(os.environ.get("SD_WEBUI_CACHE_FILE") or Path(paths_internal.data_path) / "cache.json")
    if _own is None or _own.path != path:
        _own = HashCache(path)
    return _own


def dump_cache() -> None:
    """Write cache.json now (atomically)."""
    store = _store()
    with store._lock:
        store._load()
        store._save()


def cache(subsection: str) -> dict[str, Any]:
    """The dict for `subsection` (created empty); changes persist at the next dump_cache()."""
    store = _store()
    with store._lock:
        return store._load().setdefault(subsection, {})


def cached_data_for_file(subsection: str, title: str, filename: str, func: Callable[[], Any]) -> Any:
    """`func()`'s value for a file, kept until the file's mtime moves past the stored one (A1111's rule)."""
    existing = cache(subsection)
    mtime = os.path.getmtime(filename)
    entry = existing.get(title)
    if entry and entry.get("mtime", 0) >= mtime and "value" in entry:
        return entry["value"]
    value = func()
    if value is None:
        return None
    existing[title] = {"mtime": mtime, "value": value}
    dump_cache()
    return value
