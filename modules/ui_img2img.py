"""L4 adapter (Gradio): the img2img tab with A1111's six modes and element ids; the handler builds Img2ImgParams
from the active mode's images and queues it through the same job runner as txt2img."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from modules import image_conditioning, img2img_batch, ui_common, ui_scripts
from modules.errors import ValidationError
from modules.params import Img2ImgParams
from modules.runtime import Runtime

MODES = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
MODE_IDS = ("img2img_img2img_tab", "img2img_img2img_sketch_tab", "img2img_inpaint_tab", "img2img_inpaint_sketch_tab",
            "img2img_inpaint_upload_tab", "img2img_batch_tab")
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREA = ("Whole picture", "Only masked")
FIELDS = ("mode", "init_img", "sketch", "init_img_with_mask", "inpaint_color_sketch", "inpaint_color_sketch_orig",
          "init_img_inpaint", "init_mask_inpaint", "batch_input_dir", "batch_output_dir", "batch_inpaint_mask_dir",
          "batch_use_png_info", "batch_png_info_props", "batch_png_info_dir", "resize_mode", "resize_by_tab",
          "scale_by", "mask_blur", "mask_alpha", "inpainting_mask_invert", "inpainting_fill", "inpaint_full_res",
          "inpaint_full_res_padding", "mask_grow", "soft_inpainting", "denoising_strength", "image_cfg_scale", "prompt", "negative_prompt",
          "sampler_name", "scheduler", "steps", "width", "height", "n_iter", "batch_size", "cfg_scale", "styles",
          *ui_common.SEED_FIELDS)


def _editor(elem_id: str, brush_color: str, fixed: bool, height: int, label: str) -> gr.ImageEditor:
    brush = gr.Brush(default_size=24, colors=[brush_color], default_color=brush_color,
                     color_mode="fixed" if fixed else "defaults")
    return gr.ImageEditor(label=label, elem_id=elem_id, type="pil", image_mode="RGBA", brush=brush,
                          height=height, sources=["upload", "clipboard"], layers=False,
                          transforms=(), eraser=gr.Eraser(default_size=24))


def _composite(value: Any) -> Image.Image | None:
    """The picture an editor shows (background with the strokes), or the plain image."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    image = value.get("composite") if isinstance(value, dict) else None
    return image if isinstance(image, Image.Image) else value.get("background") if isinstance(value, dict) else None


def _strokes_mask(value: Any) -> Image.Image | None:
    """White where the user painted on the editor's layer: the inpainting mask."""
    if not isinstance(value, dict):
        return None
    layers = [im for im in value.get("layers") or [] if isinstance(im, Image.Image)]
    if not layers:
        return None
    alpha = np.zeros(layers[0].size[::-1], dtype=np.uint8)
    for layer in layers:
        alpha = np.maximum(alpha, np.asarray(layer.convert("RGBA"))[..., 3])
    return Image.fromarray(np.where(alpha > 0, 255, 0).astype(np.uint8), "L")


def _background(value: Any) -> Image.Image | None:
    if isinstance(value, dict) and isinstance(value.get("background"), Image.Image):
        return value["background"]
    return _composite(value)


def images_for_mode(mode: int, v: dict[str, Any]) -> tuple[Image.Image | None, Image.Image | None, dict]:
    """(init image, mask, extra request fields) from the active mode's controls, as A1111's img2img handler."""
    extra: dict[str, Any] = {}
    if mode == 0:
        return _composite(v["init_img"]), None, extra
    if mode == 1:  # Sketch: the drawing is the init image
        return _composite(v["sketch"]), None, extra
    if mode == 2:  # Inpaint: the brush strokes are the mask
        return _background(v["init_img_with_mask"]), _strokes_mask(v["init_img_with_mask"]), extra
    if mode == 3:  # Inpaint sketch: coloured strokes are both the picture and the mask
        value = v["inpaint_color_sketch"]
        image, mask = _composite(value), _strokes_mask(value)
        alpha = float(v.get("mask_alpha") or 0)
        if image is not None and mask is not None and alpha > 0:
            # Mask transparency: the strokes are blended with the original under them.
            original = _background(value).convert("RGB").resize(image.size)
            blended = Image.blend(image.convert("RGB"), original, alpha / 100)
            image = Image.composite(blended, original, mask)
        return image, mask, extra
    if mode == 4:  # Inpaint upload: image and mask files
        mask = v["init_mask_inpaint"]
        return v["init_img_inpaint"], mask.convert("L") if isinstance(mask, Image.Image) else None, extra
    return None, None, extra


