"""on_before_component / on_after_component fire once per component built inside component_callbacks()."""

from __future__ import annotations

import gradio as gr

from modules import script_callbacks, scripts
from modules.ui_component_callbacks import component_callbacks


class _Watcher(scripts.Script):
    def __init__(self) -> None:
        self.after: list[str] = []

    def title(self) -> str:
        return "watcher"

    def after_component(self, component, **kwargs) -> None:
        self.after.append(kwargs.get("elem_id"))


def test_callbacks_fire_once_per_component_and_only_inside() -> None:
    seen: list[tuple[str, str | None]] = []
    script_callbacks.on_before_component(lambda c, **kw: seen.append(("before", kw.get("elem_id"))))
    script_callbacks.on_after_component(lambda c, **kw: seen.append(("after", kw.get("elem_id"))))
    script_callbacks.on_after_component(lambda c, **kw: 1 / 0)  # a broken extension does not stop the page
    watcher = _Watcher()
    runner = scripts.ScriptRunner([watcher])
    try:
        with gr.Blocks(), component_callbacks(lambda: [runner]):
            with gr.Row(elem_id="row_x"):
                prompt = gr.Textbox(label="Prompt", elem_id="txt2img_prompt")
            gr.Button("Go", elem_id="go")
        with gr.Blocks():
            gr.Textbox(elem_id="outside")
    finally:
        script_callbacks.clear_callbacks()
    afters = [e for hook, e in seen if hook == "after" and e]
    assert sorted(afters) == ["go", "row_x", "txt2img_prompt"]  # once each, though constructors call super()
    assert seen.index(("before", "txt2img_prompt")) < seen.index(("after", "txt2img_prompt"))
    assert len([s for s in seen if s[0] == "before"]) == len([s for s in seen if s[0] == "after"])
    assert "outside" not in [s[1] for s in seen] and "txt2img_prompt" in watcher.after
    assert isinstance(prompt, gr.Textbox)
