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
