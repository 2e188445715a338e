"""Gradio 3 spellings in extension UI code: translated inside gradio3_compat(), untouched outside."""

from __future__ import annotations

import gradio as gr
import pytest

from modules.ui_gradio3_compat import gradio3_compat, is_active


def test_outside_the_context_gradio_is_untouched() -> None:
    assert not hasattr(gr, "Box") and not hasattr(gr.Button, "style") and not hasattr(gr.Dropdown, "update")
    with gr.Blocks(), pytest.raises(TypeError):
        gr.Button("x").click(fn=lambda: None, _js="f")


def test_spellings_translated_and_handlers_keep_them() -> None:
    with gr.Blocks() as demo, gradio3_compat(), gr.Box():
        image = gr.Image(source="upload", tool="sketch", type="pil", brush_radius=3)
        gallery = gr.Gallery().style(grid=4, height=120, full_width=True)
        dropdown = gr.Dropdown(choices=["a"], value="a")
        button = gr.Button("Go").style(full_width=True)
        dep = button.click(fn=lambda: gr.Dropdown.update(choices=["a", "b"]), _js="extFunction", inputs=[],
                           outputs=[dropdown])
        dep.then(fn=lambda: None, _js="extThen")
    assert not is_active() and not hasattr(gr, "Box") and not hasattr(gr.Button, "style")
    assert image.sources == ["upload"] and gallery.columns == 4 and gallery.height == 120
    fns = list(demo.fns.values())
    assert [f.js for f in fns] == ["extFunction", "extThen"]
    # The handler runs later, outside any UI building: the Gradio 3 call inside it still works.
    assert fns[0].fn() == {"__type__": "update", "choices": ["a", "b"]}
    assert not hasattr(gr.Dropdown, "update")  # and it cleaned up after itself


def test_nested_and_failing_code_restore_gradio() -> None:
    with pytest.raises(RuntimeError), gradio3_compat():
        with gradio3_compat():
            assert hasattr(gr, "Box")
        assert hasattr(gr, "Box")  # still inside the outer context
        raise RuntimeError("extension bug")
    assert not hasattr(gr, "Box") and not is_active()
