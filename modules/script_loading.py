"""Loads extensions' scripts/*.py files and fills the script runners; a broken file is reported by name and skipped."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
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


def load_module(path: Path, basedir: Path) -> ModuleType:
    """Execute a script file as A1111 does: its own module (not in sys.modules), basedir() and sys.path set."""
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_basedir = list(sys.path), scripts._current_basedir
    sys.path.insert(0, str(basedir))  # sibling modules of the extension import directly, as in A1111
    scripts._current_basedir = str(basedir)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        scripts._current_basedir = saved_basedir
    return module


def load_scripts(extensions: list[Extension]) -> LoadReport:
    """Import every enabled extension's scripts in metadata order; collect Script subclasses."""
    report = LoadReport()
    scripts.scripts_data.clear()
    for ext, path in ordered_scripts(extensions):
        try:
            module = load_module(path, ext.path)
        except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from an import are errors too
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = f"Extension {ext.name}: error loading script {path.name}: {type(e).__name__}: {e}"
            log.error(msg, exc_info=e)
            ext.errors.append(msg)
            report.errors.append(msg)
            continue
        for obj in list(vars(module).values()):
            if (isinstance(obj, type) and issubclass(obj, scripts.Script) and obj is not scripts.Script
                    and obj.__module__ == module.__name__):
                data = scripts.ScriptClassData(obj, str(path), str(ext.path), module, ext.name)
                report.classes.append(data)
                scripts.scripts_data.append(data)
    return report


def create_runner(classes: list[scripts.ScriptClassData], is_img2img: bool = False,
                  errors: list[str] | None = None) -> scripts.ScriptRunner:
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
            continue
        if visibility is scripts.AlwaysVisible:
            script.alwayson = True
        elif not visibility:
            continue
        runner.add(script)
    runner.errors = errors if errors is not None else runner.errors
    return runner


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
    report = load_scripts(found)
    errors = list(report.errors)
    runtime.scripts_txt2img = create_runner(report.classes, False, errors)
    # img2img's runner stays empty until there is an img2img tab to build its script UIs (and arg layout).
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

    def on_loaded(model: Any, info: Any) -> None:
        script_callbacks.model_loaded_callback(shared.sd_model)

    runtime.models.on_loaded.append(on_loaded)


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
