"""A1111's `modules.launch_utils` names that extensions read: version probes and the launcher's arguments."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from typing import Any

from modules.paths import SCRIPT_PATH

A1111_VERSION = "v1.10.1"
"""The A1111 release whose extension surface this webui follows. Extensions parse the tag
(`int(tag.replace("v", "").replace(".", ""))`) and read an `f1`/`f2` prefix or `classic` as Forge."""

git = os.environ.get("GIT", "git")
python = os.environ.get("PYTHON") or __import__("sys").executable
dir_repos = "repositories"
script_path = str(SCRIPT_PATH)


def git_tag() -> str:
    """Always A1111's tag shape (`v1.10.1`), never this repository's own tags, so version checks take the A1111 path."""
    return A1111_VERSION


@lru_cache(maxsize=1)
def commit_hash() -> str:
    try:
        return subprocess.check_output([git, "-C", script_path, "rev-parse", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL, timeout=10).strip()
    except (OSError, subprocess.SubprocessError):
        return "<none>"


def is_installed(package: str) -> bool:
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(package.replace("-", "_")) is not None


def repo_dir(name: str) -> str:
    return os.path.join(script_path, dir_repos, name)


@lru_cache(maxsize=1)
def _args() -> Any:
    """`launch.args`: the command line as parsed by A1111's parser, unknown flags ignored (as parse_known_args)."""
    import sys

    from modules import cmd_args

    known, _unknown = cmd_args.build_parser().parse_known_args(cmd_args.argv_with_env(sys.argv[1:]))
    return cmd_args.apply_default_paths(known)


def __getattr__(name: str) -> Any:
    if name == "args":
        return _args()
    raise AttributeError(f"module 'modules.launch_utils' has no attribute {name!r}")
