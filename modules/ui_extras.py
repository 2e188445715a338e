"""The Extras tab: A1111's layout and element ids; the handler builds an ExtrasJob, queues `run_extras`
on the shared job queue and shows progress per tile."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Iterator
from typing import Any

import gradio as gr
from pydantic import ValidationError as PydanticValidationError

from modules import job_runner
from modules.errors import WebUIError
from modules.params_extras import EXTRAS_BATCH, EXTRAS_DIRECTORY, EXTRAS_SINGLE, ExtrasJob, ExtrasOptions
from modules.runtime import Runtime

log = logging.getLogger(__name__)

CROP_FIELDS = ("focal_enabled", "focal_face_weight", "focal_entropy_weight", "focal_edges_weight", "focal_debug",
               "multicrop_enabled", "multicrop_mindim", "multicrop_maxdim", "multicrop_minarea", "multicrop_maxarea",
               "multicrop_objective", "multicrop_threshold")
TAB_MODES = {"extras_single_tab": EXTRAS_SINGLE, "extras_batch_process_tab": EXTRAS_BATCH,
             "extras_batch_directory_tab": EXTRAS_DIRECTORY}


def _error_html(text: str) -> str:
    return f'<div class="error">{html.escape(text)}</div>'


def progress_html(fraction: float, text: str) -> str:
    pct = max(0.0, min(fraction, 1.0)) * 100
    return (f'<div class="progressDiv"><div class="progress" style="width:{pct:.1f}%">'
            f'<span class="progress-text">{html.escape(text)}</span></div></div>')


def _status(runtime: Runtime, job: Any) -> tuple[float, str]:
    if job.status == "queued":
        return 0.0, f"In queue, position {runtime.jobs.position(job)}"
    st = job.state
    count = max(st.job_count, 1)
    text = f"Image {min(st.job_no + 1, count)}/{count}"
    if st.sampling_steps > 1:
        text += f", tile {st.sampling_step}/{st.sampling_steps}"
    if st.job:
        text += f" ({st.job})"
    return st.progress, text


def problems_html(runtime: Runtime) -> str:
    """Model files that are listed but cannot be used, and face restorers whose files are missing."""
    from modules.face_restoration import restorers_for
    from modules.upscaler import registry_for

    reg = registry_for(runtime)
    lines = [f"{d.name}: {d.error}" for d in reg.problems()] + list(reg.warnings)
    for r in restorers_for(runtime):
        status = getattr(r, "status", None)
        message = status() if callable(status) else None
        if message:
            lines.append(message)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<div class="sd-status sd-status-warning extras-problems"><ul>{items}</ul></div>'


def _open_upload(path: str) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            copy = im.copy()
            copy.info = dict(im.info)
            return copy
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise WebUIError(f"{os.path.basename(path)} is not a readable image ({type(e).__name__}: {e})") from None


def build_job(runtime: Runtime, mode: int, v: dict[str, Any]) -> ExtrasJob:
    """Component values -> ExtrasJob (raises WebUIError / pydantic errors with readable messages)."""
    def enabled(key: str) -> bool:
        return bool(v.get(key))

    options = ExtrasOptions(
        resize_mode=1 if v["upscale_mode"] == "Scale to" else 0,
        show_extras_results=bool(v["show_extras_results"]),
        gfpgan_visibility=float(v["gfpgan_visibility"]) if enabled("gfpgan_enabled") else 0.0,
        codeformer_visibility=float(v["codeformer_visibility"]) if enabled("codeformer_enabled") else 0.0,
        codeformer_weight=float(v["codeformer_weight"]),
        upscaling_resize=float(v["upscaling_resize"]), upscaling_resize_w=int(v["upscaling_resize_w"]),
        upscaling_resize_h=int(v["upscaling_resize_h"]), upscaling_crop=bool(v["upscaling_crop"]),
        upscaler_1=v["upscaler_1"] if enabled("upscale_enabled") else "None", upscaler_2=v["upscaler_2"] or "None",
        extras_upscaler_2_visibility=float(v["upscaler_2_visibility"]))
    images: list[tuple[Any, str | None]] = []
    if mode == EXTRAS_SINGLE:
        if not v["image"]:
            raise WebUIError("Upload an image first.")
        images = [(_open_upload(v["image"]), None)]
    elif mode == EXTRAS_BATCH:
        files = v["image_batch"] or []
        if not files:
            raise WebUIError("Upload one or more images first.")
        for f in files:
            path = f if isinstance(f, str) else getattr(f, "name", None) or f["path"]
            images.append((_open_upload(path), os.path.basename(path)))
    scripts_args = {
        "Split oversized images": {"enable": enabled("split_enabled"), "split_threshold": float(v["split_threshold"]),
                                   "overlap_ratio": float(v["overlap_ratio"])},
        "Create flipped copies": {"enable": enabled("flip_enabled"), "option": list(v["flip_option"] or [])},
        "Auto focal point crop": {"enable": enabled("focal_enabled"),
                                  "face_weight": float(v.get("focal_face_weight", 0.9)),
                                  "entropy_weight": float(v.get("focal_entropy_weight", 0.15)),
                                  "edges_weight": float(v.get("focal_edges_weight", 0.5)),
                                  "debug": enabled("focal_debug")},
        "Auto-sized crop": {"enable": enabled("multicrop_enabled"), "mindim": int(v.get("multicrop_mindim", 384)),
                            "maxdim": int(v.get("multicrop_maxdim", 768)),
                            "minarea": int(v.get("multicrop_minarea", 64 * 64)),
                            "maxarea": int(v.get("multicrop_maxarea", 640 * 640)),
                            "objective": v.get("multicrop_objective") or "Maximize area",
                            "threshold": float(v.get("multicrop_threshold", 0.1))},
    }
    return ExtrasJob(options=options, extras_mode=mode, images=images, input_dir=v["input_dir"] or "",
                     output_dir=v["output_dir"] or "", save_output=True, max_side_length=int(v["max_side_length"] or 0),
                     scripts_args=scripts_args)


def create_extras_tab(runtime: Runtime) -> dict[str, Any]:
    from modules.upscaler import registry_for

    names = registry_for(runtime).names()
    c: dict[str, Any] = {}
    hide_dirs = bool(getattr(runtime.cmd_opts, "hide_ui_dir_config", False))
    with gr.Tab("Extras", id="extras", elem_id="tab_extras"), gr.Row(equal_height=False, elem_id="extras_2img_row"):
        with gr.Column(variant="compact"):
            c["mode"] = gr.State("extras_single_tab")
            with gr.Tabs(elem_id="mode_extras") as c["mode_tabs"]:
                with gr.Tab("Single Image", id="single_image", elem_id="extras_single_tab") as tab_single:
                    c["image"] = gr.Image(label="Source", type="filepath", image_mode=None, elem_id="extras_image",
                                          sources=["upload", "clipboard"], height=360)
                with gr.Tab("Batch Process", id="batch_process", elem_id="extras_batch_process_tab") as tab_batch:
                    c["image_batch"] = gr.File(label="Batch Process", file_count="multiple", type="filepath",
                                               elem_id="extras_image_batch")
                with gr.Tab("Batch from Directory", id="batch_from_directory", elem_id="extras_batch_directory_tab",
                            visible=not hide_dirs) as tab_dir:
                    c["input_dir"] = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                                placeholder="A directory on the same machine where the server is "
                                                            "running.")
                    c["output_dir"] = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                                 placeholder="Leave blank to save images to the default path.")
                    c["show_extras_results"] = gr.Checkbox(label="Show result images", value=True,
                                                           elem_id="extras_show_extras_results")
            with gr.Row(elem_id="extras_toprow"):
                c["interrupt"] = gr.Button("Interrupt", elem_id="extras_interrupt")
                c["skip"] = gr.Button("Skip", elem_id="extras_skip")
                c["generate"] = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            c["problems"] = gr.HTML(problems_html(runtime), elem_id="extras_problems")
            with gr.Accordion("Upscale", open=True, elem_id="extras_upscale"):
                c["upscale_enabled"] = gr.Checkbox(label="Enable", value=True, elem_id="extras_upscale_enabled")
                c["upscale_mode"] = gr.Radio(["Scale by", "Scale to"], value="Scale by", label="Resize mode",
                                             elem_id="extras_resize_mode")
                with gr.Row():
                    c["upscaling_resize"] = gr.Slider(1.0, 8.0, step=0.05, value=4, label="Resize",
                                                      elem_id="extras_upscaling_resize")
                    c["max_side_length"] = gr.Number(label="Max side length", value=0, precision=0,
                                                     elem_id="extras_upscale_max_side_length")
                with gr.Row():
                    c["upscaling_resize_w"] = gr.Slider(64, 8192, step=8, value=512, label="Width",
                                                        elem_id="extras_upscaling_resize_w")
                    c["upscaling_resize_h"] = gr.Slider(64, 8192, step=8, value=512, label="Height",
                                                        elem_id="extras_upscaling_resize_h")
                    c["swap"] = gr.Button("⇅", elem_id="upscaling_res_switch_btn", elem_classes=["tool"], scale=0,
                                          min_width=40)
                    c["upscaling_crop"] = gr.Checkbox(label="Crop to fit", value=True, elem_id="extras_upscaling_crop")
                with gr.Row():
                    c["upscaler_1"] = gr.Dropdown(names, value="None", label="Upscaler 1", elem_id="extras_upscaler_1")
                    c["upscaler_2"] = gr.Dropdown(names, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
                    c["upscaler_2_visibility"] = gr.Slider(0.0, 1.0, step=0.001, value=0.0,
                                                           label="Upscaler 2 visibility",
                                                           elem_id="extras_upscaler_2_visibility")
            with gr.Accordion("GFPGAN", open=False, elem_id="extras_gfpgan"):
                c["gfpgan_enabled"] = gr.Checkbox(label="Enable", value=False, elem_id="extras_gfpgan_enabled")
                c["gfpgan_visibility"] = gr.Slider(0.0, 1.0, step=0.001, value=1.0, label="Visibility",
                                                   elem_id="extras_gfpgan_visibility")
            with gr.Accordion("CodeFormer", open=False, elem_id="extras_codeformer"):
                c["codeformer_enabled"] = gr.Checkbox(label="Enable", value=False, elem_id="extras_codeformer_enabled")
                c["codeformer_visibility"] = gr.Slider(0.0, 1.0, step=0.001, value=1.0, label="Visibility",
                                                       elem_id="extras_codeformer_visibility")
                c["codeformer_weight"] = gr.Slider(0.0, 1.0, step=0.001, value=0.0,
                                                   label="Weight (0 = maximum effect, 1 = minimum effect)",
                                                   elem_id="extras_codeformer_weight")
            with gr.Accordion("Split oversized images", open=False, elem_id="postprocess_split"):
                c["split_enabled"] = gr.Checkbox(label="Enable", value=False, elem_id="postprocess_split_enabled")
                c["split_threshold"] = gr.Slider(0.0, 1.0, step=0.05, value=0.5, label="Threshold",
                                                 elem_id="postprocess_split_threshold")
                c["overlap_ratio"] = gr.Slider(0.0, 0.9, step=0.05, value=0.2, label="Overlap ratio",
                                               elem_id="postprocess_overlap_ratio")
            with gr.Accordion("Auto focal point crop", open=False, elem_id="postprocess_focal_crop"):
                c["focal_enabled"] = gr.Checkbox(label="Enable", value=False,
                                                 elem_id="postprocess_focal_crop_enabled")
                c["focal_face_weight"] = gr.Slider(0.0, 1.0, step=0.05, value=0.9, label="Focal point face weight",
                                                   elem_id="postprocess_focal_crop_face_weight")
                c["focal_entropy_weight"] = gr.Slider(0.0, 1.0, step=0.05, value=0.15,
                                                      label="Focal point entropy weight",
                                                      elem_id="postprocess_focal_crop_entropy_weight")
                c["focal_edges_weight"] = gr.Slider(0.0, 1.0, step=0.05, value=0.5, label="Focal point edges weight",
                                                    elem_id="postprocess_focal_crop_edges_weight")
                c["focal_debug"] = gr.Checkbox(label="Create debug image", value=False,
                                               elem_id="train_process_focal_crop_debug")
            with gr.Accordion("Auto-sized crop", open=False, elem_id="postprocess_multicrop"):
                gr.Markdown("Each image is center-cropped with an automatically chosen width and height.")
                c["multicrop_enabled"] = gr.Checkbox(label="Enable", value=False,
                                                     elem_id="postprocess_multicrop_enabled")
                with gr.Row():
                    c["multicrop_mindim"] = gr.Slider(64, 2048, step=8, value=384, label="Dimension lower bound",
                                                      elem_id="postprocess_multicrop_mindim")
                    c["multicrop_maxdim"] = gr.Slider(64, 2048, step=8, value=768, label="Dimension upper bound",
                                                      elem_id="postprocess_multicrop_maxdim")
                with gr.Row():
                    c["multicrop_minarea"] = gr.Slider(64 * 64, 2048 * 2048, step=1, value=64 * 64,
                                                       label="Area lower bound", elem_id="postprocess_multicrop_minarea")
                    c["multicrop_maxarea"] = gr.Slider(64 * 64, 2048 * 2048, step=1, value=640 * 640,
                                                       label="Area upper bound", elem_id="postprocess_multicrop_maxarea")
                with gr.Row():
                    c["multicrop_objective"] = gr.Radio(["Maximize area", "Minimize error"], value="Maximize area",
                                                        label="Resizing objective",
                                                        elem_id="postprocess_multicrop_objective")
                    c["multicrop_threshold"] = gr.Slider(0, 1, step=0.01, value=0.1, label="Error threshold",
                                                         elem_id="postprocess_multicrop_threshold")
            with gr.Accordion("Create flipped copies", open=False, elem_id="postprocess_flip"):
                c["flip_enabled"] = gr.Checkbox(label="Enable", value=False, elem_id="postprocess_flip_enabled")
                c["flip_option"] = gr.CheckboxGroup(["Horizontal", "Vertical", "Both"], value=["Horizontal"],
                                                    label="Create flipped copies", elem_id="postprocess_flip_option")
        with gr.Column(elem_id="extras_results"):
            c["progress"] = gr.HTML(elem_id="extras_progress")
            c["gallery"] = gr.Gallery(label="Result", show_label=False, elem_id="extras_gallery", columns=4,
                                      format="png", preview=True, height="auto")
            c["task_id"] = gr.Textbox(visible=False, elem_id="extras_task_id")
            c["html_info"] = gr.HTML(elem_id="html_info_extras")
            c["html_log"] = gr.HTML(elem_id="html_log_extras")

    for tab, key in ((tab_single, "extras_single_tab"), (tab_batch, "extras_batch_process_tab"),
                     (tab_dir, "extras_batch_directory_tab")):
        tab.select(lambda k=key: k, outputs=[c["mode"]], api_visibility="private")

    fields = ["image", "image_batch", "input_dir", "output_dir", "show_extras_results", "upscale_enabled",
              "upscale_mode", "upscaling_resize", "max_side_length", "upscaling_resize_w", "upscaling_resize_h",
              "upscaling_crop", "upscaler_1", "upscaler_2", "upscaler_2_visibility", "gfpgan_enabled",
              "gfpgan_visibility", "codeformer_enabled", "codeformer_visibility", "codeformer_weight",
              "split_enabled", "split_threshold", "overlap_ratio", "flip_enabled", "flip_option", *CROP_FIELDS]

    def generate(mode_key: str, *values: Any) -> Iterator[tuple]:
        from modules.extras import run_extras

        v = dict(zip(fields, values, strict=True))
        try:
            job_params = build_job(runtime, TAB_MODES.get(mode_key, EXTRAS_SINGLE), v)
        except PydanticValidationError as e:
            msg = "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())
            yield gr.update(), "", "", "", _error_html(msg)
            return
        except WebUIError as e:
            yield gr.update(), "", "", "", _error_html(str(e))
            return
        job = job_runner.submit_service(runtime, "extras", lambda state: run_extras(runtime, job_params, state))
        while not job.done.wait(0.5):
            fraction, text = _status(runtime, job)
            yield gr.update(), job.id, progress_html(fraction, text), gr.update(), ""
        if job.status == "failed":
            yield gr.update(), job.id, "", "", _error_html(job.error or "failed")
            return
        result = job.result
        yield result.images, job.id, "", result.html_info, f"<p>Saved {len(result.saved)} image(s).</p>"

    outputs = [c["gallery"], c["task_id"], c["progress"], c["html_info"], c["html_log"]]
    c["generate"].click(generate, inputs=[c["mode"], *[c[f] for f in fields]], outputs=outputs,
                        api_visibility="private", show_progress="hidden", concurrency_limit=None)

    def interrupt(task_id: str) -> None:
        runtime.jobs.interrupt(runtime.jobs.get(task_id) if task_id else None)

    def skip(task_id: str) -> None:
        runtime.jobs.skip(runtime.jobs.get(task_id) if task_id else None)

    c["interrupt"].click(interrupt, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
    c["skip"].click(skip, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
    c["swap"].click(lambda w, h: (h, w), inputs=[c["upscaling_resize_w"], c["upscaling_resize_h"]],
                    outputs=[c["upscaling_resize_w"], c["upscaling_resize_h"]], api_visibility="private")
    return c


def wire_send_to_extras(buttons: list[tuple[Any, Any]], extras: dict[str, Any], tabs: Any) -> None:
    """A1111's "Send to extras": the image (file, metadata intact) goes to the Single Image tab."""
    for button, image in buttons:
        button.click(lambda value: value, inputs=[image], outputs=[extras["image"]], api_visibility="private").then(
            lambda: (gr.Tabs(selected="extras"), gr.Tabs(selected="single_image"), "extras_single_tab"),
            outputs=[tabs, extras["mode_tabs"], extras["mode"]], api_visibility="private")
