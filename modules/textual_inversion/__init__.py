"""Textual-inversion embeddings: reading A1111/diffusers/SDXL files safely, and finding their names in token ids."""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.errors import ModelLoadError, UnsafeFileError, WebUIError

log = logging.getLogger(__name__)

EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors")
# Image files in the folder are previews (or A1111 image-embedded embeddings, which we do not read yet).
_IGNORED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".jxl", ".avif", ".gif", ".txt", ".json", ".md", ".optim")
_WIDTH_FAMILY = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL", 1280: "SDXL refiner"}


class EmbeddingError(WebUIError, ValueError):
    """An embedding file is readable but its contents are not an embedding we understand."""


@dataclass(eq=False)
class Embedding:
    """One embedding: `vec` is [n, dim] float32 on CPU, or {"clip_l": [n, 768], "clip_g": [n, 1280]} for SDXL."""

    name: str
    vec: Any
    vectors: int
    shape: int
    filename: str | None = None
    step: Any = None
    sd_checkpoint: Any = None
    sd_checkpoint_name: Any = None
    sha256: str | None = None

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:12] if self.sha256 else None

    def vectors_for(self, key: str, widths: tuple[tuple[str, int], ...]) -> Any:
        """The [n, width] vectors one text encoder receives.

        `widths` lists the model's encoders in concatenation order, e.g. (("clip_l", 768), ("clip_g", 1280)).
        A plain tensor as wide as all encoders together is split in that order (A1111 would fail on it).
        """
        if isinstance(self.vec, dict):
            return self.vec[key]
        if len(widths) == 1:
            return self.vec
        start = 0
        for name, width in widths:
            if name == key:
                return self.vec[:, start : start + width]
            start += width
        raise KeyError(key)


def _tensor_type() -> type:
    import torch

    return torch.Tensor


def _as_vectors(value: Any, what: str) -> Any:
    """A 1-D or 2-D tensor as [n, dim] float32 on CPU."""
    if not isinstance(value, _tensor_type()):
        raise EmbeddingError(f"{what} is a {type(value).__name__}, not a tensor")
    value = value.detach().to("cpu")
    if value.ndim == 1:
        value = value.unsqueeze(0)
    if value.ndim != 2 or value.shape[0] == 0 or value.shape[1] == 0:
        raise EmbeddingError(f"{what} has shape {tuple(value.shape)}; expected [vectors, width]")
    if not value.is_floating_point():
        raise EmbeddingError(f"{what} holds {value.dtype} values, not floating point")
    import torch

    return value.to(torch.float32)


def embedding_from_data(data: Any, name: str, filename: str | None = None) -> Embedding:
    """Recognise the three layouts A1111 accepts (classic `string_to_param`, SDXL `clip_l`/`clip_g`, one-key concept)."""
    if not isinstance(data, dict) or not data:
        raise EmbeddingError(f"{name}: the file holds no dictionary of tensors")
    meta: dict[str, Any] = {}
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # the original TI code saved an nn.ParameterDict
        if not isinstance(params, dict) or len(params) != 1:
            count = len(params) if isinstance(params, dict) else 0
            raise EmbeddingError(f"{name}: 'string_to_param' must hold exactly one entry (found {count})")
        vec = _as_vectors(next(iter(params.values())), f"{name}: string_to_param")
        vectors, shape = vec.shape[0], vec.shape[1]
        meta = {k: data.get(k) for k in ("step", "sd_checkpoint", "sd_checkpoint_name")}
    elif "clip_l" in data and "clip_g" in data:
        vec = {k: _as_vectors(data[k], f"{name}: {k}") for k in ("clip_l", "clip_g")}
        if vec["clip_l"].shape[0] != vec["clip_g"].shape[0]:
            raise EmbeddingError(
                f"{name}: clip_l has {vec['clip_l'].shape[0]} vectors but clip_g has {vec['clip_g'].shape[0]}"
            )
        vectors, shape = vec["clip_g"].shape[0], vec["clip_g"].shape[1] + vec["clip_l"].shape[1]
    else:
        tensors = [v for v in data.values() if isinstance(v, _tensor_type())]
        if len(data) != 1 or len(tensors) != 1:
            raise EmbeddingError(
                f"{name}: not a textual-inversion embedding (expected 'string_to_param', 'clip_l'+'clip_g', "
                f"or a single tensor; found keys {sorted(map(str, data))[:6]})"
            )
        vec = _as_vectors(tensors[0], f"{name}: {next(iter(data))}")
        vectors, shape = vec.shape[0], vec.shape[1]
    return Embedding(name=name, vec=vec, vectors=int(vectors), shape=int(shape), filename=filename, **meta)


