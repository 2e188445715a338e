"""Built-in always-on script: adds a "Note" to the infotext of every image, using only the A1111 public API."""

import gradio as gr

from modules import scripts, shared
from modules.ui_components import InputAccordion


class InfotextNoteScript(scripts.Script):
    sorting_priority = 20

    def title(self):
        return "Infotext note"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with InputAccordion(False, label="Infotext note", elem_id=self.elem_id("enable")) as enabled:
            note = gr.Textbox(label="Note", lines=1, elem_id=self.elem_id("text"),
                              placeholder="Written into the infotext as Note: ...")
        return [enabled, note]

    def process(self, p, enabled=False, note=""):
        note = (note or "").strip() or shared.opts.data.get("infotext_note_default", "")
        if enabled and note:
            p.extra_generation_params["Note"] = note


def on_ui_settings():
    section = ("infotext_note", "Infotext note")
    shared.opts.add_option("infotext_note_default", shared.OptionInfo(
        "", "Note used when the Infotext note box is empty", section=section))


from modules import script_callbacks  # noqa: E402 - A1111 extensions conventionally register at the end

script_callbacks.on_ui_settings(on_ui_settings)
