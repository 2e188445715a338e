"""A1111's `modules.sd_models` for extensions: a thin facade over the runtime's model registry and manager."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modules import model_registry
from modules.hashes import legacy_model_hash

# A1111's folder name under models/ (`model_dir`) and the file it loads when nothing else is found.
model_dir = "Stable-diffusion"


class CheckpointInfo(model_registry.CheckpointInfo):
    """A1111's constructor shape, `CheckpointInfo(filename)`: the name is the path relative to its folder."""

    def __init__(self, filename: str | os.PathLike[str], name: str | None = None, **kwargs: Any) -> None:
        filename = os.path.abspath(str(filename))
        if name is None:
            name = os.path.basename(filename)
            rt = _runtime_or_none()
            for folder in getattr(getattr(rt, "paths", None), "ckpt_dirs", ()) or ():
                if filename.startswith(str(folder) + os.sep):
                    name = os.path.relpath(filename, folder).replace(os.sep, "/")
                    break
        super().__init__(filename=filename, name=name, is_folder=os.path.isdir(filename), **kwargs)
        if not self.is_folder and os.path.isfile(filename) and self.hash is None:
            self.hash = legacy_model_hash(filename)

    @property
    def metadata(self) -> dict[str, Any]:
        return read_metadata_from_safetensors(self.filename) if self.filename.endswith(".safetensors") else {}

    def calculate_shorthash(self) -> str | None:
        rt = _runtime_or_none()
        if rt is None:
            return self.shorthash
        return rt.registry.calculate_shorthash(self)


class SkipWritingToConfig:
    """A1111: `with SkipWritingToConfig():` loads a model without storing it as `sd_model_checkpoint`."""

    skip = False

    def __enter__(self) -> SkipWritingToConfig:
        self.previous = SkipWritingToConfig.skip
        SkipWritingToConfig.skip = True
        return self

    def __exit__(self, *exc: Any) -> None:
        SkipWritingToConfig.skip = self.previous


class FakeInitialModel:
    """A1111's placeholder before the first model is loaded."""

    def __init__(self) -> None:
        self.cond_stage_model = None
        self.chunk_length = 75

    def get_prompt_lengths_on_ui(self, prompt: str) -> tuple[int, int]:
        from modules.conditioning import target_token_count

        count = len(prompt.split())  # A1111's placeholder estimate as well
        return count, target_token_count(count)


class _ModelData:
    """A1111's `model_data`: the loaded model(s), read through the runtime."""

    @property
    def sd_model(self) -> Any:
        from modules import shared

        return shared.sd_model

    def get_sd_model(self) -> Any:
        return self.sd_model

    @property
    def loaded_sd_models(self) -> list[Any]:
        from modules import shared

        rt = _runtime()
        return [shared.SdModelProxy(m, rt.registry.closest(m.path), None) for m in rt.models.loaded_models()]

    @property
    def was_loaded_at_least_once(self) -> bool:
        return _runtime().models.current is not None

    def set_sd_model(self, v: Any, already_loaded: bool = False) -> None:
        """Models are switched through reload_model_weights(); a model object cannot be swapped in."""
        from modules.errors import WebUIError

        raise WebUIError("sd_models.model_data.set_sd_model is not supported: use "
                         "sd_models.reload_model_weights(info=sd_models.get_closet_checkpoint_match(name)).")


model_data = _ModelData()


def _runtime_or_none() -> Any:
    from modules import shared

    return shared._runtime


def _runtime() -> Any:
    from modules import shared

    return shared._need_runtime("sd_models")


def list_models() -> None:
    """Rescan the checkpoint folders (A1111 fills checkpoints_list; ours is read from the registry)."""
    _runtime().refresh_checkpoints()


def _infos() -> list[model_registry.CheckpointInfo]:
    return _runtime().registry.list()


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules.shared import natural_sort_key

    return sorted((c.short_title if use_short else c.title for c in _infos()), key=natural_sort_key)


def get_closet_checkpoint_match(search_string: str) -> model_registry.CheckpointInfo | None:
    """(sic, A1111's spelling) exact alias first, else the shortest title containing the text."""
    if not search_string:
        return None
    return _runtime().registry.closest(search_string)


