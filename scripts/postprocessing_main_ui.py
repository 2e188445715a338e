"""Built-in always-on script: the Extras operations chosen in `postprocessing_enable_in_main_ui`, applied to every
txt2img/img2img image before it is saved (A1111's ScriptPostprocessingForMainUI)."""

import gradio as gr

from modules import scripts, shared
from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessingRunner


def _upscaler_names():
    return [x.name for x in shared.sd_upscalers] or ["None"]


def _controls(name, elem_id):
    """{process() argument: control} for one operation, with the Extras tab's labels and defaults."""
    if name == "Simple Upscale":
        return {"upscale_by": gr.Slider(1.0, 8.0, step=0.05, value=2.0, label="Scale", elem_id=elem_id("scale")),
                "upscaler_name": gr.Dropdown(_upscaler_names(), value="None", label="Upscaler",
                                             elem_id=elem_id("upscaler"))}
    if name == "Upscale":
        with gr.Row():
            mode = gr.Radio(["Scale by", "Scale to"], value="Scale by", type="index", label="Resize mode",
                            elem_id=elem_id("resize_mode"))
            by = gr.Slider(1.0, 8.0, step=0.05, value=2.0, label="Resize", elem_id=elem_id("upscaling_resize"))
            side = gr.Number(label="Max side length", value=0, precision=0, elem_id=elem_id("max_side_length"))
        with gr.Row():
            w = gr.Slider(64, 8192, step=8, value=512, label="Width", elem_id=elem_id("upscaling_resize_w"))
            h = gr.Slider(64, 8192, step=8, value=512, label="Height", elem_id=elem_id("upscaling_resize_h"))
            crop = gr.Checkbox(label="Crop to fit", value=True, elem_id=elem_id("upscaling_crop"))
        with gr.Row():
            u1 = gr.Dropdown(_upscaler_names(), value="None", label="Upscaler 1", elem_id=elem_id("upscaler_1"))
            u2 = gr.Dropdown(_upscaler_names(), value="None", label="Upscaler 2", elem_id=elem_id("upscaler_2"))
            vis = gr.Slider(0.0, 1.0, step=0.001, value=0.0, label="Upscaler 2 visibility",
                            elem_id=elem_id("upscaler_2_visibility"))
        return {"upscale_mode": mode, "upscale_by": by, "max_side_length": side, "upscale_to_width": w,
                "upscale_to_height": h, "upscale_crop": crop, "upscaler_1_name": u1, "upscaler_2_name": u2,
                "upscaler_2_visibility": vis}
    if name == "GFPGAN":
        return {"gfpgan_visibility": gr.Slider(0.0, 1.0, step=0.001, value=1.0, label="GFPGAN visibility",
                                               elem_id=elem_id("gfpgan_visibility"))}
    if name == "CodeFormer":
        return {"codeformer_visibility": gr.Slider(0.0, 1.0, step=0.001, value=1.0, label="CodeFormer visibility",
                                                   elem_id=elem_id("codeformer_visibility")),
                "codeformer_weight": gr.Slider(0.0, 1.0, step=0.001, value=0.0,
                                               label="Weight (0 = maximum effect, 1 = minimum effect)",
                                               elem_id=elem_id("codeformer_weight"))}
    return None


class ScriptPostprocessingForMainUI(scripts.Script):
    def __init__(self):
        self.layout = []  # (operation name, argument name) of each control, in ui() order

    def title(self):
        return "Postprocessing"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        runner = ScriptPostprocessingRunner.with_installed_scripts(get_opt=shared.opts.get)
        wanted = set(shared.opts.data.get("postprocessing_enable_in_main_ui", []) or [])
        controls = []
        self.layout = []
        for op in runner.scripts_in_preferred_order(main_ui=True):
            if op.name not in wanted:
                continue
            slug = "".join(c if c.isalnum() else "_" for c in op.name.lower())
            with gr.Accordion(op.name, open=False, elem_id=self.elem_id(slug)):
                built = _controls(op.name, lambda item, slug=slug: self.elem_id(f"{slug}_{item}"))
                if built is None:  # an extension's operation brings its own controls, as in the Extras tab
                    built = op.ui() or {}
                if not built:
                    gr.Markdown(f"{op.name} has no settings here.")
                    built = {"enable": gr.State(True)}
            for arg, control in built.items():
                self.layout.append((op.name, arg))
                controls.append(control)
        return controls

    def postprocess_image(self, p, pp, *args):
        if not self.layout:
            return
        by_op = {}
        for (op, arg), value in zip(self.layout, args, strict=False):
            by_op.setdefault(op, {})[arg] = value
        image = PostprocessedImage(pp.image)
        image.runtime, image.state = getattr(p, "runtime", None), p.state
        ScriptPostprocessingRunner.with_installed_scripts(get_opt=p.opt).run(image, by_op, main_ui=True)
        pp.image = image.image
        p.extra_generation_params.update(image.info)
