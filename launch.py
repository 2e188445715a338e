"""Prepares the environment (installs missing requirements), then starts webui; A1111's launch helpers."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
python = sys.executable
index_url = os.environ.get("INDEX_URL", "")
_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")


def is_installed(package: str) -> bool:
    """A1111 helper used by extensions' install.py: is a distribution (or module) importable?"""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(package.replace("-", "_")) is not None


def run(command: str | list[str], desc: str | None = None, errdesc: str | None = None,
        custom_env: dict[str, str] | None = None, live: bool = True) -> str:
    """A1111 helper: run a command, raise RuntimeError with its output on failure."""
    if desc:
        print(desc, flush=True)
    args = command if isinstance(command, list) else shlex.split(command)
    result = subprocess.run(args, env=custom_env or os.environ, text=True,
                            stdout=None if live else subprocess.PIPE, stderr=None if live else subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{errdesc or 'Error running command'}.\nCommand: {args}\nExit code: {result.returncode}\n"
                           f"{result.stdout or ''}")
    return result.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = True) -> str:
    """A1111 helper: `run_pip("install foo", "foo")`."""
    index = ["--index-url", index_url] if index_url else []
    return run([python, "-m", "pip", *shlex.split(command), "--prefer-binary", *index],
               desc=f"Installing {desc}" if desc else None, errdesc=f"Couldn't install {desc}", live=live)


def missing_requirements(path: Path) -> list[str]:
    """Pinned requirements whose installed version differs (or that are absent)."""
    missing = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _REQ.match(line)
        if not m:
            continue
        name, version = m.group(1), m.group(2)
        try:
            installed = importlib.metadata.version(re.sub(r"\[.*\]", "", name))
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{name}=={version}")
            continue
        if installed.split("+")[0] != version.split("+")[0]:
            missing.append(f"{name}=={version}")
    return missing


def prepare_environment(argv: list[str]) -> None:
    if "--skip-prepare-environment" in argv or "--skip-install" in argv:
        return
    reqs = Path(os.environ.get("REQS_FILE", ROOT / "requirements.txt"))
    missing = missing_requirements(reqs)
    if missing:
        print(f"Installing requirements: {', '.join(missing)}", flush=True)
        run([python, "-m", "pip", "install", "-r", str(reqs)], errdesc="Couldn't install requirements")
    nodeps = ROOT / "requirements-nodeps.txt"  # packages whose declared dependencies are wrong (see the file)
    if nodeps.is_file() and missing_requirements(nodeps):
        run([python, "-m", "pip", "install", "--no-deps", "-r", str(nodeps)], errdesc="Couldn't install requirements")


def run_extensions_installers(argv: list[str]) -> None:
    """A1111: each enabled user extension's install.py runs at every start (not with --skip-install)."""
    if "--skip-install" in argv or "--skip-prepare-environment" in argv:
        return
    sys.path.insert(0, str(ROOT))
    from modules import cmd_args, extensions
    from modules.paths import build_paths

    known, _ = cmd_args.build_parser().parse_known_args(argv)
    paths = build_paths(known)
    settings = {}
    try:
        import json

        settings = json.loads(paths.settings_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    found = extensions.list_extensions(paths.extensions_builtin_dir, paths.extensions_dir,
                                       settings if isinstance(settings, dict) else {}, known)
    for ext in found:
        if ext.enabled and not ext.is_builtin:
            try:
                extensions.run_install_script(ext)
            except extensions.ExtensionError as e:  # a broken installer is reported; the app still starts
                print(f"Error running install.py for extension {ext.name}: {e}", file=sys.stderr, flush=True)


def start(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    import webui

    return webui.main(argv)


RESTART_EXIT_CODE = 75  # modules.restart.RESTART_EXIT_CODE (not imported: launch.py runs before the venv is ready)


def main() -> int:
    argv = sys.argv[1:] + shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    looped = bool(os.environ.get("SD_WEBUI_RESTART"))  # webui.sh loops on the tmp/restart marker itself
    if not looped:
        os.environ["SD_WEBUI_RESTART_EXEC"] = "1"  # tells the server a restart request will be honoured
    prepare_environment(argv)
    run_extensions_installers(argv)
    code = start(sys.argv[1:])  # webui re-reads COMMANDLINE_ARGS itself
    if code == RESTART_EXIT_CODE and not looped:
        # A fresh process: extension scripts, callbacks and imported modules all start from the new enabled set.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(python, [python, str(ROOT / "launch.py"), *sys.argv[1:]])
    return code


# A1111's version probes and launcher state, as extensions import them from `launch`.
if str(ROOT) not in sys.path:  # `modules` must import when an extension's install.py runs with another cwd
    sys.path.insert(0, str(ROOT))
from modules.launch_utils import commit_hash, git, git_tag, repo_dir  # noqa: E402,F401


def __getattr__(name: str) -> object:
    if name == "args":  # parsed on first use, not at import
        from modules import launch_utils

        return launch_utils.args
    raise AttributeError(f"module 'launch' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
