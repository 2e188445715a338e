"""Loaded checkpoints: the current model, a small LRU cache of others, and safe switching."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modules.devices import DevicePolicy, torch_gc
from modules.errors import ModelLoadError
from modules.model_loader import LoadedModel, load_model
from modules.model_registry import CheckpointInfo, ModelRegistry

log = logging.getLogger(__name__)


class ModelManager:
    """Owns loaded models. A failed load leaves the previous model serving."""

    def __init__(self, registry: ModelRegistry, policy: DevicePolicy, *,
                 cache_limit: Callable[[], int] = lambda: 1,
                 prediction_override: Callable[[], str | None] = lambda: None,
                 config_override: Path | None = None) -> None:
        self.registry = registry
        self.policy = policy
        self.cache_limit = cache_limit
        self.prediction_override = prediction_override
        self.config_override = config_override  # --config applies to --ckpt only
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, tuple[float, LoadedModel]] = OrderedDict()  # filename -> (mtime, model)
        self.current: LoadedModel | None = None
        self.current_info: CheckpointInfo | None = None
        self.on_loaded: list[Callable[[LoadedModel, CheckpointInfo], None]] = []
        self.last_error: str | None = None

    @staticmethod
    def _mtime(path: str) -> float:
        try:
            return os.path.getmtime(path)
        except OSError:
            return -1.0

    def load(self, name: str, progress: Callable[[str], None] | None = None) -> LoadedModel:
        """Make `name` (any A1111 alias) the current model, from the cache when it is there."""
        say = progress or (lambda _m: None)
        info = self.registry.require(name)
        with self._lock:
            cached = self._cache.get(info.filename)
            if cached is not None and cached[0] == self._mtime(info.filename):
                self._cache.move_to_end(info.filename)
                self._make_current(cached[1], info)
                say(f"Switched to {info.title} (cached)")
                return cached[1]
            if cached is not None:  # file replaced on disk since it was loaded
                self._cache.pop(info.filename)
            say(f"Loading {info.title}...")
            # Make room first (never the current model: a failed load must leave it serving), so peak memory
            # is `limit` models plus the one being loaded, not one more.
            self._evict(reserve=1)
            override = self.config_override if self._is_ckpt_flag_model(info) else info.config_override()
            try:
                model = load_model(info.filename, device=self.policy.device, dtype=self.policy.dtype,
                                   vae_dtype=self.policy.vae_dtype, config_override=override,
                                   prediction_type=self._prediction_for(info))
            except ModelLoadError as e:
                self.last_error = str(e)
                log.error("%s", e)
                raise
            self._cache[info.filename] = (self._mtime(info.filename), model)
            self._make_current(model, info)
            self._evict()
            say(f"Loaded {info.title} in {model.load_seconds:.1f}s: {model.reason}")
            log.info("Loaded %s in %.1fs (%s)", info.title, model.load_seconds, model.reason)
        self._hash_in_background(info)
        return model

    def _is_ckpt_flag_model(self, info: CheckpointInfo) -> bool:
        return self.config_override is not None and info.filename in {str(p.resolve())
                                                                       for p in self.registry.extra_files}

    def _prediction_for(self, info: CheckpointInfo) -> str | None:
        value = self.prediction_override()
        return value if value in ("epsilon", "v_prediction") else None

    def _make_current(self, model: LoadedModel, info: CheckpointInfo) -> None:
        self.current, self.current_info, self.last_error = model, info, None
        for cb in list(self.on_loaded):
            try:
                cb(model, info)
            except Exception:  # a callback (extension) must not break model loading
                log.exception("model-loaded callback failed")

    def _evict(self, reserve: int = 0) -> None:
        limit = max(1, int(self.cache_limit())) - reserve
        evicted = False
        while len(self._cache) > max(limit, 0):
            candidates = [f for f, (_m, model) in self._cache.items() if model is not self.current]
            if not candidates:
                break
            self._cache.pop(candidates[0])
            evicted = True
        if evicted:
            torch_gc()
            _release_heap()


    def _hash_in_background(self, info: CheckpointInfo) -> None:
        # The sha256 of a multi-GB file takes seconds; A1111 computes it at load time, we do it
        # beside it so the model is usable at once. Infotext asks for it through `shorthash()`.
        if info.sha256 or info.is_folder or self.registry.no_hashing:
            return
        threading.Thread(target=self._safe_hash, args=(info,), daemon=True, name="checkpoint-hash").start()

    def _safe_hash(self, info: CheckpointInfo) -> None:
        try:
            self.registry.calculate_shorthash(info)
        except OSError as e:
            log.warning("Could not hash %s: %s", info.filename, e)

    def shorthash(self) -> str | None:
        """Short hash of the current checkpoint, computing it now if the background job has not."""
        info = self.current_info
        return None if info is None else self.registry.calculate_shorthash(info)

    def unload(self) -> None:
        with self._lock:
            self._cache.clear()
            self.current = None
            self.current_info = None
        torch_gc()

    def loaded_models(self) -> list[LoadedModel]:
        return [m for _t, m in self._cache.values()]

    def loaded_filenames(self) -> list[str]:
        return list(self._cache)

    def get_cached(self, name: str) -> Any:
        info = self.registry.closest(name)
        if info is None:
            return None
        entry = self._cache.get(info.filename)
        return entry[1] if entry else None


def _release_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, and RSS grows with every switch)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL(name).malloc_trim(0)
