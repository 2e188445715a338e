"""Extensions on disk: discovery, metadata.ini, enable state, ordering, and git operations (A1111 layout)."""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.errors import WebUIError

log = logging.getLogger(__name__)

GIT_TIMEOUT = 120.0
"""Seconds any one git command may take (a hanging remote must not hang the server)."""

DEFAULT_INDEX_URL = ("https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/"
                     "index.json")


class ExtensionError(WebUIError):
    """An extension operation was refused or failed; the message says which extension and why."""


class ExtensionAccessError(ExtensionError):
    """Installing/updating extensions is disabled because the server is reachable from the network."""


@dataclass
class Extension:
    """One folder under extensions/ or extensions-builtin/."""

    name: str
    path: Path
    enabled: bool = True
    is_builtin: bool = False
    canonical_name: str = ""
    metadata: configparser.ConfigParser = field(default_factory=configparser.ConfigParser)
    errors: list[str] = field(default_factory=list)
    remote: str | None = None
    branch: str | None = None
    commit_hash: str = ""
    commit_date: int = 0
    status: str = ""
    can_update: bool = False
    scripts_loaded: list[str] = field(default_factory=list)
    scripts_failed: dict[str, str] = field(default_factory=dict)  # file name -> one-line reason
    load_attempted: bool = False

    def __post_init__(self) -> None:
        self.canonical_name = self.canonical_name or self.name.lower()

    @property
    def load_status(self) -> str:
        """"fully", "partly" or "not at all" after start-up; "disabled" or "not loaded" otherwise."""
        if not self.enabled:
            return "disabled"
        if not self.load_attempted:
            return "not loaded"
        if not self.scripts_failed:
            return "fully"
        ok = [f for f in self.scripts_loaded if f not in self.scripts_failed]
        return "partly" if ok else "not at all"

    def load_summary(self) -> str:
        """One line for the start-up log and the Extensions tab."""
        status = self.load_status
        if status == "fully":
            n = len(self.scripts_loaded)
            return f"loaded fully ({n} script{'s' if n != 1 else ''})" if n else "loaded fully (no scripts)"
        if status in ("partly", "not at all"):
            failed = "; ".join(f"{f}: {why}" for f, why in self.scripts_failed.items())
            return f"loaded {status}: {failed}" if status == "partly" else f"not loaded at all: {failed}"
        return status

    @property
    def requires(self) -> list[str]:
        return _split_list(self.metadata.get("Extension", "Requires", fallback=""))

    def record_script(self, filename: str, error: str | None = None) -> None:
        """The loader reports each script file (and each class that failed) here."""
        self.load_attempted = True
        if filename not in self.scripts_loaded:
            self.scripts_loaded.append(filename)
        if error is not None:
            first_line = (error.strip().splitlines() or [""])[0]
            self.scripts_failed[filename] = (self.scripts_failed.get(filename, "") + "; " if filename in
                                             self.scripts_failed else "") + first_line

    def list_files(self, subdir: str, extension: str) -> list[Path]:
        folder = self.path / subdir
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(extension))

    def script_files(self) -> list[Path]:
        return self.list_files("scripts", ".py")

    def javascript_files(self) -> list[Path]:
        return [p for p in self.list_files("javascript", "") if p.suffix in (".js", ".mjs")]

    def style_file(self) -> Path | None:
        css = self.path / "style.css"
        return css if css.is_file() else None

    def localization_files(self) -> list[Path]:
        return self.list_files("localizations", ".json")

    def read_info_from_repo(self) -> None:
        """Remote, branch, commit and date from git (quietly empty for folders that are not repositories)."""
        if not (self.path / ".git").exists():
            return
        try:
            self.remote = git(self.path, "config", "--get", "remote.origin.url", check=False).strip() or None
            self.branch = git(self.path, "rev-parse", "--abbrev-ref", "HEAD", check=False).strip() or None
            out = git(self.path, "log", "-1", "--format=%H %ct", check=False).split()
            if len(out) == 2:
                self.commit_hash, self.commit_date = out[0], int(out[1])
        except ExtensionError as e:
            self.errors.append(str(e))

    def check_updates(self) -> None:
        """A1111's 'Check for updates': fetch, then compare HEAD with the remote branch."""
        if not self.remote:
            self.status, self.can_update = "unknown", False
            return
        try:
            git(self.path, "fetch", "--quiet", "origin")
            head = git(self.path, "rev-parse", "HEAD").strip()
            upstream = git(self.path, "rev-parse", f"origin/{self.branch or 'HEAD'}").strip()
        except ExtensionError:
            self.status, self.can_update = "unknown (remote error)", False
            return
        if head == upstream:
            self.status, self.can_update = "latest", False
        else:
            self.status, self.can_update = "new commits", True

    def update(self) -> None:
        """Fast-forward to the remote branch (A1111 hard-resets to origin/<branch> after fetching)."""
        git(self.path, "fetch", "--quiet", "origin")
        git(self.path, "reset", "--hard", f"origin/{self.branch or 'HEAD'}")
        self.read_info_from_repo()
        self.status, self.can_update = "latest", False


