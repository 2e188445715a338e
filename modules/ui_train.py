"""The Train tab: A1111's Create embedding / Create hypernetwork / Train sub-tabs and ids, plus our Train LoRA."""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr
from pydantic import ValidationError as PydanticValidationError

from modules import job_runner
from modules.errors import WebUIError
from modules.params_train import (
    HYPERNETWORK_SIZES,
    WEIGHT_INITS,
    CreateEmbeddingParams,
    CreateHypernetworkParams,
    TrainEmbeddingParams,
    TrainHypernetworkParams,
    TrainLoraParams,
)
from modules.paths import SCRIPT_PATH
from modules.runtime import Runtime
from modules.training import dataset, service
from modules.training.hypernetwork import activation_choices
from modules.training.loop import TrainingMonitor
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

_PREVIEW_FIELDS = ("prompt", "negative_prompt", "steps", "sampler_name", "cfg_scale", "seed", "width", "height")


def _error(text: str) -> str:
    return f'<div class="error">{html.escape(text)}</div>'


def _message(e: Exception) -> str:
    if isinstance(e, PydanticValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())
    return str(e)


def _progress_html(fraction: float, text: str) -> str:
    pct = max(0.0, min(fraction, 1.0)) * 100
    return (f'<div class="progressDiv"><div class="progress" style="width:{pct:.1f}%">'
            f'<span class="progress-text">{html.escape(text)}</span></div></div>')


def embedding_names(runtime: Runtime) -> list[str]:
    db = runtime.embeddings
    if db is None:
        return []
    db.refresh(force=True)
    return sorted(db.loaded)


def hypernetwork_names(runtime: Runtime) -> list[str]:
    return sorted(runtime.hypernetworks.refresh())


def template_names(runtime: Runtime) -> list[str]:
    return list(dataset.list_templates(dataset.templates_dir(runtime.cmd_opts, SCRIPT_PATH)))


def _loss_frame(monitor: TrainingMonitor) -> Any:
    import pandas as pd

    rows = monitor.loss_rows()
    return pd.DataFrame({"step": [s for s, _ in rows], "loss": [v for _, v in rows]})


def run_training_ui(runtime: Runtime, params: Any) -> Iterator[tuple]:
    """Queue the run, then stream (status, outcome, progress, gallery, loss plot, task id) until it ends."""
    try:
        service.check_request(runtime, params)
    except WebUIError as e:
        yield "", _error(str(e)), "", gr.update(), gr.update(), ""
        return
    monitor = TrainingMonitor()
    job = job_runner.submit_service(runtime, service.job_name(params),
                                    lambda state: service.run_training(runtime, params, state, monitor))
    shown = 0
    while not job.done.wait(1.0):
        st = job.state
        if job.status == "queued":
            fraction, text = 0.0, f"In queue, position {runtime.jobs.position(job)}"
        else:
            eta = st.eta()
            fraction, text = st.progress, (st.textinfo or "Starting...") + (f", ETA {eta:.0f}s" if eta else "")
        gallery = gr.update()
        if len(monitor.images) != shown:
            shown = len(monitor.images)
            gallery = list(monitor.images)
        yield html.escape(monitor.message), "", _progress_html(fraction, text), gallery, _loss_frame(monitor), job.id
    if job.status == "failed":
        yield "", _error(job.error or "training failed"), "", gr.update(), _loss_frame(monitor), job.id
        return
    result = job.result
    yield (html.escape(monitor.message), f"<p>{html.escape(result.info).replace(chr(10), '<br>')}</p>", "",
           list(monitor.images) or gr.update(), _loss_frame(monitor), job.id)


def _preview_values(values: tuple, from_txt2img: bool) -> dict[str, Any]:
    if not from_txt2img or not values:
        return {}
    v = dict(zip(_PREVIEW_FIELDS, values, strict=False))
    return {"preview_prompt": v.get("prompt") or "", "preview_negative_prompt": v.get("negative_prompt") or "",
            "preview_steps": int(v.get("steps") or 20), "preview_sampler_name": v.get("sampler_name") or "Euler a",
            "preview_cfg_scale": float(v.get("cfg_scale") or 7.0), "preview_seed": int(v.get("seed") or -1),
            "preview_width": int(v.get("width") or 512), "preview_height": int(v.get("height") or 512)}


