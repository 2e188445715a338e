"""Built-in script "Prompt matrix": every combination of the |-separated prompt parts, in one labelled grid."""

import gradio as gr

from modules import processing, prompt_matrix, scripts


class Script(scripts.Script):
    def title(self):
        return "Prompt matrix"

    def ui(self, is_img2img):
        gr.HTML('<p style="margin-bottom:0.75em">Separate the parts with <code>|</code>: the first part is in '
                'every picture, each other part is on or off (2<sup>n</sup> pictures for n parts).</p>')
        with gr.Row():
            put_at_start = gr.Checkbox(label="Put variable parts at start of prompt", value=False,
                                       elem_id=self.elem_id("put_at_start"))
            different_seeds = gr.Checkbox(label="Use different seed for each picture", value=False,
                                          elem_id=self.elem_id("different_seeds"))
        with gr.Row():
            prompt_type = gr.Radio(["positive", "negative"], label="Select prompt", value="positive",
                                   elem_id=self.elem_id("prompt_type"))
            variations_delimiter = gr.Radio(["comma", "space"], label="Select joining char", value="comma",
                                            elem_id=self.elem_id("variations_delimiter"))
        margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size]

    def run(self, p, put_at_start=False, different_seeds=False, prompt_type="positive",
            variations_delimiter="comma", margin_size=0):
        return prompt_matrix.run(p, processing.process_images, put_at_start, different_seeds, prompt_type,
                                 variations_delimiter, margin_size)
