"""The settings store: A1111 keys, typed defaults, atomic JSON persistence, per-job overrides."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modules.errors import SettingsError

log = logging.getLogger(__name__)

# Per-job overrides (API `override_settings`): consulted before the stored values, so nobody
# mutates and restores global settings while another job may be reading them.
_overlay: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "options_overlay", default=MappingProxyType({})
)


@dataclass
class OptionInfo:
    """One setting: default, label, the control that edits it, and where it lives in Settings."""

    default: Any = None
    label: str = ""
    component: str | None = None  # "checkbox", "slider", "dropdown", "radio", "textbox", "number", "color"
    component_args: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    onchange: Callable[[], None] | None = None
    section: tuple[str | None, str | None] = (None, None)
    category_id: str | None = None
    refresh: Callable[[], None] | None = None
    comment_before: str = ""
    comment_after: str = ""
    infotext: str | None = None
    restrict_api: bool = False
    do_not_save: bool = False
    requires_restart: bool = False
    info_text: str = ""
    choices: tuple[Any, ...] | Callable[[], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Extensions pass A1111's shapes: a Gradio class as `component` (gr.Slider) and the choices inside
        # `component_args` ({"choices": [...]} or a callable returning it). Keep the names and lists we use.
        if self.component is not None and not isinstance(self.component, str):
            name = getattr(self.component, "__name__", "").lower()
            self.component = {"colorpicker": "color", "checkboxgroup": "dropdown"}.get(name, name) or None
        if self.choices is None and self.component_args is not None:
            args = self.component_args
            if isinstance(args, dict) and "choices" in args:
                self.choices = tuple(args["choices"]) if not callable(args["choices"]) else args["choices"]
            elif callable(args):
                self.choices = lambda args=args: (args() or {}).get("choices")  # type: ignore[misc]

    # A1111-style chaining helpers used by extensions.
    def info(self, text: str) -> OptionInfo:
        self.info_text = text
        return self

    def link(self, label: str, url: str) -> OptionInfo:
        self.comment_before += f"[{label}]({url})"
        return self

    def needs_restart(self) -> OptionInfo:
        self.requires_restart = True
        return self

    def needs_reload_ui(self) -> OptionInfo:
        self.comment_after += " (requires Reload UI)"
        return self

    def html(self, text: str) -> OptionInfo:
        self.comment_after += text
        return self


class OptionHTML(OptionInfo):
    """A1111's text-only settings row (shown as HTML, never saved)."""

    def __init__(self, text: str) -> None:
        super().__init__(str(text).strip(), label="", component="html", do_not_save=True)


@dataclass
class OptionsCategory:
    id: str
    label: str


class OptionsCategories:
    """A1111's `options.categories`: Settings groups that sections can name with `category_id`."""

    def __init__(self) -> None:
        self.mapping: dict[str, OptionsCategory] = {}

    def register_category(self, category_id: str, label: str) -> str:
        self.mapping.setdefault(category_id, OptionsCategory(category_id, label))
        return category_id


categories = OptionsCategories()
for _cid, _label in (("saving", "Saving images"), ("sd", "Stable Diffusion"), ("ui", "User Interface"),
                     ("system", "System"), ("postprocessing", "Postprocessing"), ("training", "Training")):
    categories.register_category(_cid, _label)


def options_section(section: tuple[str, str], options: dict[str, OptionInfo]) -> dict[str, OptionInfo]:
    """Tag every option of a dict with its Settings section (A1111's helper of the same name)."""
    for info in options.values():
        info.section = section
    return options


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


