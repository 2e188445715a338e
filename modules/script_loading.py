"""Loads extensions' scripts/*.py files and fills the script runners; a broken file is reported by name and skipped."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from modules import scripts
from modules.extensions import Extension, ordered_scripts

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What loading found: script classes in order, and readable errors naming extension and file."""

    classes: list[scripts.ScriptClassData] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _ScriptsPath:
    """`scripts.__path__`: the scripts/ folder of the extension being loaded first, then every enabled
    extension's, so that `import scripts.<name>` finds the caller's own helper before a same-named one."""

    def __init__(self) -> None:
        self.dirs: list[str] = []

    def _ordered(self) -> list[str]:
        own = os.path.join(scripts._current_basedir, "scripts") if scripts._current_basedir else None
        return ([own] if own and own in self.dirs else []) + [d for d in self.dirs if d != own]

    def __iter__(self) -> Any:
        return iter(self._ordered())

    def __len__(self) -> int:
        return len(self.dirs)

    def __getitem__(self, i: int) -> str:
        return self._ordered()[i]

    def __contains__(self, item: object) -> bool:
        return item in self.dirs

    def __repr__(self) -> str:
        return f"_ScriptsPath({self.dirs!r})"


def register_import_conventions(extensions: list[Extension], user_dir: Path | None = None,
                                builtin_dir: Path | None = None) -> None:
    """A1111 extensions import their helpers as `scripts.<name>` (18 of 30 surveyed) and other extensions'
    modules as `extensions.<folder>.scripts.<name>`: both top-level names are namespace packages over the
    enabled extensions' folders. LDM imports get one clear error (modules.ldm_compat)."""
    from modules import ldm_compat

    ldm_compat.install()
    pkg = sys.modules.get("scripts")
    if not isinstance(getattr(pkg, "__path__", None), _ScriptsPath):
        pkg = ModuleType("scripts", "Namespace of the enabled extensions' scripts/ folders (A1111 convention).")
        pkg.__path__ = _ScriptsPath()  # type: ignore[attr-defined]
        pkg.__package__ = "scripts"
        sys.modules["scripts"] = pkg
    for name in [m for m in sys.modules if m.startswith("scripts.")]:
        del sys.modules[name]  # a reload (or a second runtime in tests) starts from the new set of extensions
        if hasattr(pkg, name.split(".")[1]):
            delattr(pkg, name.split(".")[1])
    _own_modules.clear()
    pkg.__path__.dirs = [str(e.path / "scripts") for e in extensions if e.enabled and (e.path / "scripts").is_dir()]
    roots = [str(d) for d in (user_dir, builtin_dir) if d is not None]
    ext_pkg = sys.modules.get("extensions")
    if ext_pkg is None or not getattr(ext_pkg, "_webui_namespace", False):
        ext_pkg = ModuleType("extensions", "Namespace of the extension folders (A1111 convention).")
        ext_pkg._webui_namespace = True  # type: ignore[attr-defined]
        ext_pkg.__package__ = "extensions"
        sys.modules["extensions"] = ext_pkg
    for name in [m for m in sys.modules if m.startswith("extensions.")]:
        del sys.modules[name]
    ext_pkg.__path__ = roots  # type: ignore[attr-defined]


def _module_name(path: Path, basedir: Path) -> str:
    """`scripts.<stem>` for an extension's scripts/<stem>.py (so `import scripts.<stem>` is the same module)."""
    if path.parent.name == "scripts" and path.parent.parent == basedir:
        return f"scripts.{path.stem}"
    return path.stem


_own_modules: dict[str, dict[str, ModuleType]] = {}
"""extension scripts/ folder -> its modules imported as `scripts.<name>` (each extension sees its own first)."""


def _owner_dir(module: ModuleType, dirs: list[str]) -> str | None:
    file = os.path.abspath(getattr(module, "__file__", "") or "")
    return next((d for d in dirs if file.startswith(os.path.abspath(d) + os.sep)), None)