def _allowed_pickle_globals() -> list[Any]:
    """What a legitimate embedding pickle may reference beyond plain tensors and containers."""
    import torch

    from modules import safe_load

    # Reuse the checkpoint loader's vetted list (numpy scalars in `step`...); add the ParameterDict the original
    # textual-inversion trainer pickled. Rebuilding it only restores attributes: no code of the file runs.
    return [*safe_load._legacy_globals(), torch.nn.ParameterDict, torch.nn.Parameter]


def read_embedding_file(path: Path | str) -> Any:
    """The raw dictionary stored in an embedding file; pickles only through torch's weights-only unpickler."""
    import torch

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from modules.safe_load import load_state_dict

        return load_state_dict(path, disable_mmap=True)
    if suffix not in (".pt", ".bin"):
        raise ModelLoadError(path, f"unsupported embedding file type {suffix!r}")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_allowed_pickle_globals()):
            # Plain pickles (not torch.save zips) make torch warn about the protocol; the refusal below says enough.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = found.group(1) if found else "a non-tensor object"
        raise UnsafeFileError(
            path, f"refused: the pickle asks to load {what}, which an embedding never needs (it could run code)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(path, f"corrupt or truncated embedding file ({msg})") from None


def load_embedding_file(path: Path | str) -> Embedding:
    """Read and recognise one embedding file; its name is the file name without extension."""
    path = Path(path)
    data = read_embedding_file(path)
    return embedding_from_data(data, path.stem, filename=str(path))


def width_description(width: int) -> str:
    family = _WIDTH_FAMILY.get(width)
    return f"{width} ({family})" if family else str(width)


@dataclass
class EmbeddingIndex:
    """The embeddings usable with one model, indexed by the first token id of their names (A1111's ids_lookup)."""

    widths: tuple[tuple[str, int], ...]
    word_embeddings: dict[str, Embedding] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    version: int = 0
    _lookup: dict[int, list[tuple[list[int], Embedding]]] = field(default_factory=dict)

    @property
    def expected_shape(self) -> int:
        return sum(w for _, w in self.widths)

    def _fit_problem(self, emb: Embedding) -> str | None:
        if emb.vectors > 75:
            return f"it has {emb.vectors} vectors; at most 75 fit in one 77-token chunk"
        if emb.shape != self.expected_shape:
            return (
                f"vectors of width {width_description(emb.shape)}, but the loaded model needs "
                f"{width_description(self.expected_shape)}"
            )
        if isinstance(emb.vec, dict):
            for key, width in self.widths:
                if key not in emb.vec or emb.vec[key].shape[1] != width:
                    return f"its {key} part does not have width {width}"
        return None

    def add(self, emb: Embedding, tokenize: Callable[[str], list[int]]) -> None:
        problem = self._fit_problem(emb)
        if problem is not None:
            self.skipped[emb.name] = problem
            return
        ids = list(tokenize(emb.name))
        if not ids:
            self.skipped[emb.name] = "its name has no tokens, so no prompt can refer to it"
            return
        if emb.name in self.word_embeddings:  # a later file with the same name replaces the earlier one
            old = self.word_embeddings[emb.name]
            for key, entries in self._lookup.items():
                self._lookup[key] = [e for e in entries if e[1] is not old]
        self.word_embeddings[emb.name] = emb
        entries = self._lookup.setdefault(ids[0], [])
        entries.append((ids, emb))
        entries.sort(key=lambda e: len(e[0]), reverse=True)  # longest name wins

    def find_embedding_at_position(self, tokens: list[int], offset: int) -> tuple[Embedding | None, int | None]:
        """The embedding whose name's token ids start at `tokens[offset]`, and how many ids the name uses."""
        for ids, emb in self._lookup.get(tokens[offset], ()):
            if tokens[offset : offset + len(ids)] == ids:
                return emb, len(ids)
        return None, None


def _file_signature(dirs: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) for every candidate file, following symlinks but never looping."""
    found: dict[str, tuple[int, int]] = {}
    for top in dirs:
        if not top.is_dir():
            continue
        seen: set[str] = set()
        for root, subdirs, files in os.walk(top, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:
                subdirs[:] = []
                continue
            seen.add(real)
            subdirs.sort()
            for fn in sorted(files):
                if not fn.lower().endswith(EMBEDDING_EXTENSIONS) or ".preview." in fn.lower():
                    continue
                full = os.path.join(root, fn)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                if st.st_size > 0:  # A1111 skips zero-byte files (downloads in progress)
                    found[full] = (st.st_size, st.st_mtime_ns)
    return found


class EmbeddingDatabase:
    """Every embedding file under the embeddings folders, reloaded when files change.

    `refresh()` rescans (cheap: one stat per file) and reads only new or changed files. `build_index()` gives the
    view for one model (which embeddings fit it, how their names tokenise); `version` changes whenever the set of
    files does, so users of an index know when to rebuild it.
    """

    def __init__(self, dirs: Iterable[Path | str] | Path | str, hash_cache: Any = None, check_interval: float = 2.0):
        if isinstance(dirs, (str, Path)):
            dirs = [dirs]
        self.dirs = [Path(d) for d in dirs]
        self.hash_cache = hash_cache
        self.check_interval = check_interval
        self.version = 0
        self.loaded: dict[str, Embedding] = {}
        self.failed: dict[str, str] = {}  # file path -> why it could not be used
        self.last_index: EmbeddingIndex | None = None
        self._files: dict[str, tuple[int, int]] | None = None
        self._by_path: dict[str, tuple[tuple[int, int], Embedding | None, str | None]] = {}
        self._last_check = 0.0
        self._lock = threading.RLock()

    def add_embedding_dir(self, path: Path | str) -> None:
        with self._lock:
            self.dirs.append(Path(path))
            self._files = None

    def refresh(self, force: bool = False) -> bool:
        """Rescan the folders if files were added, removed or changed (or always with `force`); True if reloaded."""
        with self._lock:
            now = time.monotonic()
            if not force and self._files is not None and now - self._last_check < self.check_interval:
                return False
            self._last_check = now
            files = _file_signature(self.dirs)
            if not force and files == self._files:
                return False
            if force:
                self._by_path.clear()
            loaded: dict[str, Embedding] = {}
            failed: dict[str, str] = {}
            by_path: dict[str, tuple[tuple[int, int], Embedding | None, str | None]] = {}
            for path, sig in files.items():
                cached = self._by_path.get(path)
                if cached is None or cached[0] != sig:
                    emb, error = self._load_one(path)
                    cached = (sig, emb, error)
                by_path[path] = cached
                if cached[1] is not None:
                    loaded[cached[1].name] = cached[1]  # same name in two folders: the later path wins
                else:
                    failed[path] = cached[2] or "unreadable"
            self._by_path, self._files = by_path, files
            self.loaded, self.failed = loaded, failed
            self.version += 1
            return True

    def _load_one(self, path: str) -> tuple[Embedding | None, str | None]:
        try:
            return load_embedding_file(path), None
        except (WebUIError, OSError) as e:
            log.warning("Embedding %s not loaded: %s", path, e)
            return None, str(e)

    def build_index(self, widths: tuple[tuple[str, int], ...], tokenize: Callable[[str], list[int]]) -> EmbeddingIndex:
        """The embeddings that fit a model whose text encoders have these (name, width)s, matched via `tokenize`."""
        with self._lock:
            if self._files is None:
                self.refresh(force=True)
            index = EmbeddingIndex(widths=tuple(widths), version=self.version)
            for emb in self.loaded.values():
                index.add(emb, tokenize)
            self.last_index = index
            return index

    @property
    def word_embeddings(self) -> dict[str, Embedding]:
        """Usable with the model of the last index built (A1111's `word_embeddings`)."""
        return self.last_index.word_embeddings if self.last_index else {}

    @property
    def skipped(self) -> dict[str, str]:
        """Name -> why it does not fit the model of the last index built."""
        return self.last_index.skipped if self.last_index else {}

    def sha256(self, emb: Embedding) -> str | None:
        """Full-file SHA-256, computed once (through the hash cache, title `textual_inversion/<name>`)."""
        if emb.sha256 is None and emb.filename:
            try:
                if self.hash_cache is not None:
                    emb.sha256 = self.hash_cache.sha256(emb.filename, f"textual_inversion/{emb.name}", "hashes")
                else:
                    from modules.hashes import sha256_file

                    emb.sha256 = sha256_file(emb.filename)
            except OSError as e:
                log.warning("Cannot hash embedding %s: %s", emb.filename, e)
        return emb.sha256

    def ti_hashes(self, embeddings: Iterable[Embedding]) -> str:
        """Infotext `TI hashes` value: `name: 12-hex, ...` (names lose `:` and `,`, which the format cannot hold)."""
        parts: dict[str, str] = {}
        for emb in embeddings:
            digest = self.sha256(emb)
            if digest:
                parts[emb.name.replace(":", "").replace(",", "")] = digest[:12]
        return ", ".join(f"{name}: {h}" for name, h in parts.items())
