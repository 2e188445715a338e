"""The checkpoint list: recursive scan of the checkpoint folders, A1111 titles, hashes and look-ups."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modules.errors import ModelNotFoundError
from modules.hashes import HashCache, legacy_model_hash

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt")
# Same-name VAE files kept beside checkpoints (A1111 convention) are not checkpoints.
_VAE_SUFFIXES = (".vae.safetensors", ".vae.ckpt", ".vae.pt")
_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "diffusion_pytorch_model.fp16.safetensors")


def is_diffusers_model_dir(path: Path) -> bool:
    """A diffusers pipeline folder: model_index.json plus UNet weights."""
    return (path / "model_index.json").is_file() and any((path / "unet" / n).is_file() for n in _WEIGHT_NAMES)


def is_config_dir(path: Path) -> bool:
    """A config-only diffusers folder (no weights): overrides the architecture of a same-name checkpoint."""
    return (path / "model_index.json").is_file() and not is_diffusers_model_dir(path)


@dataclass
class CheckpointInfo:
    """One checkpoint, with the names A1111 shows and matches (`title`, `model_name`, hashes)."""

    filename: str
    name: str  # path relative to its checkpoint folder, '/'-separated, with extension
    is_folder: bool = False
    sha256: str | None = None
    hash: str | None = None  # legacy 8-hex hash (look-up alias only)
    ids: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.filename)

    @property
    def name_for_extra(self) -> str:
        return Path(self.name).stem if not self.is_folder else Path(self.name).name

    @property
    def model_name(self) -> str:
        """A1111's model_name: relative path without extension, separators replaced by '_'."""
        stem = self.name if self.is_folder else os.path.splitext(self.name)[0]
        return stem.replace("/", "_").replace("\\", "_")

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.shorthash else self.name

    @property
    def short_title(self) -> str:
        return f"{self.name_for_extra} [{self.shorthash}]" if self.shorthash else self.name_for_extra

    def config_override(self) -> Path | None:
        """A same-name `.yaml` or config folder beside the checkpoint (A1111 convention), if any."""
        if self.is_folder:
            return None
        base = Path(os.path.splitext(self.filename)[0])
        yaml = base.with_suffix(".yaml")
        if yaml.is_file():
            return yaml
        return base if is_config_dir(base) else None

    def aliases(self) -> list[str]:
        names = [self.title, self.name, self.model_name, self.name_for_extra, self.short_title, self.filename,
                 *self.ids]
        if self.hash:
            names += [self.hash, f"{self.name} [{self.hash}]"]
        if self.sha256:
            names += [self.sha256, self.shorthash or "", f"{self.name_for_extra} [{self.shorthash}]"]
        return [n for n in names if n]


def _walk(root: Path, include_hidden: bool) -> Iterable[CheckpointInfo]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            sub = here / d
            if not include_hidden and d.startswith("."):
                continue
            if is_diffusers_model_dir(sub):
                yield CheckpointInfo(filename=str(sub), name=sub.relative_to(root).as_posix(), is_folder=True)
                continue  # do not descend into a model folder
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            low = f.lower()
            if not low.endswith(CHECKPOINT_EXTENSIONS) or low.endswith(_VAE_SUFFIXES):
                continue
            if not include_hidden and f.startswith("."):
                continue
            path = here / f
            # A folder named like a checkpoint (".safetensors" directory) is skipped by os.walk's file list.
            yield CheckpointInfo(filename=str(path), name=path.relative_to(root).as_posix())


class ModelRegistry:
    """Scans checkpoint folders; refresh() picks up new, removed and renamed files."""

    def __init__(self, folders: Iterable[Path], hash_cache: HashCache | None = None, *,
                 no_hashing: bool = False, include_hidden: bool = True, extra_files: Iterable[Path] = ()) -> None:
        self.folders = [Path(f) for f in folders]
        self.extra_files = [Path(f) for f in extra_files]
        self.hash_cache = hash_cache
        self.no_hashing = no_hashing
        self.include_hidden = include_hidden
        self._lock = threading.Lock()
        self.checkpoints: dict[str, CheckpointInfo] = {}  # by filename
        self._aliases: dict[str, CheckpointInfo] = {}

    def refresh(self) -> list[CheckpointInfo]:
        """Rescan the folders; hashes already known for unchanged files are kept."""
        found: dict[str, CheckpointInfo] = {}
        for folder in self.folders:
            for info in _walk(folder, self.include_hidden):
                found.setdefault(info.filename, info)
        for extra in self.extra_files:
            if extra.is_file() and str(extra.resolve()) not in found:
                found[str(extra.resolve())] = CheckpointInfo(filename=str(extra.resolve()), name=extra.name)
        for info in found.values():
            if not info.is_folder:
                info.hash = legacy_model_hash(info.filename)
                if self.hash_cache is not None:
                    info.sha256 = self.hash_cache.cached("hashes", f"checkpoint/{info.name}", info.filename)
        with self._lock:
            self.checkpoints = found
            self._rebuild_aliases()
        return self.list()

    def _rebuild_aliases(self) -> None:
        aliases: dict[str, CheckpointInfo] = {}
        for info in self.checkpoints.values():
            for alias in info.aliases():
                aliases.setdefault(alias, info)
        self._aliases = aliases

    def list(self) -> list[CheckpointInfo]:
        return sorted(self.checkpoints.values(), key=lambda c: c.name.lower())

    def titles(self) -> list[str]:
        return [c.title for c in self.list()]

    def calculate_shorthash(self, info: CheckpointInfo) -> str | None:
        """Compute (or read from cache) the full sha256 of a checkpoint file; lazily, on first load."""
        if info.sha256 or self.no_hashing or info.is_folder or self.hash_cache is None:
            return info.shorthash
        info.sha256 = self.hash_cache.sha256(info.filename, f"checkpoint/{info.name}")
        with self._lock:
            self._rebuild_aliases()
        return info.shorthash

    def get(self, name: str) -> CheckpointInfo | None:
        """Exact look-up by any A1111 alias (title, name, model_name, stem, hashes)."""
        with self._lock:
            found = self._aliases.get(name)
            if found is None and name.endswith("]") and " [" in name:
                found = self._aliases.get(name.rsplit(" [", 1)[0])  # title with a stale or absent hash
            return found

    def closest(self, name: str) -> CheckpointInfo | None:
        """A1111's get_closet_checkpoint_match: exact alias, else the shortest title containing the text."""
        found = self.get(name)
        if found is not None:
            return found
        matches = sorted((c for c in self.checkpoints.values() if name and name in c.title),
                         key=lambda c: len(c.title))
        return matches[0] if matches else None

    def require(self, name: str) -> CheckpointInfo:
        """Look up a checkpoint; on a miss rescan once, since the file may have been added since."""
        found = self.closest(name)
        if found is None:
            self.refresh()
            found = self.closest(name)
        if found is None:
            available = ", ".join(self.titles()) or "none"
            raise ModelNotFoundError(f"Checkpoint {name!r} not found. Available: {available}")
        return found
