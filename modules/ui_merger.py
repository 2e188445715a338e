"""The Checkpoint Merger tab: A1111's controls and element ids; the handler builds MergeParams and queues the job."""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr
from pydantic import ValidationError as PydanticValidationError

from modules import job_runner, merge_blocks
from modules.errors import WebUIError
from modules.merger import prepare_merge, read_metadata, run_merge
from modules.params_merger import CONFIG_SOURCES, INTERP_METHODS, NO_VAE, MergeParams
from modules.runtime import Runtime

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "No interpolation": "No interpolation: needs A only. Converts the format, bakes in a VAE, discards weights.",
    "Weighted sum": "Weighted sum: needs A and B. Result = A * (1 - M) + B * M",
    "Add difference": "Add difference: needs A, B and C. Result = A + (B - C) * M",
}
BLOCK_HELP = ("Per-block multipliers for B, overriding M inside the UNet. SD1/SD2: 26 comma-separated values "
              "(BASE, IN00-IN11, M00, OUT00-OUT11), SDXL: 20 (BASE, IN00-IN08, M00, OUT00-OUT08); without BASE "
              "(25 / 19 values) or with a preset, M is used for the text encoders and VAE. Empty: off.")
FIELDS = ("primary_model_name", "secondary_model_name", "tertiary_model_name", "interp_method", "multiplier",
          "save_as_half", "custom_name", "checkpoint_format", "config_source", "bake_in_vae", "discard_weights",
          "save_metadata", "add_merge_recipe", "copy_metadata_fields", "metadata_json", "block_weights", "overwrite")


def _description(method: str) -> str:
    return f"<p>{html.escape(DESCRIPTIONS.get(method, ''))}</p>"


def _progress_html(fraction: float, text: str) -> str:
    pct = max(0.0, min(fraction, 1.0)) * 100
    return (f'<div class="progressDiv"><div class="progress" style="width:{pct:.1f}%">'
            f'<span class="progress-text">{html.escape(text)}</span></div></div>')


def _error_html(text: str) -> str:
    return f'<div class="error">{html.escape(text)}</div>'


def _status(runtime: Runtime, job: Any) -> tuple[float, str]:
    if job.status == "queued":
        return 0.0, f"In queue, position {runtime.jobs.position(job)}"
    st = job.state
    return st.progress, st.textinfo or "Merging"


def params_from_values(v: dict[str, Any]) -> MergeParams:
    """Component values -> MergeParams (the dropdowns' "None"/empty mean no model)."""
    return MergeParams(
        primary_model_name=v["primary_model_name"] or "",
        secondary_model_name=v["secondary_model_name"] or None,
        tertiary_model_name=v["tertiary_model_name"] or None,
        interp_method=v["interp_method"], multiplier=float(v["multiplier"]), save_as_half=bool(v["save_as_half"]),
        custom_name=v["custom_name"] or "", checkpoint_format=v["checkpoint_format"],
        config_source=int(v["config_source"] or 0), bake_in_vae=v["bake_in_vae"] or NO_VAE,
        discard_weights=v["discard_weights"] or "", save_metadata=bool(v["save_metadata"]),
        add_merge_recipe=bool(v["add_merge_recipe"]), copy_metadata_fields=bool(v["copy_metadata_fields"]),
        metadata_json=v["metadata_json"] or "", block_weights=(v["block_weights"] or "").strip() or None,
        overwrite=bool(v["overwrite"]))


def _validation_message(e: PydanticValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ())) or 'request'}: {err.get('msg')}"
                     for err in e.errors())


