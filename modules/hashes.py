"""A1111's file hashes (sha256 short hash, legacy 8-hex hash, LoRA addnet hash) with an on-disk cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_BLOCK = 1024 * 1024


def sha256_file(path: Path | str) -> str:
    """Full-file SHA-256, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_BLOCK):
            h.update(chunk)
    return h.hexdigest()


def legacy_model_hash(path: Path | str) -> str:
    """A1111's old 8-hex `model hash`: SHA-256 of 64 KiB at offset 1 MiB; 'NOFILE' if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0x100000)
            return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]
    except OSError:
        return "NOFILE"


def addnet_hash_safetensors(path: Path | str) -> str:
    """kohya's 'addnet' hash: SHA-256 of a .safetensors file after its 8-byte length + JSON header."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        header = f.read(8)
        if len(header) < 8:
            raise ValueError(f"{path} is too short to be a .safetensors file")
        (n,) = struct.unpack("<Q", header)
        f.seek(8 + n)
        while chunk := f.read(_BLOCK):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """A1111's cache.json layout ({section: {title: {"mtime", "sha256"}}}), written atomically.

    A cached hash is trusted only while the file's mtime equals the stored one (A1111 1.10 accepted
    any older mtime, which could report a stale hash after a file was replaced by an older copy).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = data if isinstance(data, dict) else {}
            except FileNotFoundError:
                self._data = {}
            except (ValueError, OSError) as e:
                log.warning("Hash cache %s is unreadable (%s); starting a new one.", self.path, e)
                self._data = {}
        return self._data

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cache.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._data, f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def cached(self, section: str, title: str, path: Path | str) -> str | None:
        """The cached sha256 if still valid for the file as it is now, else None."""
        with self._lock:
            entry = self._load().get(section, {}).get(title)
        if not entry:
            return None
        try:
            mtime = os.path.getmtime(path)
        except OSError:
            return None
        return entry.get("sha256") if entry.get("mtime") == mtime else None

    def sha256(self, path: Path | str, title: str, section: str = "hashes", *, use_addnet: bool = False) -> str:
        """Return the file's sha256 (or addnet hash), computing and caching it when needed."""
        found = self.cached(section, title, path)
        if found:
            return found
        mtime = os.path.getmtime(path)
        value = addnet_hash_safetensors(path) if use_addnet else sha256_file(path)
        with self._lock:
            self._load().setdefault(section, {})[title] = {"mtime": mtime, "sha256": value}
            self._save()
        return value


# --- A1111's module-level names (`modules.hashes.sha256`, `sha256_from_cache`, `calculate_sha256`) --------------
# They use the running app's cache (bound by modules.shared.bind), or one over <install>/cache.json before that.

_bound_cache: HashCache | None = None


def bind_cache(cache: HashCache | None) -> None:
    global _bound_cache
    _bound_cache = cache


def _cache() -> HashCache:
    global _bound_cache
    if _bound_cache is None:
        _bound_cache = HashCache(Path(os.environ.get("SD_WEBUI_CACHE_FILE")
                                      or Path(__file__).resolve().parent.parent / "cache.json"))
    return _bound_cache


def calculate_sha256(filename: Path | str) -> str:
    return sha256_file(filename)


def sha256_from_cache(filename: Path | str, title: str, use_addnet_hash: bool = False) -> str | None:
    """The cached hash while the file is unchanged, else None (nothing is computed)."""
    return _cache().cached("hashes-addnet" if use_addnet_hash else "hashes", title, filename)


def sha256(filename: Path | str, title: str, use_addnet_hash: bool = False) -> str | None:
    """The file's sha256 (or kohya's addnet hash), from the cache or computed and cached; None if missing."""
    if not os.path.isfile(filename):
        return None
    return _cache().sha256(filename, title, "hashes-addnet" if use_addnet_hash else "hashes",
                           use_addnet=use_addnet_hash)