@contextlib.contextmanager
def _scripts_view(basedir: Path) -> Any:
    """While one extension's script runs, `scripts.<name>` means its own scripts/<name>.py when it has one, else
    the module other extensions loaded under that name; modules imported meanwhile are recorded per owner."""
    pkg = sys.modules.get("scripts")
    dirs = list(getattr(getattr(pkg, "__path__", None), "dirs", []) or [])
    if pkg is None or not dirs:
        yield
        return
    own_dir = os.path.join(str(basedir), "scripts")
    global_view = {k: v for k, v in sys.modules.items() if k.startswith("scripts.")}
    view = dict(global_view)
    own = _own_modules.setdefault(own_dir, {})
    for key in [k for k, v in view.items() if _owner_dir(v, dirs) not in (own_dir, None)]:
        stem = key.split(".")[1]
        if os.path.exists(os.path.join(own_dir, stem + ".py")) or os.path.isdir(os.path.join(own_dir, stem)):
            del view[key]  # this extension has its own module of that name
    view.update(own)
    _install_view(pkg, global_view, view)
    try:
        yield
    finally:
        now = {k: v for k, v in sys.modules.items() if k.startswith("scripts.")}
        for key, module in now.items():
            owner = _owner_dir(module, dirs)
            if owner is not None:
                _own_modules.setdefault(owner, {}).setdefault(key, module)
        merged = dict(global_view)
        for key, module in now.items():
            merged.setdefault(key, module)  # globally (after loading), the first extension to take a name keeps it
        _install_view(pkg, now, merged)


def _install_view(pkg: ModuleType, old: dict[str, ModuleType], new: dict[str, ModuleType]) -> None:
    for key in old:
        sys.modules.pop(key, None)
        if key.count(".") == 1 and getattr(pkg, key.split(".")[1], None) is old[key]:
            delattr(pkg, key.split(".")[1])
    for key, module in new.items():
        sys.modules[key] = module
        if key.count(".") == 1:
            setattr(pkg, key.split(".")[1], module)


def load_module(path: Path, basedir: Path, name: str | None = None) -> ModuleType:
    """Execute a script file as A1111 does, with basedir() and sys.path set. A file under scripts/ is also the
    module `scripts.<name>` for its own extension (and for the others, when it was first to take the name);
    when one of the extension's scripts already imported it that way, that module is returned, not run again."""
    name = name or _module_name(path, basedir)
    in_scripts = name.startswith("scripts.") and "scripts" in sys.modules
    own = _own_modules.get(os.path.join(str(basedir), "scripts"), {})
    existing = own.get(name) if in_scripts else None
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == os.path.abspath(path):
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_basedir = list(sys.path), scripts._current_basedir
    sys.path.insert(0, str(basedir))  # sibling modules of the extension import directly, as in A1111
    scripts._current_basedir = str(basedir)
    try:
        with _scripts_view(basedir) if in_scripts else contextlib.nullcontext():
            if in_scripts:
                sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                if in_scripts and sys.modules.get(name) is module:
                    del sys.modules[name]
                raise
    finally:
        sys.path[:] = saved_path
        scripts._current_basedir = saved_basedir
    return module


def load_scripts(extensions: list[Extension]) -> LoadReport:
    """Import every enabled extension's scripts in metadata order; collect Script subclasses."""
    report = LoadReport()
    scripts.scripts_data.clear()
    if "scripts" not in sys.modules or not isinstance(getattr(sys.modules["scripts"], "__path__", None),
                                                      _ScriptsPath):
        register_import_conventions(extensions)
    for ext in extensions:
        if ext.enabled:
            ext.load_attempted = True
    _load_builtin_scripts(report)
    for ext, path in ordered_scripts(extensions):
        try:
            module = load_module(path, ext.path)
        except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from an import are errors too
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = f"Extension {ext.name}: error loading script {path.name}: {type(e).__name__}: {e}"
            log.error(msg, exc_info=e)
            ext.errors.append(msg)
            ext.record_script(path.name, f"{type(e).__name__}: {e}")
            report.errors.append(msg)
            continue
        ext.record_script(path.name)
        for obj in list(vars(module).values()):
            if (isinstance(obj, type) and issubclass(obj, scripts.Script) and obj is not scripts.Script
                    and obj.__module__ == module.__name__):
                data = scripts.ScriptClassData(obj, str(path), str(ext.path), module, ext.name)
                report.classes.append(data)
                scripts.scripts_data.append(data)
    return report


