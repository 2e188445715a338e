"""The Settings tab: one control per setting (A1111 ids `setting_<key>`), grouped by section; Apply saves."""

from __future__ import annotations

import html
import json
from typing import Any

import gradio as gr

from modules.errors import SettingsError
from modules.options import OptionInfo
from modules.runtime import Runtime

_SKIP = {"sd_model_checkpoint", "sd_checkpoint_hash", "quicksettings_list", "hide_samplers"}


def _component(key: str, info: OptionInfo, value: Any, frozen: bool) -> Any:
    args = info.component_args() if callable(info.component_args) else dict(info.component_args or {})
    common = {"label": info.label or key, "elem_id": f"setting_{key}", "interactive": not frozen,
              "info": info.info_text or None}
    choices = info.choices() if callable(info.choices) else info.choices
    if isinstance(info.default, bool):
        return gr.Checkbox(value=bool(value), **common)
    if isinstance(info.default, list) and choices:  # e.g. postprocessing_enable_in_main_ui: pick several
        return gr.Dropdown(choices=list(choices), value=list(value or []), multiselect=True, **common)
    if choices and info.component == "radio":
        return gr.Radio(choices=list(choices), value=value, **common)
    if choices:
        return gr.Dropdown(choices=list(choices), value=value, **common)
    if info.component == "slider" and {"minimum", "maximum"} <= set(args):
        return gr.Slider(value=value, minimum=args["minimum"], maximum=args["maximum"], step=args.get("step", 1),
                         **common)
    if isinstance(info.default, (int, float)):
        return gr.Number(value=value, precision=0 if isinstance(info.default, int) else None, **common)
    return gr.Textbox(value="" if value is None else str(value), lines=1, **common)


def _normalized(info: OptionInfo, value: Any) -> Any:
    """The value as the store keeps it: sliders and number boxes send floats for integer settings."""
    if isinstance(info.default, int) and not isinstance(info.default, bool) and isinstance(value, float) \
            and value.is_integer():
        return int(value)
    return value


def create_settings_tab(runtime: Runtime) -> dict[str, Any]:
    """Build the tab; returns `load` (event function), its `outputs`, and the components by key."""
    opts = runtime.opts
    keys: list[str] = []
    components: list[Any] = []
    sections: dict[str, list[str]] = {}
    for key, info in opts.data_labels.items():
        if key in _SKIP or info.section[0] is None or (isinstance(info.default, list) and not info.choices):
            continue
        sections.setdefault(info.section[1] or info.section[0], []).append(key)

    with gr.Tab("Settings", id="settings", elem_id="tab_settings") as tab:
        with gr.Row():
            submit = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        result = gr.HTML(elem_id="settings_result")
        if runtime.opts.frozen_all:
            gr.HTML("<p>Settings are frozen by --freeze-settings.</p>")
        for title, section_keys in sections.items():
            with gr.Accordion(title, open=False, elem_id=f"settings_section_{section_keys[0]}"):
                for key in section_keys:
                    keys.append(key)
                    components.append(_component(key, opts.data_labels[key], opts.get(key), opts.is_frozen(key)))
        # What this page last showed for each key: Apply writes only the keys whose control differs from it,
        # so a value changed elsewhere (API, quicksettings, another tab) is never put back by a stale control.
        shown = gr.State({})

    def stored() -> dict[str, Any]:
        return {key: opts.get(key) for key in keys}

    def display(key: str, value: Any) -> Any:
        return "" if value is None and not opts.data_labels[key].choices else value

    def load() -> tuple:
        now = stored()
        return (now, *(display(k, now[k]) for k in keys))

    def refresh(before: dict[str, Any], *values: Any) -> tuple:
        """On entering the tab: show current values, except in controls the user has edited and not applied."""
        now = stored()
        out, seen = [], dict(now)
        for key, value in zip(keys, values, strict=True):
            info = opts.data_labels[key]
            if key in before and _normalized(info, value) != before[key]:
                out.append(gr.skip())
                seen[key] = before[key]
            else:
                out.append(display(key, now[key]))
        return (seen, *out)

    def apply(before: dict[str, Any], *values: Any) -> tuple:
        changed, errors = [], []
        for key, value in zip(keys, values, strict=True):
            info = opts.data_labels[key]
            value = _normalized(info, value)
            if key in before and value == before[key]:
                continue  # not touched on this page
            if opts.is_frozen(key):
                continue
            try:
                if opts.set(key, value):
                    changed.append(key)
            except SettingsError as e:
                errors.append(str(e))
        if changed:
            runtime.save_settings()
        text = f"{len(changed)} settings changed" + (f": {', '.join(changed)}." if changed else ".")
        if errors:
            text += " Not applied: " + "; ".join(errors)
        now = stored()
        return (f"<p>{html.escape(text)}</p>", now, *(display(k, now[k]) for k in keys))

    private = {"api_visibility": "private"}
    applied = submit.click(apply, inputs=[shown, *components], outputs=[result, shown, *components], **private)
    tab.select(refresh, inputs=[shown, *components], outputs=[shown, *components], show_progress="hidden",
               **private)
    return {"load": load, "outputs": [shown, *components], "components": dict(zip(keys, components, strict=True)),
            "applied": applied}


def options_html(runtime: Runtime) -> str:
    """Every setting as JSON in a data attribute, for page scripts (keyedit_*...): A1111's settings_json."""
    data = {key: runtime.opts.get(key) for key in runtime.opts.data_labels}
    return f'<div data-opts="{html.escape(json.dumps(data, default=str), quote=True)}"></div>'
