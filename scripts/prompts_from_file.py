"""Built-in script "Prompts from file or textbox": one job per line, with A1111's --option line syntax."""

from pathlib import Path

import gradio as gr

from modules import processing, prompts_from_file, scripts


def load_prompt_file(file):
    """An uploaded text file fills the textbox (UTF-8; anything else is named, not guessed)."""
    if file is None:
        return None, gr.update(), gr.update()
    data = file if isinstance(file, bytes) else Path(getattr(file, "name", file)).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        gr.Warning("The uploaded file is not UTF-8 text; save it as UTF-8 and upload it again.")
        return None, gr.update(), gr.update()
    lines = [x.strip() for x in text.splitlines()]
    return None, "\n".join(lines), gr.update(lines=7)


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def ui(self, is_img2img):
        checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False,
                                       elem_id=self.elem_id("checkbox_iterate"))
        checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False,
                                             elem_id=self.elem_id("checkbox_iterate_batch"))
        prompt_position = gr.Radio(["start", "end"], label="Insert prompts at the", value="start",
                                   elem_id=self.elem_id("prompt_position"))
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=1, elem_id=self.elem_id("prompt_txt"),
                                placeholder='one prompt per line, or: --prompt "a cat" --steps 10 --seed 5')
        file = gr.File(label="Upload prompt inputs", type="binary", elem_id=self.elem_id("file"))
        file.change(fn=load_prompt_file, inputs=[file], outputs=[file, prompt_txt, prompt_txt],
                    show_progress="hidden")
        prompt_txt.change(lambda tb: gr.update(lines=7) if "\n" in (tb or "") else gr.update(lines=2),
                          inputs=[prompt_txt], outputs=[prompt_txt], show_progress="hidden")
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p, checkbox_iterate=False, checkbox_iterate_batch=False, prompt_position="start", prompt_txt=""):
        return prompts_from_file.run(p, processing.process_images, checkbox_iterate, checkbox_iterate_batch,
                                     prompt_position, prompt_txt)