def builtin_script_files() -> list[Path]:
    """The webui's own selectable scripts (root `scripts/`: X/Y/Z plot, prompt matrix...), in file-name order."""
    from modules.paths import SCRIPT_PATH

    folder = SCRIPT_PATH / "scripts"
    return sorted(p for p in folder.glob("*.py") if p.is_file()) if folder.is_dir() else []


def _load_builtin_scripts(report: LoadReport) -> None:
    """Root scripts load first, each as module `<file>.py` as in A1111: extensions find X/Y/Z plot by
    `script_class.__module__ == "xyz_grid.py"` in `scripts.scripts_data` to add their own axes."""
    from modules.paths import SCRIPT_PATH

    for path in builtin_script_files():
        try:
            module = load_module(path, SCRIPT_PATH, name=path.name)
        except Exception as e:  # a broken built-in script must not stop the others or the extensions
            msg = f"Error loading built-in script {path.name}: {type(e).__name__}: {e}"
            log.error(msg, exc_info=e)
            report.errors.append(msg)
            continue
        for obj in list(vars(module).values()):
            if (isinstance(obj, type) and issubclass(obj, scripts.Script) and obj is not scripts.Script
                    and obj.__module__ == module.__name__):
                data = scripts.ScriptClassData(obj, str(path), str(SCRIPT_PATH), module, None)
                report.classes.append(data)
                scripts.scripts_data.append(data)


def create_runner(classes: list[scripts.ScriptClassData], is_img2img: bool = False,
                  errors: list[str] | None = None,
                  extensions_by_name: dict[str, Extension] | None = None) -> scripts.ScriptRunner:
    """Instantiate the scripts for one tab: hidden ones dropped, AlwaysVisible ones always on."""
    runner = scripts.ScriptRunner()
    for data in classes:
        ext = data.extension
        try:
            script = data.script_class()
            script.filename = data.path
            script.extension = ext
            script.is_txt2img, script.is_img2img = not is_img2img, is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"
            visibility: Any = script.show(is_img2img)
        except Exception as e:
            msg = f"Extension {ext}: error creating script {data.script_class.__name__} from " \
                  f"{Path(data.path).name}: {type(e).__name__}: {e}"
            log.error(msg)
            if errors is not None:
                errors.append(msg)
            if extensions_by_name and ext in extensions_by_name:
                extensions_by_name[ext].record_script(Path(data.path).name,
                                                      f"{data.script_class.__name__}: {type(e).__name__}: {e}")
            continue
        _run_ui_in_compat_context(script)
        if visibility is scripts.AlwaysVisible:
            script.alwayson = True
        elif not visibility:
            continue
        runner.add(script)
    runner.errors = errors if errors is not None else runner.errors
    return runner


def _run_ui_in_compat_context(script: scripts.Script) -> None:
    """An extension's `ui()` runs inside script_callbacks.ui_code_context() (Gradio 3 spellings translated)."""
    from modules import script_callbacks

    ui = script.ui

    def ui_in_context(*args: Any, **kwargs: Any) -> Any:
        with script_callbacks.ui_code_context():
            return ui(*args, **kwargs)

    script.ui = ui_in_context  # type: ignore[method-assign]


EXTENSION_OPTIONS = ("disabled_extensions", "disable_all_extensions")


def register_extension_options(opts: Any) -> None:
    """A1111's hidden settings that hold the enabled set (not shown in Settings; the Extensions tab edits them)."""
    from modules.options import OptionInfo

    if "disabled_extensions" not in opts.data_labels:
        opts.add_option("disabled_extensions", OptionInfo([], "Disable these extensions"))
    if "disable_all_extensions" not in opts.data_labels:
        opts.add_option("disable_all_extensions", OptionInfo("none", "Disable all extensions",
                                                             choices=("none", "extra", "all")))