def _split_list(text: str) -> list[str]:
    return [x.strip() for x in re.split(r"[,\s]+", text or "") if x.strip()]


def git(cwd: Path | None, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT) -> str:
    """Run git as a subprocess (no shell) with a timeout; errors become ExtensionError with git's output."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo"}  # never wait for a password
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ExtensionError(f"git {args[0]} timed out after {timeout:.0f}s in {cwd}") from None
    except OSError as e:
        raise ExtensionError(f"git could not be run: {e}") from None
    if check and res.returncode != 0:
        raise ExtensionError(f"git {' '.join(args[:2])} failed in {cwd or '.'}: {(res.stderr or res.stdout).strip()}")
    return res.stdout


def _read_metadata(path: Path) -> tuple[configparser.ConfigParser, str | None]:
    parser = configparser.ConfigParser()
    file = path / "metadata.ini"
    if file.is_file():
        try:
            parser.read(file, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as e:
            return configparser.ConfigParser(), f"metadata.ini is invalid: {e}"
    return parser, None


def disabled_mode(opts: Any, cmd_opts: Any) -> str:
    """'all', 'extra' or 'none', from the flags first, then the setting (as A1111)."""
    if getattr(cmd_opts, "disable_all_extensions", False):
        return "all"
    if getattr(cmd_opts, "disable_extra_extensions", False):
        return "extra"
    return (opts.get("disable_all_extensions", "none") if opts is not None else "none") or "none"


def list_extensions(builtin_dir: Path, user_dir: Path, opts: Any = None, cmd_opts: Any = None) -> list[Extension]:
    """Every extension folder: built-ins first, then user ones, each sorted; enabled flags from settings/flags."""
    disabled = set(opts.get("disabled_extensions", []) or []) if opts is not None else set()
    mode = disabled_mode(opts, cmd_opts)
    found: list[Extension] = []
    seen: dict[str, Extension] = {}
    for root, builtin in ((builtin_dir, True), (user_dir, False)):
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            meta, problem = _read_metadata(path)
            enabled = path.name not in disabled and mode != "all" and (builtin or mode != "extra")
            ext = Extension(path.name, path, enabled=enabled, is_builtin=builtin, metadata=meta)
            if problem:
                ext.errors.append(problem)
            if ext.canonical_name in seen:
                log.error("Duplicate extension name %s in %s (already at %s); skipped", ext.canonical_name, path,
                          seen[ext.canonical_name].path)
                continue
            seen[ext.canonical_name] = ext
            found.append(ext)
    active = {e.canonical_name for e in found if e.enabled}
    for ext in found:
        for req in ext.requires if ext.enabled else []:
            if not any(alt.lower() in active for alt in req.split("|")):
                ext.errors.append(f"requires extension {req!r}, which is not installed or not enabled")
    return found


def active(extensions: list[Extension] | None = None) -> list[Extension]:
    """Enabled extensions of a list; without one (A1111's call), those of the running app."""
    if extensions is None:
        from modules import shared

        extensions = getattr(shared._runtime, "extensions", None) or []
    return [e for e in extensions if e.enabled]


def ordered_scripts(extensions: list[Extension]) -> list[tuple[Extension, Path]]:
    """Script files of the enabled extensions, in folder order adjusted by metadata.ini Before/After."""
    items: list[tuple[Extension, Path]] = [(e, f) for e in active(extensions) for f in e.script_files()]
    names = {f"{e.canonical_name}/{f.name}": i for i, (e, f) in enumerate(items)}
    by_ext: dict[str, list[int]] = {}
    for i, (e, _f) in enumerate(items):
        by_ext.setdefault(e.canonical_name, []).append(i)

    def targets(ref: str) -> list[int]:
        ref = ref.removeprefix("builtin/").lower()
        if ref in names:
            return [names[ref]]
        return by_ext.get(ref, [])

    after: dict[int, set[int]] = {i: set() for i in range(len(items))}  # i must come after each in the set
    for i, (e, f) in enumerate(items):
        for section in (f"scripts/{f.name}", "scripts"):
            if not e.metadata.has_section(section):
                continue
            for ref in _split_list(e.metadata.get(section, "After", fallback="")):
                after[i].update(j for j in targets(ref) if j != i)
            for ref in _split_list(e.metadata.get(section, "Before", fallback="")):
                for j in targets(ref):
                    if j != i:
                        after[j].add(i)
    order: list[int] = []
    visiting: set[int] = set()

    def visit(i: int) -> None:
        if i in order or i in visiting:  # a cycle keeps folder order rather than failing
            return
        visiting.add(i)
        for j in sorted(after[i]):
            visit(j)
        visiting.discard(i)
        order.append(i)

    for i in range(len(items)):
        visit(i)
    return [items[i] for i in order]


# --- installing ------------------------------------------------------------------------------------
def check_access(cmd_opts: Any) -> None:
    if getattr(cmd_opts, "disable_extension_access", False):
        raise ExtensionAccessError(
            "Extension access is disabled because the server listens on the network (--listen, --share or "
            "--server-name). Restart with --enable-insecure-extension-access to allow installing and updating.")


_SAFE_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/").removesuffix(".git").lower()


def dir_name_for(url: str, dirname: str = "") -> str:
    name = (dirname or "").strip() or url.strip().rstrip("/").split("/")[-1].removesuffix(".git")
    if not _SAFE_DIR.match(name) or name in (".", ".."):
        raise ExtensionError(f"invalid extension folder name {name!r}: use letters, digits, '-', '_' or '.'")
    return name


def install_from_url(url: str, user_dir: Path, *, branch: str = "", dirname: str = "", cmd_opts: Any = None,
                     installed: list[Extension] | None = None, run_install: bool = True) -> Path:
    """git clone into a scratch folder, then move into extensions/<dir>; runs install.py. Returns the new path."""
    check_access(cmd_opts)
    url = (url or "").strip()
    if not url:
        raise ExtensionError("no URL given for the extension's git repository")
    if url.startswith("-"):
        raise ExtensionError(f"invalid git URL {url!r}")
    name = dir_name_for(url, dirname)
    target = user_dir / name
    if target.exists():
        raise ExtensionError(f"extension folder {target} already exists")
    for ext in installed or []:
        if ext.remote and normalize_url(ext.remote) == normalize_url(url):
            raise ExtensionError(f"extension {url} is already installed as {ext.name}")
    user_dir.mkdir(parents=True, exist_ok=True)
    scratch = user_dir.parent / "tmp" / f"extension-install-{name}-{time.time_ns()}"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    args = ["clone", "--quiet", "--recurse-submodules"]
    if branch.strip():
        if branch.strip().startswith("-"):
            raise ExtensionError(f"invalid branch name {branch!r}")
        args += ["--branch", branch.strip()]
    try:
        git(None, *args, "--", url, str(scratch))
        shutil.move(str(scratch), str(target))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if run_install:
        run_install_script(Extension(name, target))
    return target


def run_install_script(ext: Extension, timeout: float = 600.0) -> str:
    """Run an extension's install.py with this Python, the webui root on PYTHONPATH (A1111's convention)."""
    import sys

    from modules.paths import SCRIPT_PATH

    script = ext.path / "install.py"
    if not script.is_file():
        return ""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT_PATH), os.environ.get("PYTHONPATH", "")])}
    try:
        res = subprocess.run([sys.executable, str(script)], cwd=ext.path, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExtensionError(f"install.py of extension {ext.name} timed out after {timeout:.0f}s") from None
    if res.returncode != 0:
        raise ExtensionError(f"install.py of extension {ext.name} failed (exit {res.returncode}):\n"
                             f"{(res.stderr or res.stdout)[-2000:]}")
    return res.stdout


def fetch_index(url: str, timeout: float = 15.0) -> dict[str, Any]:
    """The Available tab's index JSON; a readable error when offline or the JSON is wrong."""
    import urllib.error
    import urllib.request

    if not url.startswith(("https://", "http://", "file:")):
        raise ExtensionError(f"index URL must be http(s) or file: {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - scheme checked above
            data = json.loads(r.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as e:
        raise ExtensionError(f"Could not load the extension index from {url} (offline?): {e}") from None
    except ValueError as e:
        raise ExtensionError(f"The extension index at {url} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("extensions", []), list):
        raise ExtensionError(f"The extension index at {url} has no 'extensions' list")
    return data


# --- config states (Backup/Restore) --------------------------------------------------------------------
def config_state(extensions: list[Extension], name: str = "Current") -> dict[str, Any]:
    return {"name": name, "created_at": time.time(), "extensions": {
        e.name: {"name": e.name, "path": str(e.path), "enabled": e.enabled, "is_builtin": e.is_builtin,
                 "remote": e.remote, "commit_hash": e.commit_hash, "commit_date": e.commit_date, "branch": e.branch}
        for e in extensions}}


def save_config_state(folder: Path, extensions: list[Extension], name: str) -> Path:
    clean = re.sub(r"[^A-Za-z0-9_.\- ]", "_", name.strip() or "Config")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y_%m_%d-%H_%M_%S')}_{clean}.json"
    path.write_text(json.dumps(config_state(extensions, clean), indent=2), encoding="utf-8")
    return path


def list_config_states(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []


def restore_enabled_set(state_file: Path, extensions: list[Extension]) -> list[str]:
    """The `disabled_extensions` list a saved state implies for the extensions installed now."""
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        saved = state["extensions"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExtensionError(f"config state {state_file.name} cannot be read: {e}") from None
    return [e.name for e in extensions if not saved.get(e.name, {}).get("enabled", True)]


# --- localizations ---------------------------------------------------------------------------------------
def list_localizations(extensions: list[Extension], root: Path | None = None) -> dict[str, list[Path]]:
    """Localization name (file stem) -> its JSON files: the root folder first, then enabled extensions' ones."""
    found: dict[str, list[Path]] = {}
    files = sorted(root.glob("*.json")) if root is not None and root.is_dir() else []
    files += [f for e in active(extensions) for f in e.localization_files()]
    for f in files:
        found.setdefault(f.stem, []).append(f)
    return found


def load_localization(files: list[Path]) -> tuple[dict[str, str], list[str]]:
    """The merged English -> translation map of `files` (later files win) and one error per unreadable file."""
    merged: dict[str, str] = {}
    errors = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            errors.append(f"localization {f} cannot be read: {e}")
            continue
        if not isinstance(data, dict):
            errors.append(f"localization {f} must be a JSON object of English text -> translation")
            continue
        merged.update({str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)})
    return merged, errors
