"""Textual inversion: create an embedding from initialization text, train its vectors, save A1111's .pt format."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import torch

from modules.errors import ValidationError
from modules.params_train import CreateEmbeddingParams, TrainEmbeddingParams
from modules.paths import SCRIPT_PATH
from modules.training import core, dataset, session
from modules.training.loop import Group, LoopConfig, Preview, TrainingMonitor, run_loop
from modules.training.lr_schedule import parse_schedule

log = logging.getLogger(__name__)


def embedding_data(vec: torch.Tensor, name: str, step: int, checkpoint: str | None,
                   checkpoint_name: str | None) -> dict[str, Any]:
    """The dictionary A1111 pickles: `string_to_param` under the token '*', plus step and checkpoint."""
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vec.detach().float().cpu().clone()},
        "name": name,
        "step": int(step),
        "sd_checkpoint": checkpoint,
        "sd_checkpoint_name": checkpoint_name,
    }


def save_embedding(path: Path, data: dict[str, Any]) -> None:
    """Write through a temporary file, so an interrupted write never leaves half a file in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)


def ti_chunk(data: dict[str, Any]) -> str:
    """A1111's `sd-ti-embedding` PNG text chunk: base64 of the JSON dump, tensors as {"TORCHTENSOR": lists}."""
    def encode(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return {"TORCHTENSOR": obj.cpu().tolist()}
        if isinstance(obj, dict):
            return {k: encode(v) for k, v in obj.items()}
        return obj

    return base64.b64encode(json.dumps(encode(data)).encode()).decode()


def _text_encoder(conditioner: Any) -> Any:
    return conditioner.encoders[0]


def create_embedding(runtime: Any, params: CreateEmbeddingParams) -> Path:
    """`embeddings/<name>.pt` with vectors taken from the initialization text's token embeddings (A1111's rule)."""
    name = core.check_name(params.name, "name")
    path = runtime.paths.embeddings_dir / f"{name}.pt"
    if path.exists() and not params.overwrite_old:
        raise ValidationError("name", f"embedding file {path.name} already exists (tick 'Overwrite Old Embedding')")
    model = session.current_model(runtime)
    core.model_family(model, "embedding")
    enc = _text_encoder(runtime.conditioner_for(model))
    n = params.num_vectors_per_token
    ids = enc.tokenizer(params.init_text or "*", add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    ids = ids[:n] or [enc.tokenizer.eos_token_id]
    inner = getattr(enc.model, "text_model", enc.model)
    table = inner.embeddings.token_embedding
    with torch.no_grad():
        embedded = table(torch.tensor(ids, device=table.weight.device)).float().cpu()
    vec = torch.zeros((n, embedded.shape[1]))
    if params.init_text:
        for i in range(n):
            vec[i] = embedded[i * embedded.shape[0] // n]
    save_embedding(path, embedding_data(vec, name, 0, None, None))
    if runtime.embeddings is not None:
        runtime.embeddings.refresh(force=True)
    return path


def check_request(runtime: Any, params: TrainEmbeddingParams) -> None:
    """What can be refused before a job is queued (names, schedule syntax, template, dataset folder)."""
    core.check_name(params.embedding_name, "embedding_name")
    parse_schedule(params.learn_rate, params.steps, field="learn_rate")
    if params.clip_grad_mode != "disabled":
        parse_schedule(params.clip_grad_value, params.steps, field="clip_grad_value")
    dataset.read_template(dataset.templates_dir(runtime.cmd_opts, SCRIPT_PATH), params.template_filename)
    dataset.list_images(params.data_root)
    if runtime.models.current is not None:
        core.model_family(runtime.models.current, "embedding")
    if params.varsize and params.batch_size > 1:
        raise ValidationError("batch_size", "must be 1 with 'Do not resize images' (varsize)")


def _find_embedding(runtime: Any, conditioner: Any, name: str) -> Any:
    db = runtime.embeddings
    if db is None:
        raise ValidationError("embedding_name", "embeddings are not available in this runtime")
    index = conditioner.refresh_embeddings(force=True)
    if name in index.word_embeddings:
        return index.word_embeddings[name]
    if name in index.skipped:
        raise ValidationError("embedding_name", f"{name} does not fit the loaded model: {index.skipped[name]}")
    raise ValidationError("embedding_name", f"no embedding named {name!r} in {runtime.paths.embeddings_dir} "
                                            "(create it in Train > Create embedding first)")


def run_training(runtime: Any, params: TrainEmbeddingParams, state: Any,
                 monitor: TrainingMonitor | None = None, *, is_api: bool = False) -> session.TrainingResult:
    """Train the embedding's vectors only; the checkpoint's weights are never handed to the optimizer."""
    check_request(runtime, params)
    name = params.embedding_name.strip()
    model = session.current_model(runtime)
    core.model_family(model, "embedding")
    conditioner = runtime.conditioner_for(model)
    emb = _find_embedding(runtime, conditioner, name)
    if isinstance(emb.vec, dict):
        raise ValidationError("embedding_name", f"{name} is an SDXL embedding; the trainer supports SD1.x and SD2.x")
    initial_step = int(emb.step) if isinstance(emb.step, int) else 0
    if initial_step >= params.steps:
        raise ValidationError("steps", f"{name} is already trained for {initial_step} steps; raise max steps above it")
    lr = parse_schedule(params.learn_rate, params.steps, initial_step, field="learn_rate")
    clip = (parse_schedule(params.clip_grad_value, params.steps, initial_step, field="clip_grad_value")
            if params.clip_grad_mode != "disabled" else None)
    lines = dataset.read_template(dataset.templates_dir(runtime.cmd_opts, SCRIPT_PATH), params.template_filename)
    log_dir = core.resolve_log_dir(runtime.paths.data_dir, params.log_directory, name, session.today(),
                                   allow_outside=not is_api)
    rng, gen, seed = core.seeded(params.seed)
    data = dataset.load_dataset(params.data_root, params.training_width, params.training_height,
                                batch_size=params.batch_size, varsize=params.varsize, use_weight=params.use_weight,
                                repeats=int(runtime.opts.get("training_image_repeats_per_epoch", 1) or 1),
                                word_regex=runtime.opts.get("dataset_filename_word_regex", "") or "",
                                join_string=runtime.opts.get("dataset_filename_join_string", " "))
    main_file = Path(emb.filename) if emb.filename else runtime.paths.embeddings_dir / f"{name}.pt"
    checkpoint, checkpoint_name = session.checkpoint_identity(runtime)
    vec = emb.vec.detach().clone().float().requires_grad_(True)
    objective = core.NoiseObjective.for_model(model)
    unet = model.pipe.unet
    last_texts: list[str] = []

    def data_at(step: int) -> dict[str, Any]:
        return embedding_data(vec, name, step, checkpoint, checkpoint_name)

    def compute_loss(batch: list[Any]) -> torch.Tensor:
        texts = [dataset.expand_template(rng.choice(lines), e.filename_text, name, rng, params.shuffle_tags,
                                         params.tag_drop_out) for e in batch]
        last_texts[:] = texts
        cond = core.encode_prompts(conditioner, texts, {name: vec})
        weight = torch.stack([e.weight for e in batch]) if params.use_weight and batch[0].weight is not None else None
        return objective.loss(unet, core.batch_latents(batch, gen), cond, gen, weight)

    def save(step: int, copy: bool) -> None:
        save_embedding(main_file, data_at(step))
        if copy:
            save_embedding(log_dir / "embeddings" / f"{name}-{step}.pt", data_at(step))
        runtime.embeddings.refresh(force=True)  # previews and the next generation see the new vectors

    def preview(step: int, batch: list[Any]) -> Preview | None:
        save(step, False)
        made = session.make_preview(runtime, last_texts[0] if last_texts else name, params,
                                    from_txt2img=params.preview_from_txt2img)
        if made is not None and params.save_image_with_stored_embedding:
            made.chunks["sd-ti-embedding"] = ti_chunk(data_at(step))
        return made

    cfg = LoopConfig(name=name, steps=params.steps, initial_step=initial_step, gradient_step=params.gradient_step,
                     clip_mode=params.clip_grad_mode, clip=clip, create_image_every=params.create_image_every,
                     save_every=params.save_embedding_every,
                     write_csv_every=int(runtime.opts.get("training_write_csv_every", 500) or 0),
                     log_dir=log_dir, csv_name="textual_inversion_loss.csv")
    with core.frozen(model):
        core.clean_model(runtime, model)
        core.cache_latents(model, data, params.latent_sampling_method, gen, state)
        session.save_settings(runtime, log_dir, params, initial_step,
                              {"seed": seed, "model": checkpoint_name, "model_hash": checkpoint,
                               "num_of_dataset_images": len(data.entries)})
        result = run_loop(cfg, state, data, rng, [Group([vec], lr)], compute_loss, save, preview, monitor)
    conditioner.clear_cache()
    verb = "interrupted" if result.interrupted else "finished"
    info = f"Training {verb} at {result.step} steps.\nEmbedding saved to {main_file}"
    return session.TrainingResult("embedding", name, str(main_file), result.step, result.interrupted, str(log_dir),
                                  info, result.losses, result.images)
