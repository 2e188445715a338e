"""The txt2img tab: A1111's controls and element ids; handlers build params, queue a job, show progress."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr
from pydantic import ValidationError as PydanticValidationError

from modules import hires, infotext_settings, job_runner, script_callbacks, sd_samplers, ui_common, ui_scripts
from modules import infotext as infotext_mod
from modules.errors import WebUIError
from modules.params import Txt2ImgParams
from modules.runtime import Runtime
from modules.ui_extra_networks import create_extra_networks_ui
from modules.ui_output_panel import create_output_buttons
from modules.ui_toprow import create_styles_ui, create_token_counter, wire_token_counters

log = logging.getLogger(__name__)


# The progress/status/error helpers and the per-page job stream are shared with the img2img tab (ui_common).
progress_html = ui_common.progress_html
_status_text = ui_common.status_text
_validation_message = ui_common.validation_message
_error_html = ui_common.error_html
_page_jobs = ui_common.page_jobs
_follow = ui_common.follow_job


def create_txt2img_tab(runtime: Runtime) -> dict[str, Any]:
    samplers = sd_samplers.sampler_names()
    schedulers = sd_samplers.scheduler_labels()
    c: dict[str, Any] = {}
    with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
        with gr.Row(elem_id="txt2img_toprow", equal_height=False):
            with gr.Column(scale=6, elem_id="txt2img_prompt_container"):
                # Each counter sits in its prompt box's corner (style.css), as in A1111.
                with gr.Column(elem_classes=["prompt-with-counter"]):
                    c["prompt"] = gr.Textbox(label="Prompt", elem_id="txt2img_prompt", lines=3, show_label=False,
                                             placeholder="Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, "
                                                         "Esc to interrupt)")
                    create_token_counter(runtime, "txt2img", c, positive=True)
                with gr.Column(elem_classes=["prompt-with-counter"]):
                    c["negative_prompt"] = gr.Textbox(label="Negative prompt", elem_id="txt2img_neg_prompt",
                                                      lines=3, show_label=False, placeholder="Negative prompt")
                    create_token_counter(runtime, "txt2img", c, positive=False)
            with gr.Column(scale=1, min_width=220, elem_id="txt2img_actions_column"):
                with gr.Row(elem_id="txt2img_generate_box"):
                    c["interrupt"] = gr.Button("Interrupt", elem_id="txt2img_interrupt", min_width=80)
                    c["skip"] = gr.Button("Skip", elem_id="txt2img_skip", min_width=80)
                c["generate"] = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
                with gr.Row(elem_id="txt2img_tools", elem_classes=["tool-row"]):
                    c["paste"] = gr.Button("↙️", elem_id="paste", elem_classes=["tool"], scale=0, min_width=40)
                    c["clear"] = gr.Button("🗑️", elem_id="txt2img_clear_prompt", elem_classes=["tool"], scale=0,
                                           min_width=40)
                create_styles_ui(runtime, "txt2img", c)
        # A1111's row of sub-tabs under the prompts: Generation, then one tab per extra-networks page.
        with gr.Tabs(elem_id="txt2img_extra_tabs"):
            with gr.Tab("Generation", id="txt2img_generation", elem_id="txt2img_generation_tab"), \
                    gr.Row(equal_height=False, elem_id="txt2img_settings_row"):
                with gr.Column(elem_id="txt2img_settings"):
                    with gr.Row(elem_id="txt2img_sampler_row"):
                        missing = ", ".join(sd_samplers.MISSING_SAMPLERS)
                        c["sampler_name"] = gr.Dropdown(samplers, value=samplers[0], label="Sampling method",
                                                        elem_id="txt2img_sampling",
                                                        info=f"Not available yet: {missing}" if missing else None)
                        c["scheduler"] = gr.Dropdown(schedulers, value="Automatic", label="Schedule type",
                                                     elem_id="txt2img_scheduler")
                        c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img_steps")
                    _hires_and_refiner_ui(runtime, c)
                    with gr.Row(elem_id="txt2img_dimensions_row"):
                        with gr.Column(scale=4):
                            c["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="txt2img_width")
                            c["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height",
                                                    elem_id="txt2img_height")
                        c["swap"] = gr.Button("⇅", elem_id="txt2img_res_switch_btn", elem_classes=["tool"], scale=0,
                                              min_width=40)
                        with gr.Column(scale=2):
                            c["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                                    elem_id="txt2img_batch_count")
                            c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                                        elem_id="txt2img_batch_size")
                    c["cfg_scale"] = gr.Slider(1, 30, value=7.0, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
                    with gr.Row(elem_id="txt2img_seed_row"):
                        c["seed"] = gr.Number(label="Seed", value=-1, precision=0, elem_id="txt2img_seed", scale=4)
                        c["random_seed"] = gr.Button("🎲️", elem_id="txt2img_random_seed", elem_classes=["tool"],
                                                     scale=0, min_width=40)
                        c["reuse_seed"] = gr.Button("♻️", elem_id="txt2img_reuse_seed", elem_classes=["tool"],
                                                    scale=0, min_width=40)
                        c["subseed_show"] = gr.Checkbox(label="Extra", elem_id="txt2img_subseed_show", value=False,
                                                        scale=1)
                    with gr.Group(visible=False, elem_id="txt2img_seed_extras") as seed_extras:
                        with gr.Row():
                            c["subseed"] = gr.Number(label="Variation seed", value=-1, precision=0,
                                                     elem_id="txt2img_subseed")
                            c["subseed_strength"] = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                                              elem_id="txt2img_subseed_strength")
                        with gr.Row():
                            c["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                                elem_id="txt2img_seed_resize_from_w")
                            c["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8,
                                                                label="Resize seed from height",
                                                                elem_id="txt2img_seed_resize_from_h")
                    # A1111's "override_settings" section: filled only by pasting an infotext that names settings.
                    c["override_settings"] = gr.Dropdown([], value=[], multiselect=True, label="Override settings",
                                                         visible=False, elem_id="txt2img_override_settings")
                    c["script_inputs"] = ui_scripts.create_script_ui(runtime.scripts_txt2img)
                with gr.Column(elem_id="txt2img_results"):
                    c["progress"] = gr.HTML(elem_id="txt2img_progress")
                    c["gallery"] = gr.Gallery(label="Output", show_label=False, elem_id="txt2img_gallery", columns=4,
                                              format="png", preview=True, height="auto",
                                              interactive=False)
                    c["generation_info"] = gr.Textbox(visible=False, elem_id="generation_info_txt2img")
                    c["task_id"] = gr.Textbox(visible=False, elem_id="txt2img_task_id")
                    c["html_info"] = gr.HTML(elem_id="html_info_txt2img")
                    c["html_log"] = gr.HTML(elem_id="html_log_txt2img")
                    # The plain infotext for extensions and copying; the page shows it once, as html_info.
                    c["infotext"] = gr.Textbox(label="Infotext", elem_id="txt2img_info", interactive=False, lines=3,
                                               visible=False)
                    create_output_buttons(runtime, "txt2img", c)
                    ui_common.send_buttons("txt2img", c)
            c["extra_networks"] = create_extra_networks_ui(runtime, "txt2img", c)

    fields = ["prompt", "negative_prompt", "sampler_name", "scheduler", "steps", "width", "height", "n_iter",
              "batch_size", "cfg_scale", "seed", "subseed_show", "subseed", "subseed_strength", "seed_resize_from_w",
              "seed_resize_from_h", "styles", "override_settings", *HIRES_REFINER_FIELDS]

    def generate(request: gr.Request, *values: Any) -> Iterator[tuple]:
        v = dict(zip(fields, values[:len(fields)], strict=True))
        script_args = values[len(fields):]
        extra = bool(v.pop("subseed_show"))
        if not extra:
            v.update(subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0)
        try:
            params = Txt2ImgParams(
                prompt=v["prompt"] or "", negative_prompt=v["negative_prompt"] or "",
                sampler_name=v["sampler_name"], scheduler=v["scheduler"], steps=int(v["steps"]),
                width=int(v["width"]), height=int(v["height"]), n_iter=int(v["n_iter"]),
                batch_size=int(v["batch_size"]), cfg_scale=float(v["cfg_scale"]), seed=int(v["seed"] or -1),
                subseed=int(v["subseed"] or -1), subseed_strength=float(v["subseed_strength"]),
                seed_resize_from_w=int(v["seed_resize_from_w"]) or -1,
                seed_resize_from_h=int(v["seed_resize_from_h"]) or -1, styles=list(v["styles"] or []),
                override_settings=infotext_settings.overrides_from_choices(v["override_settings"] or [], runtime.opts),
                **hires_refiner_params(v))
        except (PydanticValidationError, TypeError, ValueError) as e:
            msg = _validation_message(e) if isinstance(e, PydanticValidationError) else str(e)
            yield gr.update(), "", "", "", _error_html(msg), "", ""
            return
        try:
            job = job_runner.submit(runtime, job_runner.JobRequest(params, script_args=tuple(script_args)))
        except WebUIError as e:  # refused before queueing (unknown style, locked setting...): say why
            yield gr.update(), "", "", "", _error_html(str(e)), "", ""
            return
        page = _page_jobs.add(request, job)
        try:
            yield from _follow(runtime, job, page)
        finally:
            _page_jobs.remove(page, job)

    gen_inputs = [c[f] for f in fields] + c["script_inputs"]  # script args follow, as A1111
    outputs = [c["gallery"], c["generation_info"], c["task_id"], c["progress"], c["html_log"], c["html_info"],
               c["infotext"]]
    # trigger_mode="multiple": a click during a run queues another job (as the API does) instead of being
    # dropped by Gradio's default "once"; concurrency_limit=None: the handler only waits, the job queue works.
    c["generate"].click(generate, inputs=gen_inputs, outputs=outputs, api_visibility="private",
                        show_progress="hidden", concurrency_limit=None, trigger_mode="multiple")

    def interrupt(task_id: str) -> None:
        job = runtime.jobs.get(task_id) if task_id else None
        runtime.jobs.interrupt(job)

    def skip(task_id: str) -> None:
        job = runtime.jobs.get(task_id) if task_id else None
        runtime.jobs.skip(job)

    c["interrupt"].click(interrupt, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
    c["skip"].click(skip, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
    c["swap"].click(lambda w, h: (h, w), inputs=[c["width"], c["height"]], outputs=[c["width"], c["height"]],
                    api_visibility="private")
    c["random_seed"].click(lambda: -1, outputs=[c["seed"]], api_visibility="private")
    c["clear"].click(lambda: ("", ""), outputs=[c["prompt"], c["negative_prompt"]], api_visibility="private")
    c["subseed_show"].change(lambda x: gr.update(visible=bool(x)), inputs=[c["subseed_show"]],
                             outputs=[seed_extras], api_visibility="private")

    def reuse_seed(gen_info: str, evt_index: int | None = None) -> Any:
        try:
            info = json.loads(gen_info)
        except (TypeError, ValueError):
            return gr.update()
        return info.get("seed", -1)

    c["reuse_seed"].click(reuse_seed, inputs=[c["generation_info"]], outputs=[c["seed"]], api_visibility="private")

    paste_outputs = [c[f] for f in PASTE_FIELDS]

    def paste(prompt: str) -> tuple:
        return paste_values(prompt, runtime)

    c["paste"].click(paste, inputs=[c["prompt"]], outputs=paste_outputs, api_visibility="private")
    c["paste_outputs"] = paste_outputs
    c["paste_fn"] = paste
    c["override_settings"].change(lambda chosen: gr.update(visible=bool(chosen)), inputs=[c["override_settings"]],
                                  outputs=[c["override_settings"]], api_visibility="private", show_progress="hidden")
    wire_token_counters(runtime, c)
    wire_hires_resolution(c)
    return c


def paste_values(text: str, runtime: Runtime | None = None) -> tuple:
    """Fill the txt2img fields from an infotext (A1111's ↙️ button); settings it names go to "Override settings"."""
    if not text or not text.strip():
        return tuple(gr.update() for _ in PASTE_FIELDS)
    res = infotext_mod.parse_generation_parameters(text)
    script_callbacks.infotext_pasted_callback(text, res)  # extensions may add or rewrite parsed fields

    def get(key: str, cast: Any, default: Any = None) -> Any:
        if key not in res:
            return gr.update() if default is None else default
        try:
            return cast(float(res[key])) if cast in (int, float) else cast(res[key])
        except (TypeError, ValueError):
            return gr.update()

    sampler, scheduler = gr.update(), gr.update()
    if "Sampler" in res:
        with contextlib.suppress(ValueError):
            sampler, scheduler = sd_samplers.split_sampler_and_scheduler(res["Sampler"], res.get("Schedule type"))
    has_extra = any(k in res for k in ("Variation seed", "Seed resize from-1"))
    return (res.get("Prompt", ""), res.get("Negative prompt", ""), get("Steps", int), sampler, scheduler,
            get("CFG scale", float), get("Seed", int), get("Size-1", int), get("Size-2", int),
            has_extra, get("Variation seed", int), get("Variation seed strength", float),
            get("Seed resize from-1", int), get("Seed resize from-2", int), *_paste_hires_refiner(res, get),
            _paste_overrides(res, runtime))


def _paste_overrides(res: dict[str, Any], runtime: Runtime | None) -> Any:
    """The "Override settings" row after a paste: every named setting that differs from the current value."""
    if runtime is None:
        return gr.update()

    def checkpoint_title(name: str) -> str | None:
        info = runtime.registry.closest(name)
        return info.title if info else None

    found = infotext_settings.overrides_from_infotext(res, runtime.opts, checkpoint_title=checkpoint_title)
    entries = [infotext_settings.override_choice(label, value) for label, _key, value in found]
    return gr.update(choices=entries, value=entries, visible=bool(entries))


# --- Hires. fix and Refiner accordions (A1111's txt2img "accordions" section) ---------------------------------

HIRES_REFINER_FIELDS = ("enable_hr", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "hr_scale",
                        "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
                        "hr_prompt", "hr_negative_prompt", "refiner_enable", "refiner_checkpoint",
                        "refiner_switch_at")
PASTE_FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "cfg_scale", "seed", "width",
                "height", "subseed_show", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h",
                *HIRES_REFINER_FIELDS, "override_settings")


