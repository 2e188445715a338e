"""A1111's `modules.paths_internal` (and the folder names of `modules.paths`): where code, data and models live."""

from __future__ import annotations

import argparse
import os
from typing import Any

from modules.paths import CONFIGS_PATH, SCRIPT_PATH, Paths

script_path = str(SCRIPT_PATH)
modules_path = str(SCRIPT_PATH / "modules")
cwd = os.getcwd()
sd_configs_path = str(CONFIGS_PATH)
sd_default_config = str(CONFIGS_PATH / "v1-inference.yaml")
sd_model_file = str(SCRIPT_PATH / "model.ckpt")
default_sd_model_file = sd_model_file
roboto_ttf_file = str(SCRIPT_PATH / "modules" / "Roboto-Regular.ttf")
extensions_builtin_dir = str(SCRIPT_PATH / "extensions-builtin")

_paths: Paths | None = None
"""The running app's folders; modules.shared.bind() sets it. Before that, A1111's defaults under the install dir."""


def bind(paths: Paths | None) -> None:
    global _paths
    _paths = paths


def normalized_filepath(filepath: str) -> str:
    """A1111's argparse `type=` for path flags: absolute, `~` expanded."""
    return os.path.abspath(os.path.expanduser(filepath))


parser_pre = argparse.ArgumentParser(add_help=False)
parser_pre.add_argument("--data-dir", type=str, default=script_path)
parser_pre.add_argument("--models-dir", type=str, default=None)


def _data() -> str:
    return str(_paths.data_dir) if _paths is not None else script_path


def _models() -> str:
    return str(_paths.models_dir) if _paths is not None else os.path.join(_data(), "models")


def __getattr__(name: str) -> Any:
    if name == "data_path":
        return _data()
    if name == "models_path":
        return _models()
    if name == "extensions_dir":
        return str(_paths.extensions_dir) if _paths is not None else os.path.join(_data(), "extensions")
    if name == "config_states_dir":
        return os.path.join(_data(), "config_states")
    if name == "default_output_dir":
        return os.path.join(_data(), "outputs")
    raise AttributeError(f"module 'modules.paths_internal' has no attribute {name!r}")