class Options:
    """Attribute-style settings (`opts.samples_format`) backed by a JSON file."""

    def __init__(self, labels: Mapping[str, OptionInfo], *, frozen_keys: set[str] | None = None,
                 frozen_all: bool = False, restricted_keys: set[str] | None = None) -> None:
        object.__setattr__(self, "data_labels", dict(labels))
        object.__setattr__(self, "data", {k: v.default for k, v in labels.items()})
        object.__setattr__(self, "frozen_keys", set(frozen_keys or ()))
        object.__setattr__(self, "frozen_all", frozen_all)
        object.__setattr__(self, "restricted_keys", set(restricted_keys or ()))
        object.__setattr__(self, "load_warnings", [])
        object.__setattr__(self, "path", None)

    # --- reading -----------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        overlay = _overlay.get()
        if name in overlay:
            return overlay[name]
        data = object.__getattribute__(self, "data")
        if name in data:
            return data[name]
        labels = object.__getattribute__(self, "data_labels")
        if name in labels:
            return labels[name].default
        raise AttributeError(f"no setting named {name!r}")

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            return default

    def get_default(self, key: str) -> Any:
        info = self.data_labels.get(key)
        return None if info is None else info.default

    def __contains__(self, key: str) -> bool:
        return key in self.data or key in self.data_labels

    # --- writing -----------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def is_frozen(self, key: str) -> bool:
        return self.frozen_all or key in self.frozen_keys or key in self.restricted_keys

    def validate(self, key: str, value: Any) -> Any:
        """Return the value to store, or raise SettingsError naming the key and the problem."""
        info = self.data_labels.get(key)
        if info is None:
            return value  # unknown keys are kept as A1111 does (extensions may define them later)
        if isinstance(info.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _type_ok(info.default, value):
            raise SettingsError(f"setting {key!r} expects {type(info.default).__name__}, got {type(value).__name__}")
        choices = info.choices() if callable(info.choices) else info.choices
        if choices and value not in choices and info.component in ("radio", "dropdown") and not isinstance(value, list):
            raise SettingsError(f"setting {key!r} must be one of {list(choices)}, got {value!r}")
        return value

    def set(self, key: str, value: Any, *, run_callbacks: bool = True, is_api: bool = False) -> bool:
        """Store a value; returns True if it changed. Frozen and API-restricted keys are refused."""
        if self.is_frozen(key):
            raise SettingsError(f"setting {key!r} is frozen by the command line and cannot be changed")
        info = self.data_labels.get(key)
        if is_api and info is not None and info.restrict_api:
            raise SettingsError(f"setting {key!r} cannot be changed through the API")
        value = self.validate(key, value)
        old = self.data.get(key, None if info is None else info.default)
        if old == value:
            return False
        self.data[key] = value
        if run_callbacks and info is not None and info.onchange is not None:
            try:
                info.onchange()
            except Exception:
                self.data[key] = old
                raise
        return True

    def onchange(self, key: str, func: Callable[[], None], call: bool = True) -> None:
        """A1111: run `func` whenever `key` changes (and once now, unless call=False)."""
        info = self.data_labels.get(key)
        if info is not None:
            info.onchange = func
        if call:
            func()

    def cast_value(self, key: str, value: Any) -> Any:
        """A1111: a string from infotext or the API converted to the setting's type."""
        default = self.get_default(key)
        if value is None or default is None:
            return value
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")
        if isinstance(default, (int, float)) and isinstance(value, str):
            return type(default)(float(value)) if isinstance(default, int) else float(value)
        return value

    def add_option(self, key: str, info: OptionInfo) -> None:
        """Register a setting (extensions call this from on_ui_settings); keeps a value already loaded."""
        self.data_labels[key] = info
        if key not in self.data:
            self.data[key] = info.default

    # --- per-job overlay ---------------------------------------------------------------------
    @contextlib.contextmanager
    def override(self, values: Mapping[str, Any]) -> Iterator[None]:
        """Apply settings for the current job/context only (API override_settings)."""
        checked = {k: self.validate(k, v) for k, v in values.items()}
        token = _overlay.set({**_overlay.get(), **checked})
        try:
            yield
        finally:
            _overlay.reset(token)

    # --- persistence -------------------------------------------------------------------------
    def load(self, path: Path) -> None:
        """Read config.json. A corrupt file is backed up and replaced by defaults, with a warning."""
        object.__setattr__(self, "path", Path(path))
        path = Path(path)
        if not path.exists():
            return
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise ValueError("top level is not a JSON object")
        except (ValueError, UnicodeDecodeError, OSError) as e:
            backup = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.bak")
            with contextlib.suppress(OSError):
                os.replace(path, backup)
            msg = f"Settings file {path} could not be read ({e}); it was moved to {backup} and defaults are used."
            self.load_warnings.append(msg)
            log.warning(msg)
            return
        for key, value in loaded.items():
            info = self.data_labels.get(key)
            if info is not None and not _type_ok(info.default, value):
                msg = (f"Setting {key!r} in {path} has a value of the wrong type ({type(value).__name__}, "
                       f"expected {type(info.default).__name__}); the default is used.")
                self.load_warnings.append(msg)
                log.warning(msg)
                continue
            self.data[key] = value

    def save(self, path: Path | None = None) -> None:
        """Write config.json atomically (temp file in the same folder, then rename)."""
        path = Path(path or self.path or "config.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = {k: v for k, v in self.data.items()
                 if not (k in self.data_labels and self.data_labels[k].do_not_save)}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(saved, f, indent=4, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def dumpjson(self) -> str:
        return json.dumps({k: self.get(k) for k in self.data_labels} | self.data)

    def as_dict(self) -> dict[str, Any]:
        """Every setting with its effective value (stored, else default)."""
        return {**{k: v.default for k, v in self.data_labels.items()}, **self.data}