def localizations_root(cmd_opts: Any) -> Path:
    from modules.paths import SCRIPT_PATH

    return Path(getattr(cmd_opts, "localizations_dir", None) or SCRIPT_PATH / "localizations")


def register_localization_option(runtime: Any) -> None:
    """A1111's `localization` setting: 'None' or the name of a localizations/*.json (root or extensions)."""
    from modules import extensions
    from modules.options import OptionInfo

    names = sorted(extensions.list_localizations(runtime.extensions, localizations_root(runtime.cmd_opts)))
    runtime.opts.add_option("localization", OptionInfo(
        "None", "Localization", "dropdown", choices=("None", *names), section=("ui", "User interface"),
        requires_restart=True))


def setup_extensions(runtime: Any) -> None:
    """Start-up: bind modules.shared, discover extensions, load their scripts, fire on_ui_settings, wire callbacks."""
    from modules import extensions, script_callbacks, shared

    script_callbacks.script_unloaded_callback()  # a second start in one process (tests, reload) starts clean
    script_callbacks.clear_callbacks()
    shared.bind(runtime)
    register_extension_options(runtime.opts)
    found = extensions.list_extensions(runtime.paths.extensions_builtin_dir, runtime.paths.extensions_dir,
                                       runtime.opts, runtime.cmd_opts)
    for ext in found:
        ext.read_info_from_repo()
    runtime.extensions = found
    register_localization_option(runtime)
    register_import_conventions(found, runtime.paths.extensions_dir, runtime.paths.extensions_builtin_dir)
    report = load_scripts(found)
    errors = list(report.errors)
    by_name = {e.name: e for e in found}
    runtime.scripts_txt2img = create_runner(report.classes, False, errors, by_name)
    runtime.scripts_img2img = create_runner(report.classes, True, errors, by_name)
    script_callbacks.ui_settings_callback()  # extension settings exist for the API and config.json too
    # A1111 asks once at start for extra cross-attention optimizers and SD Unets; we keep the answers.
    script_callbacks.list_optimizers_callback()
    script_callbacks.list_unets_callback()
    for ext in found:
        for problem in ext.errors:
            msg = problem if problem.startswith(f"Extension {ext.name}:") else f"Extension {ext.name}: {problem}"
            if msg not in errors:
                errors.append(msg)
    runtime.extension_errors = errors
    for msg in errors:
        runtime.warnings.append(msg)
    log_load_status(found)

    def on_loaded(model: Any, info: Any) -> None:
        script_callbacks.model_loaded_callback(shared.sd_model)

    runtime.models.on_loaded.append(on_loaded)


def log_load_status(found: list[Extension]) -> None:
    """One start-up log line per enabled extension: loaded fully, partly (which scripts failed, why) or not at all."""
    for ext in found:
        if not ext.enabled:
            continue
        level = logging.INFO if ext.load_status == "fully" else logging.WARNING
        log.log(level, "Extension %s: %s", ext.name, ext.load_summary())


def extension_preload(parser: Any, argv: list[str]) -> list[str]:
    """Run preload(parser) of built-ins and enabled user extensions before flags are parsed; returns errors."""
    import json

    from modules import extensions
    from modules.paths import build_paths

    known, _ = parser.parse_known_args(argv)
    paths = build_paths(known)
    settings: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        settings = json.loads(paths.settings_file.read_text(encoding="utf-8"))

    class _Opts(dict):
        pass

    found = extensions.list_extensions(paths.extensions_builtin_dir, paths.extensions_dir,
                                       _Opts(settings if isinstance(settings, dict) else {}), known)
    errors = []
    from modules import ldm_compat

    ldm_compat.install()
    for ext in found:
        file = ext.path / "preload.py"
        if not (ext.enabled or ext.is_builtin) or not file.is_file():
            continue
        try:
            module = load_module(file, ext.path)
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception as e:
            msg = f"Extension {ext.name}: error running preload.py: {type(e).__name__}: {e}"
            log.error(msg)
            errors.append(msg)
    return errors
