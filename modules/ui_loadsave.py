"""ui-config.json as A1111 keeps it: every control's default value, visibility and slider range by
`<tab>/<label>/<field>` (scripts: `customscript/<file>/<tab>/<label>/<field>`), read at start and filled in with
the defaults of controls it does not name yet."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gradio as gr

log = logging.getLogger(__name__)

FIELDS = ("value", "visible", "minimum", "maximum", "step")
_INPUTS = (gr.Slider, gr.Number, gr.Checkbox, gr.Radio, gr.Dropdown, gr.Textbox, gr.CheckboxGroup)
_SKIP_TABS = {"settings", "extensions"}  # their controls mirror config.json / the extension list, not defaults


def _tab_of(block: Any) -> str | None:
    """The id of the top-level tab a component sits in (the Tab directly under the page's #tabs)."""
    parent = getattr(block, "parent", None)
    while parent is not None:
        outer = getattr(parent, "parent", None)
        if isinstance(parent, gr.Tab) and isinstance(outer, gr.Tabs) and getattr(outer, "elem_id", None) == "tabs":
            return str(parent.id) if parent.id is not None else None
        parent = outer
    return None


def _choices(component: Any) -> list[Any] | None:
    choices = getattr(component, "choices", None)
    if choices is None:
        return None
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices]


def _acceptable(component: Any, field: str, value: Any) -> bool:
    """A stored value the control can take: right type, and one of its choices for a choice control."""
    if field == "visible":
        return isinstance(value, bool)
    if field in ("minimum", "maximum", "step"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    current = getattr(component, "value", None)
    if callable(current):
        return False
    choices = _choices(component)
    if choices is not None and not getattr(component, "allow_custom_value", False):
        values = value if isinstance(value, list) else [value]
        return all(v in choices for v in values)
    if isinstance(current, bool):
        return isinstance(value, bool)
    if isinstance(current, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return current is None or isinstance(value, type(current))


class UiLoadsave:
    """A1111's `modules.ui_loadsave.UiLoadsave`: `ui_settings` is the file's data, applied to the page's controls."""

    def __init__(self, filename: str | os.PathLike[str]) -> None:
        self.filename = Path(filename)
        self.ui_settings: dict[str, Any] = {}
        self.error: str | None = None
        if self.filename.is_file():
            try:
                data = json.loads(self.filename.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("the file does not hold a JSON object")
                self.ui_settings = data
            except (OSError, ValueError) as e:
                self.error = f"{self.filename} is not readable ({e}); using the built-in defaults and leaving it as is"
                log.warning("%s", self.error)

    def keyed_components(self, demo: gr.Blocks, runners: Iterable[Any] = ()) -> dict[str, Any]:
        """`<path>/<label>` -> component for every labelled input control (the first of a duplicate label wins,
        as A1111's dictionary does)."""
        scripted: dict[int, str] = {}
        for runner in runners:
            for script in getattr(runner, "scripts", []):
                tab = "img2img" if getattr(script, "is_img2img", False) else "txt2img"
                name = os.path.basename(script.filename or type(script).__name__)
                for control in script.controls or []:
                    scripted[id(control)] = f"customscript/{name}/{tab}"
        out: dict[str, Any] = {}
        for block in demo.blocks.values():
            label = getattr(block, "label", None)
            if not isinstance(block, _INPUTS) or not label:
                continue
            path = scripted.get(id(block)) or _tab_of(block)
            if path is None or path in _SKIP_TABS:
                continue
            out.setdefault(f"{path}/{label}", block)
        return out

    def apply(self, demo: gr.Blocks, runners: Iterable[Any] = ()) -> int:
        """Stored fields into the controls; the defaults of new ones into the file. Returns the fields applied."""
        applied = 0
        missing = False
        for key, component in self.keyed_components(demo, runners).items():
            for field in FIELDS:
                if field != "value" and field != "visible" and not isinstance(component, (gr.Slider, gr.Number)):
                    continue
                full = f"{key}/{field}"
                if full in self.ui_settings:
                    stored = self.ui_settings[full]
                    if _acceptable(component, field, stored):
                        if getattr(component, field, None) != stored:
                            setattr(component, field, stored)
                            applied += 1
                    else:
                        log.warning("ui-config.json: %s = %r does not fit that control; ignored", full, stored)
                    continue
                current = getattr(component, field, None)
                if callable(current) or not isinstance(current, (str, int, float, bool, list, type(None))):
                    continue
                self.ui_settings[full] = current
                missing = True
        if applied:
            demo.config = demo.get_config_file()  # the page is served from this config, built when the Blocks closed
        if missing and self.error is None:
            self.write()
        return applied

    def write(self) -> None:
        try:
            self.filename.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.filename.with_suffix(self.filename.suffix + ".tmp")
            tmp.write_text(json.dumps(self.ui_settings, indent=4, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.filename)
        except OSError as e:
            log.warning("Could not write %s: %s", self.filename, e)