def create_merger_tab(runtime: Runtime) -> dict[str, Any]:
    titles = runtime.checkpoint_titles()
    c: dict[str, Any] = {}
    with (gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"),
          gr.Row(equal_height=False, elem_id="modelmerger")):
        with gr.Column(variant="compact"):
            c["interp_description"] = gr.HTML(_description("Weighted sum"),
                                              elem_id="modelmerger_interp_description")
            with gr.Row(elem_id="modelmerger_models"):
                for role, key, label in (("A", "primary_model_name", "Primary model (A)"),
                                         ("B", "secondary_model_name", "Secondary model (B)"),
                                         ("C", "tertiary_model_name", "Tertiary model (C)")):
                    c[key] = gr.Dropdown(titles, value=None, label=label, elem_id=f"modelmerger_{key}",
                                         allow_custom_value=True)
                    c[f"refresh_{role}"] = gr.Button("🔄", elem_id=f"refresh_checkpoint_{role}",
                                                     elem_classes=["tool"], scale=0, min_width=40)
            c["custom_name"] = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            c["multiplier"] = gr.Slider(0.0, 1.0, value=0.3, step=0.05,
                                        label="Multiplier (M) - set to 0 to get model A",
                                        elem_id="modelmerger_interp_amount")
            c["interp_method"] = gr.Radio(list(INTERP_METHODS), value="Weighted sum",
                                          label="Interpolation Method", elem_id="modelmerger_interp_method")
            with gr.Row():
                c["checkpoint_format"] = gr.Radio(["ckpt", "safetensors"], value="safetensors",
                                                  label="Checkpoint format",
                                                  elem_id="modelmerger_checkpoint_format")
                c["save_as_half"] = gr.Checkbox(value=False, label="Save as float16",
                                                elem_id="modelmerger_save_as_half")
            with gr.Row():
                c["config_source"] = gr.Radio(list(CONFIG_SOURCES), value=CONFIG_SOURCES[0],
                                              label="Copy config from", type="index",
                                              elem_id="modelmerger_config_method")
                c["bake_in_vae"] = gr.Dropdown(_vae_choices(runtime), value=NO_VAE, label="Bake in VAE",
                                               elem_id="modelmerger_bake_in_vae")
                c["refresh_vae"] = gr.Button("🔄", elem_id="modelmerger_refresh_bake_in_vae",
                                             elem_classes=["tool"], scale=0, min_width=40)
            c["discard_weights"] = gr.Textbox(value="", label="Discard weights with matching name",
                                              elem_id="modelmerger_discard_weights")
            with gr.Accordion("Metadata", open=False, elem_id="modelmerger_metadata_accordion"):
                with gr.Row():
                    c["save_metadata"] = gr.Checkbox(value=True, label="Save metadata",
                                                     elem_id="modelmerger_save_metadata")
                    c["add_merge_recipe"] = gr.Checkbox(value=True, label="Add merge recipe metadata",
                                                        elem_id="modelmerger_add_recipe")
                    c["copy_metadata_fields"] = gr.Checkbox(value=True, label="Copy metadata from merged models",
                                                            elem_id="modelmerger_copy_metadata_fields")
                c["metadata_json"] = gr.TextArea("{}", label="Metadata in JSON format",
                                                 elem_id="modelmerger_metadata_json")
                c["read_metadata"] = gr.Button("Read metadata from selected checkpoints",
                                               elem_id="modelmerger_view_metadata")
            with gr.Accordion("Block weights", open=False, elem_id="modelmerger_block_weights_accordion"):
                c["block_preset"] = gr.Dropdown(["None", *merge_blocks.preset_names()], value="None",
                                                label="Preset", elem_id="modelmerger_block_preset")
                c["block_weights"] = gr.Textbox(value="", label="Block weights", info=BLOCK_HELP,
                                                elem_id="modelmerger_block_weights")
            c["overwrite"] = gr.Checkbox(value=False, label="Overwrite an existing file of the same name",
                                         elem_id="modelmerger_overwrite")
            with gr.Row():
                c["merge"] = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
                c["interrupt"] = gr.Button("Interrupt", elem_id="modelmerger_interrupt")
        with gr.Column(variant="compact", elem_id="modelmerger_results_container"):
            c["progress"] = gr.HTML(elem_id="modelmerger_progress")
            c["result"] = gr.HTML(elem_id="modelmerger_result")
            c["task_id"] = gr.Textbox(visible=False, elem_id="modelmerger_task_id")
    _wire(runtime, c)
    return c


def _vae_choices(runtime: Runtime) -> list[str]:
    return [NO_VAE, *runtime.vaes.choices()[2:]]  # the database lists Automatic and None first


def _wire(runtime: Runtime, c: dict[str, Any]) -> None:
    models = [c["primary_model_name"], c["secondary_model_name"], c["tertiary_model_name"]]

    def refresh() -> Any:
        return gr.update(choices=runtime.refresh_checkpoints())

    for role, dropdown in zip("ABC", models, strict=True):
        c[f"refresh_{role}"].click(refresh, outputs=[dropdown], api_visibility="private")

    def refresh_vae() -> Any:
        runtime.vaes.refresh()
        return gr.update(choices=_vae_choices(runtime))

    c["refresh_vae"].click(refresh_vae, outputs=[c["bake_in_vae"]], api_visibility="private")
    c["interp_method"].change(_description, inputs=[c["interp_method"]], outputs=[c["interp_description"]],
                              api_visibility="private", show_progress="hidden")
    c["block_preset"].change(lambda name: "" if name in (None, "None") else name, inputs=[c["block_preset"]],
                             outputs=[c["block_weights"]], api_visibility="private")
    c["read_metadata"].click(lambda *names: read_metadata(runtime, list(names)), inputs=models,
                             outputs=[c["metadata_json"]], api_visibility="private")

    def merge(*values: Any) -> Iterator[tuple]:
        keep = tuple(gr.update() for _ in models)
        try:
            params = params_from_values(dict(zip(FIELDS, values, strict=True)))
            prepare_merge(runtime, params).close()  # refuse at once, before the job waits in the queue
        except PydanticValidationError as e:
            yield (*keep, "", "", _error_html(_validation_message(e)))
            return
        except (WebUIError, TypeError, ValueError) as e:
            yield (*keep, "", "", _error_html(str(e)))
            return
        job = job_runner.submit_service(runtime, "model-merge", lambda state: run_merge(runtime, params, state))
        yield (*keep, job.id, _progress_html(0.0, "Starting"), "")
        while not job.done.wait(0.5):
            fraction, text = _status(runtime, job)
            yield (*keep, job.id, _progress_html(fraction, text), "")
        if job.status == "failed":
            yield (*keep, job.id, "", _error_html(job.error or "the merge failed"))
            return
        titles = runtime.checkpoint_titles()
        yield (*(gr.update(choices=titles) for _ in models), job.id, "", html.escape(job.result.message))

    c["merge"].click(merge, inputs=[c[f] for f in FIELDS],
                     outputs=[*models, c["task_id"], c["progress"], c["result"]],
                     api_visibility="private", show_progress="hidden", concurrency_limit=None)

    def interrupt(task_id: str) -> None:
        job = runtime.jobs.get(task_id) if task_id else None
        if job is not None:
            runtime.jobs.interrupt(job)

    c["interrupt"].click(interrupt, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