def _hr_resolution_text(width: float, height: float, scale: float, resize_x: float, resize_y: float) -> str:
    """The accordion's "from WxH to W'xH'" note, by A1111's target-size rules."""
    try:
        w, h = int(width), int(height)
        size = hires.target_size(w, h, float(scale), int(resize_x or 0), int(resize_y or 0))
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    return f"from {w}x{h} to {size.width}x{size.height}"


def _hires_and_refiner_ui(runtime: Runtime, c: dict[str, Any]) -> None:
    """Hires. fix and Refiner accordions with A1111's element ids; fills `c` with HIRES_REFINER_FIELDS."""
    opts = runtime.opts
    titles = runtime.checkpoint_titles()
    show_sampler = bool(opts.get("hires_fix_show_sampler", False))
    show_prompts = bool(opts.get("hires_fix_show_prompts", False))
    # Stacked, not side by side: each needs the column's full width for its rows of sliders.
    with gr.Column(elem_id="txt2img_accordions"):
        with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr", elem_classes=["input-accordion"]) as hr:
            c["enable_hr"] = gr.Checkbox(label="Enable", value=False, elem_id="txt2img_enable_hr")
            c["hr_final_resolution"] = gr.Markdown(_hr_resolution_text(512, 512, 2.0, 0, 0),
                                                   elem_id="txt2img_hr_finalres")
            with gr.Row(elem_id="txt2img_hires_fix_row1"):
                c["hr_upscaler"] = gr.Dropdown(hires.upscaler_names(runtime), value=hires.LATENT_UPSCALE_DEFAULT,
                                               label="Upscaler", elem_id="txt2img_hr_upscaler")
                c["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                      elem_id="txt2img_hires_steps")
                c["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Denoising strength",
                                                    elem_id="txt2img_denoising_strength")
            with gr.Row(elem_id="txt2img_hires_fix_row2"):
                c["hr_scale"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Upscale by",
                                          elem_id="txt2img_hr_scale")
                c["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                             elem_id="txt2img_hr_resize_x")
                c["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                             elem_id="txt2img_hr_resize_y")
            with gr.Row(elem_id="txt2img_hires_fix_row3", visible=show_sampler):
                # allow_custom_value: a pasted infotext names the checkpoint by its short title.
                c["hr_checkpoint_name"] = gr.Dropdown([hires.SAME_CHECKPOINT, *titles], value=hires.SAME_CHECKPOINT,
                                                      label="Checkpoint", elem_id="hr_checkpoint",
                                                      allow_custom_value=True)
                c["hr_sampler_name"] = gr.Dropdown([hires.SAME_SAMPLER, *sd_samplers.sampler_names()],
                                                   value=hires.SAME_SAMPLER, label="Hires sampling method",
                                                   elem_id="hr_sampler")
                c["hr_scheduler"] = gr.Dropdown([hires.SAME_SCHEDULER, *sd_samplers.scheduler_labels()],
                                                value=hires.SAME_SCHEDULER, label="Hires schedule type",
                                                elem_id="hr_scheduler")
            with gr.Row(elem_id="txt2img_hires_fix_row4", visible=show_prompts):
                c["hr_prompt"] = gr.Textbox(label="Hires prompt", elem_id="hires_prompt", lines=3,
                                            placeholder="Prompt for hires fix pass.\nLeave empty to use the same "
                                                        "prompt as in first pass.")
                c["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt", elem_id="hires_neg_prompt",
                                                     lines=3, placeholder="Negative prompt for hires fix pass.\n"
                                                                          "Leave empty to use the same negative "
                                                                          "prompt as in first pass.")
        with gr.Accordion("Refiner", open=False, elem_id="txt2img_refiner", elem_classes=["input-accordion"]) as ref:
            c["refiner_enable"] = gr.Checkbox(label="Enable", value=False, elem_id="txt2img_refiner_enable")
            with gr.Row():
                c["refiner_checkpoint"] = gr.Dropdown(["None", *titles], value="None", label="Checkpoint",
                                                      elem_id="txt2img_checkpoint", allow_custom_value=True)
                c["refiner_refresh"] = gr.Button("🔄", elem_id="txt2img_checkpoint_refresh", elem_classes=["tool"],
                                                 scale=0, min_width=40)
                c["refiner_switch_at"] = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label="Switch at",
                                                   elem_id="txt2img_switch_at")

    def refresh_refiner() -> Any:
        return gr.update(choices=["None", *runtime.refresh_checkpoints()])

    c["refiner_refresh"].click(refresh_refiner, outputs=[c["refiner_checkpoint"]], api_visibility="private")
    _show_enabled_in_header(hr, c["enable_hr"], "Hires. fix")
    _show_enabled_in_header(ref, c["refiner_enable"], "Refiner")


def _show_enabled_in_header(accordion: Any, enable: Any, title: str) -> None:
    """A1111 carries the enable checkbox in the accordion's header: here the header says "(enabled)" and is
    marked, and turning it on (by a click or by pasting an infotext) opens the accordion, so a collapsed
    accordion never hides that it changes the result."""

    def update(on: bool) -> Any:
        if on:
            return gr.Accordion(label=f"{title} (enabled)", open=True,
                                elem_classes=["input-accordion", "input-accordion-enabled"])
        return gr.Accordion(label=title, elem_classes=["input-accordion"])

    enable.change(update, inputs=[enable], outputs=[accordion], api_visibility="private", show_progress="hidden")


def wire_hires_resolution(c: dict[str, Any]) -> None:
    """Keep the "from WxH to W'xH'" note current (called once width and height exist)."""
    inputs = [c[k] for k in ("width", "height", "hr_scale", "hr_resize_x", "hr_resize_y")]
    for component in inputs:
        component.change(_hr_resolution_text, inputs=inputs, outputs=[c["hr_final_resolution"]],
                         api_visibility="private", show_progress="hidden")


def hires_refiner_params(v: dict[str, Any]) -> dict[str, Any]:
    """Txt2ImgParams fields from the accordion values ("Use same ..." choices become None, as A1111's handler)."""
    refiner_on = bool(v.get("refiner_enable")) and v.get("refiner_checkpoint") not in (None, "", "None")
    return {
        "enable_hr": bool(v.get("enable_hr")),
        "hr_upscaler": v.get("hr_upscaler") or None,
        "hr_second_pass_steps": int(v.get("hr_second_pass_steps") or 0),
        "denoising_strength": float(v.get("denoising_strength") if v.get("denoising_strength") is not None else 0.7),
        "hr_scale": float(v.get("hr_scale") or 2.0),
        "hr_resize_x": int(v.get("hr_resize_x") or 0),
        "hr_resize_y": int(v.get("hr_resize_y") or 0),
        "hr_checkpoint_name": None if v.get("hr_checkpoint_name") in (None, "", hires.SAME_CHECKPOINT)
        else v["hr_checkpoint_name"],
        "hr_sampler_name": None if v.get("hr_sampler_name") in (None, "", hires.SAME_SAMPLER) else v["hr_sampler_name"],
        "hr_scheduler": None if v.get("hr_scheduler") in (None, "", hires.SAME_SCHEDULER) else v["hr_scheduler"],
        "hr_prompt": v.get("hr_prompt") or "",
        "hr_negative_prompt": v.get("hr_negative_prompt") or "",
        "refiner_checkpoint": v["refiner_checkpoint"] if refiner_on else None,
        "refiner_switch_at": float(v["refiner_switch_at"]) if refiner_on else None,
    }


def _paste_hires_refiner(res: dict[str, Any], get: Any) -> tuple:
    """Accordion values from a parsed infotext, with A1111's defaults for missing hires keys."""
    enable_hr = "Denoising strength" in res and any(
        k in res for k in ("Hires upscale", "Hires upscaler", "Hires resize-1"))
    has_refiner = "Refiner" in res
    return (
        enable_hr,
        res.get("Hires upscaler", gr.update()),
        get("Hires steps", int, 0) if enable_hr else gr.update(),
        get("Denoising strength", float),
        get("Hires upscale", float),
        get("Hires resize-1", int, 0) if enable_hr else gr.update(),
        get("Hires resize-2", int, 0) if enable_hr else gr.update(),
        res.get("Hires checkpoint", hires.SAME_CHECKPOINT),
        res.get("Hires sampler", hires.SAME_SAMPLER),
        res.get("Hires schedule type", hires.SAME_SCHEDULER),
        res.get("Hires prompt", ""),
        res.get("Hires negative prompt", ""),
        has_refiner,
        res["Refiner"] if has_refiner else gr.update(),
        get("Refiner switch at", float),
    )
