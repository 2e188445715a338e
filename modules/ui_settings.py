"""The Settings tab: one control per setting (A1111 ids `setting_<key>`), grouped by section; Apply saves."""

from __future__ import annotations

import html
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


def create_settings_tab(runtime: Runtime) -> None:
    opts = runtime.opts
    keys: list[str] = []
    components: list[Any] = []
    sections: dict[str, list[str]] = {}
    for key, info in opts.data_labels.items():
        if key in _SKIP or info.section[0] is None or isinstance(info.default, list):
            continue
        sections.setdefault(info.section[1] or info.section[0], []).append(key)

    with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
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

    def apply(*values: Any) -> str:
        changed, errors = [], []
        for key, value in zip(keys, values, strict=True):
            info = opts.data_labels[key]
            if isinstance(info.default, int) and not isinstance(info.default, bool) and isinstance(value, float):
                value = int(value)
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
        return f"<p>{html.escape(text)}</p>"

    submit.click(apply, inputs=components, outputs=[result], api_visibility="private")