def create_train_tab(runtime: Runtime, txt2img: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the Train tab; `txt2img` (its components) feeds 'Read parameters from txt2img tab' previews."""
    c: dict[str, Any] = {}
    with gr.Tab("Train", id="train", elem_id="tab_train"), gr.Row(equal_height=False):
        with gr.Column(), gr.Tabs(elem_id="train_tabs"):
            _create_embedding_ui(runtime, c)
            _create_hypernetwork_ui(runtime, c)
            _train_ui(runtime, c)
            _train_lora_ui(runtime, c)
            # A1111 extensions add their own sub-tabs here (on_ui_train_tabs), given the txt2img preview inputs.
            from modules import script_callbacks

            preview = [txt2img[f] for f in _PREVIEW_FIELDS if f in (txt2img or {})]
            script_callbacks.ui_train_tabs_callback(script_callbacks.UiTrainTabParams(preview))
        with gr.Column(elem_id="ti_gallery_container"):
            c["task_id"] = gr.Textbox(visible="hidden", elem_id="train_task_id", label="")
            c["ti_output"] = gr.HTML(elem_id="ti_output")
            c["ti_progress"] = gr.HTML(elem_id="ti_progress")
            c["ti_gallery"] = gr.Gallery(label="Output", show_label=False, elem_id="ti_gallery", columns=4)
            c["loss_plot"] = gr.LinePlot(x="step", y="loss", title="Loss", elem_id="train_loss_plot")
            c["ti_outcome"] = gr.HTML(elem_id="ti_outcome")
    _wire(runtime, c, txt2img or {})
    return c


def _create_embedding_ui(runtime: Runtime, c: dict[str, Any]) -> None:
    with gr.Tab("Create embedding", id="create_embedding"):
        c["new_embedding_name"] = gr.Textbox(label="Name", elem_id="train_new_embedding_name")
        c["initialization_text"] = gr.Textbox(label="Initialization text", value="*",
                                              elem_id="train_initialization_text")
        c["nvpt"] = gr.Slider(1, 75, value=1, step=1, label="Number of vectors per token", elem_id="train_nvpt")
        c["overwrite_old_embedding"] = gr.Checkbox(False, label="Overwrite Old Embedding",
                                                   elem_id="train_overwrite_old_embedding")
        c["create_embedding"] = gr.Button("Create embedding", variant="primary", elem_id="train_create_embedding")


def _create_hypernetwork_ui(runtime: Runtime, c: dict[str, Any]) -> None:
    with gr.Tab("Create hypernetwork", id="create_hypernetwork"):
        c["new_hypernetwork_name"] = gr.Textbox(label="Name", elem_id="train_new_hypernetwork_name")
        c["new_hypernetwork_sizes"] = gr.CheckboxGroup(
            label="Modules", value=["768", "320", "640", "1280"], choices=[str(s) for s in HYPERNETWORK_SIZES],
            elem_id="train_new_hypernetwork_sizes")
        c["new_hypernetwork_layer_structure"] = gr.Textbox(
            "1, 2, 1", label="Enter hypernetwork layer structure", placeholder="1st and last digit must be 1. ex:'1, 2, 1'",
            elem_id="train_new_hypernetwork_layer_structure")
        c["new_hypernetwork_activation_func"] = gr.Dropdown(
            activation_choices(), value="linear", label="Select activation function of hypernetwork. Recommended : "
            "Swish / Linear(none)", elem_id="train_new_hypernetwork_activation_func")
        c["new_hypernetwork_initialization_option"] = gr.Dropdown(
            list(WEIGHT_INITS), value="Normal", label="Select Layer weights initialization. Recommended: Kaiming for "
            "relu-like, Xavier for sigmoid-like, Normal otherwise", elem_id="train_new_hypernetwork_initialization_option")
        c["new_hypernetwork_add_layer_norm"] = gr.Checkbox(label="Add layer normalization",
                                                           elem_id="train_new_hypernetwork_add_layer_norm")
        c["new_hypernetwork_use_dropout"] = gr.Checkbox(label="Use dropout",
                                                        elem_id="train_new_hypernetwork_use_dropout")
        c["new_hypernetwork_dropout_structure"] = gr.Textbox(
            "0, 0, 0", label="Enter hypernetwork Dropout structure (or empty). Recommended : 0~0.35 incrementing "
            "sequence: 0, 0.05, 0.15", elem_id="train_new_hypernetwork_dropout_structure")
        c["overwrite_old_hypernetwork"] = gr.Checkbox(False, label="Overwrite Old Hypernetwork",
                                                      elem_id="train_overwrite_old_hypernetwork")
        c["create_hypernetwork"] = gr.Button("Create hypernetwork", variant="primary",
                                             elem_id="train_create_hypernetwork")


def _train_ui(runtime: Runtime, c: dict[str, Any]) -> None:
    with gr.Tab("Train", id="train_embedding_tab"):
        gr.HTML('<p>Train an embedding or Hypernetwork; you must specify a directory with a set of 1:1 ratio '
                'images.</p>')
        with gr.Row():
            c["train_embedding_name"] = gr.Dropdown(embedding_names(runtime), label="Embedding",
                                                    elem_id="train_embedding", allow_custom_value=True)
            c["refresh_embeddings"] = ToolButton("\U0001f504", elem_id="train_embedding_refresh")
            c["train_hypernetwork_name"] = gr.Dropdown(hypernetwork_names(runtime), label="Hypernetwork",
                                                       elem_id="train_hypernetwork", allow_custom_value=True)
            c["refresh_hypernetworks"] = ToolButton("\U0001f504", elem_id="train_hypernetwork_refresh")
        with gr.Row():
            c["embedding_learn_rate"] = gr.Textbox("0.005", label="Embedding Learning rate",
                                                   elem_id="train_embedding_learn_rate")
            c["hypernetwork_learn_rate"] = gr.Textbox("0.00001", label="Hypernetwork Learning rate",
                                                      elem_id="train_hypernetwork_learn_rate")
        with gr.Row():
            c["clip_grad_mode"] = gr.Dropdown(["disabled", "value", "norm"], value="disabled",
                                              label="Gradient Clipping", elem_id="train_clip_grad_mode")
            c["clip_grad_value"] = gr.Textbox("0.1", show_label=False, elem_id="train_clip_grad_value")
        with gr.Row():
            c["batch_size"] = gr.Number(label="Batch size", value=1, precision=0, elem_id="train_batch_size")
            c["gradient_step"] = gr.Number(label="Gradient accumulation steps", value=1, precision=0,
                                           elem_id="train_gradient_step")
        c["dataset_directory"] = gr.Textbox(label="Dataset directory", placeholder="Path to directory with input "
                                            "images", elem_id="train_dataset_directory")
        c["log_directory"] = gr.Textbox("textual_inversion", label="Log directory", elem_id="train_log_directory")
        with gr.Row():
            c["template_file"] = gr.Dropdown(template_names(runtime), value="style_filewords.txt",
                                             label="Prompt template", elem_id="train_template_file")
            c["refresh_templates"] = ToolButton("\U0001f504", elem_id="train_template_file_refresh")
        c["training_width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="train_training_width")
        c["training_height"] = gr.Slider(64, 2048, value=512, step=8, label="Height",
                                         elem_id="train_training_height")
        c["varsize"] = gr.Checkbox(False, label="Do not resize images", elem_id="train_varsize")
        c["steps"] = gr.Number(label="Max steps", value=100000, precision=0, elem_id="train_steps")
        with gr.Row():
            c["create_image_every"] = gr.Number(label="Save an image to log directory every N steps, 0 to disable",
                                                value=500, precision=0, elem_id="train_create_image_every")
            c["save_embedding_every"] = gr.Number(label="Save a copy of embedding to log directory every N steps, 0 "
                                                  "to disable", value=500, precision=0,
                                                  elem_id="train_save_embedding_every")
        c["use_weight"] = gr.Checkbox(label="Use PNG alpha channel as loss weight", elem_id="use_weight")
        c["save_image_with_stored_embedding"] = gr.Checkbox(True, label="Save images with embedding in PNG chunks",
                                                            elem_id="train_save_image_with_stored_embedding")
        c["preview_from_txt2img"] = gr.Checkbox(False, label="Read parameters (prompt, etc...) from txt2img tab "
                                                "when making previews", elem_id="train_preview_from_txt2img")
        c["shuffle_tags"] = gr.Checkbox(False, label="Shuffle tags by ',' when creating prompts.",
                                        elem_id="train_shuffle_tags")
        c["tag_drop_out"] = gr.Slider(0, 1, value=0, step=0.1, label="Drop out tags when creating prompts.",
                                      elem_id="train_tag_drop_out")
        c["latent_sampling_method"] = gr.Radio(["once", "deterministic", "random"], value="once",
                                               label="Choose latent sampling method",
                                               elem_id="train_latent_sampling_method")
        with gr.Row():
            c["interrupt_training"] = gr.Button("Interrupt", elem_id="train_interrupt_training")
            c["train_hypernetwork"] = gr.Button("Train Hypernetwork", variant="primary",
                                                elem_id="train_train_hypernetwork")
            c["train_embedding"] = gr.Button("Train Embedding", variant="primary", elem_id="train_train_embedding")


def _train_lora_ui(runtime: Runtime, c: dict[str, Any]) -> None:
    with gr.Tab("Train LoRA", id="train_lora"):
        gr.HTML("<p>Train a kohya-format LoRA into models/Lora from a folder of images with .txt captions.</p>")
        with gr.Row():
            c["lora_name"] = gr.Textbox(label="LoRA name", elem_id="train_lora_name")
            c["lora_dataset"] = gr.Textbox(label="Dataset directory", elem_id="train_lora_dataset_directory")
        with gr.Row():
            c["lora_dim"] = gr.Number(label="Rank (network dim)", value=8, precision=0, elem_id="train_lora_dim")
            c["lora_alpha"] = gr.Number(label="Alpha", value=4.0, elem_id="train_lora_alpha")
            c["lora_repeats"] = gr.Number(label="Repeats per image", value=1, precision=0,
                                          elem_id="train_lora_repeats")
        with gr.Row():
            c["lora_train_unet"] = gr.Checkbox(True, label="Train UNet", elem_id="train_lora_train_unet")
            c["lora_train_te"] = gr.Checkbox(True, label="Train text encoder", elem_id="train_lora_train_te")
            c["lora_unet_lr"] = gr.Textbox("1e-4", label="UNet learning rate", elem_id="train_lora_unet_lr")
            c["lora_te_lr"] = gr.Textbox("5e-5", label="Text encoder learning rate", elem_id="train_lora_te_lr")
        with gr.Row():
            c["lora_steps"] = gr.Number(label="Max steps", value=1000, precision=0, elem_id="train_lora_steps")
            c["lora_batch"] = gr.Number(label="Batch size", value=1, precision=0, elem_id="train_lora_batch_size")
            c["lora_grad_step"] = gr.Number(label="Gradient accumulation steps", value=1, precision=0,
                                            elem_id="train_lora_gradient_step")
        with gr.Row():
            c["lora_resolution"] = gr.Slider(64, 2048, value=512, step=8, label="Resolution",
                                             elem_id="train_lora_resolution")
            c["lora_bucket"] = gr.Checkbox(True, label="Aspect ratio buckets", elem_id="train_lora_enable_bucket")
            c["lora_flip"] = gr.Checkbox(False, label="Flipped copies", elem_id="train_lora_flip_aug")
        with gr.Row():
            c["lora_save_every"] = gr.Number(label="Save a copy every N steps", value=500, precision=0,
                                             elem_id="train_lora_save_every")
            c["lora_image_every"] = gr.Number(label="Save a preview every N steps", value=500, precision=0,
                                              elem_id="train_lora_create_image_every")
        c["lora_preview_prompt"] = gr.Textbox(label="Preview prompt (empty: a training caption)",
                                              elem_id="train_lora_preview_prompt")
        c["lora_resume"] = gr.Checkbox(False, label="Resume from the saved file", elem_id="train_lora_resume")
        c["lora_overwrite"] = gr.Checkbox(False, label="Overwrite an existing file", elem_id="train_lora_overwrite")
        with gr.Row():
            c["lora_interrupt"] = gr.Button("Interrupt", elem_id="train_lora_interrupt")
            c["train_lora"] = gr.Button("Train LoRA", variant="primary", elem_id="train_train_lora")


def _wire(runtime: Runtime, c: dict[str, Any], txt2img: dict[str, Any]) -> None:
    outputs = [c["ti_output"], c["ti_outcome"], c["ti_progress"], c["ti_gallery"], c["loss_plot"], c["task_id"]]
    private = {"api_visibility": "private", "show_progress": "hidden"}

    def create_embedding(name: str, init_text: str, nvpt: float, overwrite: bool) -> tuple:
        try:
            params = CreateEmbeddingParams(name=name or "", init_text=init_text or "", num_vectors_per_token=int(nvpt),
                                           overwrite_old=bool(overwrite))
            path = runtime.jobs.wait(job_runner.submit_service(
                runtime, "create-embedding", lambda state: service.create_embedding(runtime, params)))
        except (WebUIError, PydanticValidationError) as e:
            return gr.update(), "", _error(_message(e))
        return gr.update(choices=embedding_names(runtime), value=params.name), f"Created: {html.escape(str(path))}", ""

    c["create_embedding"].click(create_embedding, inputs=[c["new_embedding_name"], c["initialization_text"], c["nvpt"],
                                                          c["overwrite_old_embedding"]],
                                outputs=[c["train_embedding_name"], c["ti_output"], c["ti_outcome"]], **private)

    def create_hypernetwork(name: str, sizes: list[str], structure: str, activation: str, init: str, norm: bool,
                            dropout: bool, dropout_structure: str, overwrite: bool) -> tuple:
        try:
            params = CreateHypernetworkParams(
                name=name or "", enable_sizes=[int(s) for s in sizes or []], layer_structure=structure,
                activation_func=activation, weight_init=init, add_layer_norm=bool(norm), use_dropout=bool(dropout),
                dropout_structure=dropout_structure, overwrite_old=bool(overwrite))
            path = runtime.jobs.wait(job_runner.submit_service(
                runtime, "create-hypernetwork", lambda state: service.create_hypernetwork(runtime, params)))
        except (WebUIError, PydanticValidationError) as e:
            return gr.update(), "", _error(_message(e))
        return (gr.update(choices=hypernetwork_names(runtime), value=params.name), f"Created: {html.escape(str(path))}",
                "")

    c["create_hypernetwork"].click(create_hypernetwork, inputs=[
        c["new_hypernetwork_name"], c["new_hypernetwork_sizes"], c["new_hypernetwork_layer_structure"],
        c["new_hypernetwork_activation_func"], c["new_hypernetwork_initialization_option"],
        c["new_hypernetwork_add_layer_norm"], c["new_hypernetwork_use_dropout"],
        c["new_hypernetwork_dropout_structure"], c["overwrite_old_hypernetwork"]],
        outputs=[c["train_hypernetwork_name"], c["ti_output"], c["ti_outcome"]], **private)
    c["refresh_embeddings"].click(lambda: gr.update(choices=embedding_names(runtime)),
                                  outputs=[c["train_embedding_name"]], **private)
    c["refresh_hypernetworks"].click(lambda: gr.update(choices=hypernetwork_names(runtime)),
                                     outputs=[c["train_hypernetwork_name"]], **private)
    c["refresh_templates"].click(lambda: gr.update(choices=template_names(runtime)), outputs=[c["template_file"]],
                                 **private)

    common = ["batch_size", "gradient_step", "dataset_directory", "log_directory", "training_width",
              "training_height", "varsize", "steps", "clip_grad_mode", "clip_grad_value", "shuffle_tags",
              "tag_drop_out", "latent_sampling_method", "use_weight", "create_image_every", "template_file",
              "preview_from_txt2img"]
    preview_inputs = [txt2img[f] for f in _PREVIEW_FIELDS if f in txt2img]

    def common_fields(v: dict[str, Any], previews: tuple) -> dict[str, Any]:
        return {"batch_size": int(v["batch_size"] or 1), "gradient_step": int(v["gradient_step"] or 1),
                "data_root": v["dataset_directory"] or "", "log_directory": v["log_directory"] or "",
                "training_width": int(v["training_width"]), "training_height": int(v["training_height"]),
                "varsize": bool(v["varsize"]), "steps": int(v["steps"] or 0), "clip_grad_mode": v["clip_grad_mode"],
                "clip_grad_value": v["clip_grad_value"] or "", "shuffle_tags": bool(v["shuffle_tags"]),
                "tag_drop_out": float(v["tag_drop_out"] or 0), "latent_sampling_method": v["latent_sampling_method"],
                "use_weight": bool(v["use_weight"]), "create_image_every": int(v["create_image_every"] or 0),
                "template_filename": v["template_file"] or "", "preview_from_txt2img": bool(v["preview_from_txt2img"]),
                **_preview_values(previews, bool(v["preview_from_txt2img"]))}

    def train_embedding(*values: Any) -> Iterator[tuple]:
        v = dict(zip(["name", "lr", "save_every", "stored", *common], values, strict=False))
        try:
            params = TrainEmbeddingParams(
                embedding_name=v["name"] or "", learn_rate=v["lr"] or "", save_embedding_every=int(v["save_every"] or 0),
                save_image_with_stored_embedding=bool(v["stored"]),
                **common_fields(v, values[4 + len(common):]))
        except (PydanticValidationError, TypeError, ValueError) as e:
            yield "", _error(_message(e)), "", gr.update(), gr.update(), ""
            return
        yield from run_training_ui(runtime, params)

    def train_hypernetwork(*values: Any) -> Iterator[tuple]:
        v = dict(zip(["name", "lr", "save_every", "stored", *common], values, strict=False))
        try:
            params = TrainHypernetworkParams(
                hypernetwork_name=v["name"] or "", learn_rate=v["lr"] or "",
                save_hypernetwork_every=int(v["save_every"] or 0), **common_fields(v, values[4 + len(common):]))
        except (PydanticValidationError, TypeError, ValueError) as e:
            yield "", _error(_message(e)), "", gr.update(), gr.update(), ""
            return
        yield from run_training_ui(runtime, params)

    tail = [c[k] for k in common] + preview_inputs
    c["train_embedding"].click(train_embedding, inputs=[
        c["train_embedding_name"], c["embedding_learn_rate"], c["save_embedding_every"],
        c["save_image_with_stored_embedding"], *tail], outputs=outputs, concurrency_limit=None, **private)
    c["train_hypernetwork"].click(train_hypernetwork, inputs=[
        c["train_hypernetwork_name"], c["hypernetwork_learn_rate"], c["save_embedding_every"],
        c["save_image_with_stored_embedding"], *tail], outputs=outputs, concurrency_limit=None, **private)

    lora_fields = ["lora_name", "lora_dataset", "lora_dim", "lora_alpha", "lora_repeats", "lora_train_unet",
                   "lora_train_te", "lora_unet_lr", "lora_te_lr", "lora_steps", "lora_batch", "lora_grad_step",
                   "lora_resolution", "lora_bucket", "lora_flip", "lora_save_every", "lora_image_every",
                   "lora_preview_prompt", "lora_resume", "lora_overwrite", "shuffle_tags", "tag_drop_out",
                   "clip_grad_mode", "clip_grad_value", "latent_sampling_method"]

    def train_lora(*values: Any) -> Iterator[tuple]:
        v = dict(zip(lora_fields, values, strict=True))
        try:
            params = TrainLoraParams(
                lora_name=v["lora_name"] or "", data_root=v["lora_dataset"] or "", network_dim=int(v["lora_dim"] or 0),
                network_alpha=float(v["lora_alpha"] or 0), repeats=int(v["lora_repeats"] or 1),
                train_unet=bool(v["lora_train_unet"]), train_text_encoder=bool(v["lora_train_te"]),
                unet_lr=v["lora_unet_lr"] or "", text_encoder_lr=v["lora_te_lr"] or "",
                steps=int(v["lora_steps"] or 0), batch_size=int(v["lora_batch"] or 1),
                gradient_step=int(v["lora_grad_step"] or 1), resolution=int(v["lora_resolution"]),
                enable_bucket=bool(v["lora_bucket"]), flip_aug=bool(v["lora_flip"]),
                save_every=int(v["lora_save_every"] or 0), create_image_every=int(v["lora_image_every"] or 0),
                preview_prompt=v["lora_preview_prompt"] or "", resume=bool(v["lora_resume"]),
                overwrite_old=bool(v["lora_overwrite"]), shuffle_tags=bool(v["shuffle_tags"]),
                tag_drop_out=float(v["tag_drop_out"] or 0), clip_grad_mode=v["clip_grad_mode"],
                clip_grad_value=v["clip_grad_value"] or "1.0", latent_sampling_method=v["latent_sampling_method"])
        except (PydanticValidationError, TypeError, ValueError) as e:
            yield "", _error(_message(e)), "", gr.update(), gr.update(), ""
            return
        yield from run_training_ui(runtime, params)

    c["train_lora"].click(train_lora, inputs=[c[k] for k in lora_fields], outputs=outputs, concurrency_limit=None,
                          **private)

    def interrupt(task_id: str) -> None:
        job = runtime.jobs.get(task_id) if task_id else None
        if job is not None:
            runtime.jobs.interrupt(job)

    c["interrupt_training"].click(interrupt, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
    c["lora_interrupt"].click(interrupt, inputs=[c["task_id"]], api_visibility="private", concurrency_limit=None)