def select_checkpoint() -> model_registry.CheckpointInfo:
    """The checkpoint that would be loaded now: the setting's, else the first one; FileNotFoundError if none."""
    rt = _runtime()
    name = rt.opts.get("sd_model_checkpoint")
    info = rt.registry.closest(name) if name else None
    if info is None:
        infos = rt.registry.list()
        if not infos:
            from modules.runtime import no_checkpoint_message

            raise FileNotFoundError(no_checkpoint_message(rt.paths))
        info = infos[0]
    return info


def _as_info(info: Any) -> model_registry.CheckpointInfo | None:
    if info is None or isinstance(info, model_registry.CheckpointInfo):
        return info
    return get_closet_checkpoint_match(str(info))


def reload_model_weights(sd_model: Any = None, info: Any = None, forced_reload: bool = False) -> Any:
    """Load `info` (default: the selected checkpoint) unless it is already current; returns shared.sd_model."""
    from modules import shared

    rt = _runtime()
    target = _as_info(info) or select_checkpoint()
    current = rt.models.current_info
    if forced_reload or current is None or current.filename != target.filename:
        if SkipWritingToConfig.skip:
            rt.models.load(target.title)
        else:
            rt.switch_checkpoint(target.title)
    return shared.sd_model


def load_model(checkpoint_info: Any = None, already_loaded_state_dict: Any = None) -> Any:
    return reload_model_weights(info=checkpoint_info)


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    _runtime().models.unload()


def model_hash(filename: str | os.PathLike[str]) -> str:
    """A1111's old 8-hex hash (sha256 of 64 KiB at offset 1 MiB); 'NOFILE' when the file is missing."""
    try:
        return legacy_model_hash(filename)
    except FileNotFoundError:
        return "NOFILE"


def read_metadata_from_safetensors(filename: str | os.PathLike[str]) -> dict[str, Any]:
    """The `__metadata__` of a .safetensors header, values that hold JSON decoded (as A1111)."""
    from modules.safe_load import read_safetensors_header

    meta = dict(read_safetensors_header(Path(filename)).get("__metadata__") or {})
    for k, v in meta.items():
        if isinstance(v, str) and v[:1] == "{":
            with contextlib.suppress(ValueError):
                meta[k] = json.loads(v)
    return meta


def read_state_dict(checkpoint_file: str | os.PathLike[str], print_global_state: bool = False,
                    map_location: str | None = None) -> dict[str, Any]:
    """The checkpoint's tensors in its own (LDM) key layout: safetensors, or pickles through the safe loader."""
    from modules.safe_load import load_state_dict

    sd = load_state_dict(checkpoint_file)
    if map_location:
        sd = {k: v.to(map_location) if hasattr(v, "to") else v for k, v in sd.items()}
    return sd


def get_checkpoint_state_dict(checkpoint_info: model_registry.CheckpointInfo, timer: Any = None) -> dict[str, Any]:
    return read_state_dict(checkpoint_info.filename)


class _LoadedView:
    """`checkpoints_loaded`: the CheckpointInfos of the models kept in RAM, in A1111's mapping shape (values are
    None: A1111 keeps state dicts here, ours keeps whole pipelines in the model manager)."""

    def __init__(self, infos: list[Any]) -> None:
        self._infos = [i for i in infos if i is not None]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, info: object) -> bool:
        return any(getattr(info, "filename", None) == i.filename for i in self._infos)

    def keys(self) -> list[Any]:
        return list(self._infos)

    def items(self) -> list[tuple[Any, None]]:
        return [(i, None) for i in self._infos]

    def get(self, info: Any, default: Any = None) -> Any:
        return default


def _iter_aliases() -> Iterator[tuple[str, model_registry.CheckpointInfo]]:
    for info in _infos():
        for alias in info.aliases():
            yield alias, info


def __getattr__(name: str) -> Any:
    if name == "checkpoints_list":
        return {c.title: c for c in _infos()}
    if name == "checkpoint_aliases":
        out: dict[str, Any] = {}
        for alias, info in _iter_aliases():
            out.setdefault(alias, info)
        return out
    if name == "checkpoints_loaded":
        rt = _runtime()
        return _LoadedView([rt.registry.closest(f) for f in rt.models.loaded_filenames()])
    if name == "model_path":
        return str(_runtime().paths.ckpt_dir)
    if name == "checkpoint_info":
        return _runtime().models.current_info
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r}")
