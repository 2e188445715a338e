"""Script UIs in a generation tab: the Script dropdown, selectable scripts' controls and always-on sections."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from modules.scripts import Script, ScriptRunner, describe_script

log = logging.getLogger(__name__)


def _controls(script: Script, is_img2img: bool, errors: list[str]) -> list[Any]:
    try:
        controls = script.ui(is_img2img)
    except Exception as e:  # a broken UI must not take the page down; the script just gets no arguments
        msg = f"Error creating the UI of {describe_script(script)}: {type(e).__name__}: {e}"
        log.exception(msg)
        errors.append(msg)
        return []
    if controls is None:
        return []
    if isinstance(controls, dict):  # A1111 postprocessing style
        controls = list(controls.values())
    if not isinstance(controls, (list, tuple)):
        controls = [controls]
    return list(controls)


def create_script_ui(runner: ScriptRunner, is_img2img: bool = False) -> list[Any]:
    """Build every script's controls (A1111's setup_ui); returns the runner's inputs (index 0 = Script dropdown).

    Each script gets `args_from`/`args_to`, the slice of these inputs its hooks receive, exactly as A1111 lays
    them out, so `script_args` from the API and from this page line up.
    """
    tab = "img2img" if is_img2img else "txt2img"
    sizes: dict[int, int] = {}
    errors = runner.errors
    for script in runner.alwayson_scripts:
        with gr.Group(elem_id=f"{tab}_script_container_{id(script)}", elem_classes=["alwayson-script"]) as group:
            controls = _controls(script, is_img2img, errors)
        script.group, script.controls = group, controls
        sizes[id(script)] = len(controls)
    selectable = runner.selectable_scripts
    dropdown = gr.Dropdown(["None", *runner.titles], value="None", type="index", label="Script",
                           elem_id=f"{tab}_script_index" if is_img2img else "script_list",
                           visible=bool(selectable))
    groups = []
    for script in selectable:
        with gr.Group(visible=False, elem_classes=["selectable-script"]) as group:
            controls = _controls(script, is_img2img, errors)
        script.group, script.controls = group, controls
        groups.append(group)
        sizes[id(script)] = len(controls)

    if groups:
        def show(index: int | None) -> list[Any]:
            return [gr.update(visible=(index or 0) == i + 1) for i in range(len(groups))]

        dropdown.change(show, inputs=[dropdown], outputs=groups, api_visibility="private", queue=False)
    runner.layout_args(sizes)
    inputs = [dropdown]
    for script in runner.scripts:  # layout_args gave consecutive slices in this same order
        inputs += script.controls
    runner.inputs = inputs
    return inputs


def layout_without_page(runner: ScriptRunner, is_img2img: bool = False) -> list[Any]:
    """With --nowebui there is no page, but script_args over the API still need A1111's argument layout."""
    with gr.Blocks():
        return create_script_ui(runner, is_img2img)