def build_params(v: dict[str, Any]) -> Img2ImgParams:
    """The request from the tab's values (Batch mode's folders are handled by the batch service)."""
    mode = int(v["mode"] or 0)
    image, mask, extra = images_for_mode(mode, v)
    if mode != 5 and image is None:
        raise ValidationError("init_images", f"{MODES[mode]}: upload an image first")
    width, height = int(v["width"]), int(v["height"])
    if v.get("resize_by_tab") and image is not None:  # "Resize by": the scale picks the size, multiple of 8
        scale = float(v.get("scale_by") or 1.0)
        width = max(64, int(image.width * scale) // 8 * 8)
        height = max(64, int(image.height * scale) // 8 * 8)
    return Img2ImgParams(
        prompt=v["prompt"] or "", negative_prompt=v["negative_prompt"] or "", styles=list(v["styles"] or []),
        sampler_name=v["sampler_name"], scheduler=v["scheduler"], steps=int(v["steps"]), width=width, height=height,
        n_iter=int(v["n_iter"]), batch_size=int(v["batch_size"]), cfg_scale=float(v["cfg_scale"]),
        denoising_strength=float(v["denoising_strength"]), image_cfg_scale=float(v["image_cfg_scale"]),
        init_images=[image] if image is not None else [], mask=mask,
        resize_mode=RESIZE_MODES.index(v["resize_mode"]) if v["resize_mode"] in RESIZE_MODES else 0,
        mask_blur=int(v["mask_blur"]), inpainting_mask_invert=MASK_MODES.index(v["inpainting_mask_invert"]),
        inpainting_fill=MASKED_CONTENT.index(v["inpainting_fill"]),
        inpaint_full_res=v["inpaint_full_res"] == INPAINT_AREA[1],
        inpaint_full_res_padding=int(v["inpaint_full_res_padding"]), mask_grow=int(v.get("mask_grow") or 0),
        soft_inpainting=bool(v.get("soft_inpainting")),
        **ui_common.seed_params(v), **extra)


def _ip2p_loaded(runtime: Runtime) -> bool:
    model = runtime.models.current
    return model is not None and image_conditioning.kind(model) == "instruct-pix2pix"


def _follow_ip2p(runtime: Runtime, slider: Any) -> None:
    """A1111 shows Image CFG Scale only while an instruct-pix2pix checkpoint is loaded; the checkpoint can change
    from quicksettings, the API or another page, so the tab polls (cheaply: an update only on a change)."""
    shown = gr.State(None)

    def on_tick(last: bool | None) -> tuple[Any, bool]:
        now = _ip2p_loaded(runtime)
        return (gr.skip(), now) if now == last else (gr.update(visible=now), now)

    gr.Timer(2.0).tick(on_tick, inputs=[shown], outputs=[slider, shown], show_progress="hidden", queue=False,
                       **ui_common.PRIVATE)


def create_img2img_tab(runtime: Runtime) -> dict[str, Any]:
    opts = runtime.opts
    c: dict[str, Any] = {}
    height = int(opts.get("img2img_editor_height", 720) or 720)
    mask_color = opts.get("img2img_inpaint_mask_brush_color", "#ffffff") or "#ffffff"
    sketch_color = opts.get("img2img_sketch_default_brush_color", "#ffffff") or "#ffffff"
    with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
        ui_common.top_row(runtime, "img2img", c)
        with gr.Row(equal_height=False, elem_id="img2img_settings_row"):
            with gr.Column(elem_id="img2img_settings"):
                c["mode"] = gr.State(0)
                with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
                    with gr.Tab("img2img", id="img2img_img2img_tab", elem_id="img2img_img2img_tab") as t0:
                        c["init_img"] = gr.Image(label="Image for img2img", elem_id="img2img_image", type="pil",
                                                 image_mode="RGBA", sources=["upload", "clipboard"],
                                                 height=height)
                    with gr.Tab("Sketch", id="img2img_img2img_sketch_tab", elem_id="img2img_img2img_sketch_tab") as t1:
                        c["sketch"] = _editor("img2img_sketch", sketch_color, False, height, "Image for img2img")
                    with gr.Tab("Inpaint", id="img2img_inpaint_tab", elem_id="img2img_inpaint_tab") as t2:
                        c["init_img_with_mask"] = _editor("img2maskimg", mask_color, True, height,
                                                          "Image for inpainting with mask")
                    with gr.Tab("Inpaint sketch", id="img2img_inpaint_sketch_tab",
                                elem_id="img2img_inpaint_sketch_tab") as t3:
                        c["inpaint_color_sketch"] = _editor("inpaint_sketch", sketch_color, False, height,
                                                            "Color sketch inpainting")
                        c["inpaint_color_sketch_orig"] = gr.State(None)
                    with gr.Tab("Inpaint upload", id="img2img_inpaint_upload_tab",
                                elem_id="img2img_inpaint_upload_tab") as t4:
                        c["init_img_inpaint"] = gr.Image(label="Image for img2img", type="pil",
                                                         elem_id="img_inpaint_base", sources=["upload", "clipboard"])
                        c["init_mask_inpaint"] = gr.Image(label="Mask", type="pil", image_mode="RGBA",
                                                          elem_id="img_inpaint_mask", sources=["upload", "clipboard"])
                    with gr.Tab("Batch", id="img2img_batch_tab", elem_id="img2img_batch_tab") as t5:
                        gr.HTML("<p>Process images in a folder on the same machine where the server is running."
                                "<br>Leave the output folder empty to save into the usual img2img folder.</p>")
                        c["batch_input_dir"] = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
                        c["batch_output_dir"] = gr.Textbox(label="Output directory",
                                                           elem_id="img2img_batch_output_dir")
                        c["batch_inpaint_mask_dir"] = gr.Textbox(label="Inpaint batch mask directory (required for "
                                                                 "inpaint batch processing only)",
                                                                 elem_id="img2img_batch_inpaint_mask_dir")
                        with gr.Accordion("PNG info", open=False):
                            c["batch_use_png_info"] = gr.Checkbox(label="Append png info to prompts",
                                                                  elem_id="img2img_batch_use_png_info")
                            c["batch_png_info_dir"] = gr.Textbox(label="PNG info directory", placeholder="Leave "
                                                                 "empty to use input directory",
                                                                 elem_id="img2img_batch_png_info_dir")
                            c["batch_png_info_props"] = gr.CheckboxGroup(list(img2img_batch.PNG_INFO_PROPS),
                                                                         label="Parameters to take from png info",
                                                                         elem_id="img2img_batch_png_info_props")
                for i, t in enumerate((t0, t1, t2, t3, t4, t5)):
                    t.select(lambda i=i: i, outputs=[c["mode"]], **ui_common.PRIVATE)
                c["resize_mode"] = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], label="Resize mode",
                                            elem_id="resize_mode")
                with gr.Group(visible=True, elem_id="inpaint_controls") as inpaint_controls:
                    with gr.Row():
                        c["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur",
                                                   elem_id="img2img_mask_blur")
                        c["mask_alpha"] = gr.Slider(0, 100, value=0, step=1, label="Mask transparency",
                                                    elem_id="img2img_mask_alpha")
                    c["inpainting_mask_invert"] = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode",
                                                           elem_id="img2img_mask_mode")
                    c["inpainting_fill"] = gr.Radio(list(MASKED_CONTENT), value=MASKED_CONTENT[1],
                                                    label="Masked content", elem_id="img2img_inpainting_fill")
                    with gr.Row():
                        c["inpaint_full_res"] = gr.Radio(list(INPAINT_AREA), value=INPAINT_AREA[0],
                                                         label="Inpaint area", elem_id="img2img_inpaint_full_res")
                        c["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4,
                                                                  label="Only masked padding, pixels",
                                                                  elem_id="img2img_inpaint_full_res_padding")
                    with gr.Row():
                        c["mask_grow"] = gr.Slider(-64, 64, value=0, step=1, label="Grow / shrink mask, pixels",
                                                   elem_id="img2img_mask_grow")
                        c["soft_inpainting"] = gr.Checkbox(label="Soft inpainting", value=False,
                                                           elem_id="soft_inpainting_enabled",
                                                           info="The blurred mask edge as a gradual strength")
                ui_common.sampler_row("img2img", c)
                c["resize_by_tab"] = gr.State(False)
                with gr.Tabs(elem_id="img2img_tabs_resize"):
                    with gr.Tab("Resize to", elem_id="img2img_tab_resize_to") as to_tab:
                        ui_common.size_and_batch_row("img2img", c)
                    with gr.Tab("Resize by", elem_id="img2img_tab_resize_by") as by_tab:
                        c["scale_by"] = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label="Scale",
                                                  elem_id="img2img_scale")
                        c["scale_by_size"] = gr.HTML(elem_id="img2img_scale_resolution_preview")
                to_tab.select(lambda: False, outputs=[c["resize_by_tab"]], **ui_common.PRIVATE)
                by_tab.select(lambda: True, outputs=[c["resize_by_tab"]], **ui_common.PRIVATE)
                ui_common.cfg_row("img2img", c)
                c["image_cfg_scale"] = gr.Slider(0, 3.0, value=1.5, step=0.05, label="Image CFG Scale",
                                                 elem_id="img2img_image_cfg_scale", visible=_ip2p_loaded(runtime))
                _follow_ip2p(runtime, c["image_cfg_scale"])
                c["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                                    elem_id="img2img_denoising_strength")
                ui_common.seed_rows("img2img", c)
                c["script_inputs"] = ui_scripts.create_script_ui(runtime.scripts_img2img, is_img2img=True)
            with gr.Column(elem_id="img2img_results"):
                ui_common.result_column("img2img", c)
                ui_common.send_buttons("img2img", c)
    c["mode_tabs"] = mode_tabs
    c["inpaint_controls"] = inpaint_controls
    _wire(runtime, c)
    return c


def _scaled_size_text(image: Any, scale: float) -> str:
    image = _composite(image)
    if image is None:
        return ""
    w, h = max(64, int(image.width * scale) // 8 * 8), max(64, int(image.height * scale) // 8 * 8)
    return f"<p>Resize: from {image.width}x{image.height} to {w}x{h}</p>"


def _wire(runtime: Runtime, c: dict[str, Any]) -> None:
    fields = list(FIELDS)
    gen_inputs = [c[f] for f in fields] + c["script_inputs"]
    outputs = [c[k] for k in ui_common.RESULT_OUTPUTS]

    def generate(request: gr.Request, *values: Any) -> Any:
        v = dict(zip(fields, values[:len(fields)], strict=True))
        script_args = values[len(fields):]
        if int(v["mode"] or 0) == 5:
            yield from _run_batch(runtime, v, script_args, request)
            return
        yield from ui_common.run_generation(runtime, lambda: build_params(v), script_args, request=request)

    # As txt2img: a second click during a run queues another job; Ctrl+Enter comes from javascript/shortcuts.js.
    c["generate"].click(generate, inputs=gen_inputs, outputs=outputs, show_progress="hidden", concurrency_limit=None,
                        trigger_mode="multiple", **ui_common.PRIVATE)
    ui_common.wire_common(runtime, c)
    c["scale_by"].change(_scaled_size_text, inputs=[c["init_img"], c["scale_by"]], outputs=[c["scale_by_size"]],
                         show_progress="hidden", **ui_common.PRIVATE)
    from modules.ui_toprow import wire_token_counters

    wire_token_counters(runtime, c)
    _wire_paste(runtime, c)


def _wire_paste(runtime: Runtime, c: dict[str, Any]) -> None:
    """↙️ reads an infotext from the prompt box into this tab's fields, as txt2img's (the same parser); keys
    only txt2img has (hires fix, refiner) are left out. Stored as `paste_fn`/`paste_outputs` for Send buttons."""
    from modules.ui_txt2img import PASTE_FIELDS, paste_values

    names = [f for f in PASTE_FIELDS if f in c]

    def paste(text: str) -> tuple:
        values = dict(zip(PASTE_FIELDS, paste_values(text, runtime), strict=True))
        return tuple(values[f] for f in names)

    c["paste_outputs"] = [c[f] for f in names]
    c["paste_fn"] = paste
    c["paste"].click(paste, inputs=[c["prompt"]], outputs=c["paste_outputs"], **ui_common.PRIVATE)


def _run_batch(runtime: Runtime, v: dict[str, Any], script_args: tuple, request: Any = None) -> Any:
    """Batch mode: one queued job over the folder (the same job body runs once per image)."""
    blank = Image.new("RGB", (int(v["width"]), int(v["height"])))  # each file replaces it
    batch = {"input_dir": v["batch_input_dir"] or "", "output_dir": v["batch_output_dir"] or "",
             "mask_dir": v["batch_inpaint_mask_dir"] or "", "use_png_info": bool(v["batch_use_png_info"]),
             "png_info_props": list(v["batch_png_info_props"] or []), "png_info_dir": v["batch_png_info_dir"] or ""}
    yield from ui_common.run_generation(runtime, lambda: build_params({**v, "mode": 0, "init_img": blank}),
                                        script_args, batch=batch, request=request)
