"""List settings with choices (postprocessing operations) are multiselect controls on the Settings page."""

from __future__ import annotations

import gradio as gr


def test_postprocessing_lists_are_editable_with_every_operation(make_runtime) -> None:
    from modules.ui_settings import create_settings_tab

    rt = make_runtime()
    with gr.Blocks():
        tab = create_settings_tab(rt)
    control = tab["components"]["postprocessing_enable_in_main_ui"]
    assert isinstance(control, gr.Dropdown) and control.multiselect
    names = [c[0] for c in control.choices]
    assert {"Upscale", "Simple Upscale", "GFPGAN", "CodeFormer", "Auto focal point crop"} <= set(names)
    assert "quicksettings_list" not in tab["components"]  # edited by its own control, as before
