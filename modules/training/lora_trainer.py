"""LoRA training: low-rank modules hooked onto UNet/text-encoder layers, saved as kohya `.safetensors`."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.errors import ValidationError
from modules.params_train import TrainLoraParams
from modules.paths import SCRIPT_PATH
from modules.training import core, dataset, session
from modules.training.loop import Group, LoopConfig, Preview, TrainingMonitor, run_loop
from modules.training.lr_schedule import parse_schedule

log = logging.getLogger(__name__)

# kohya's targets: every Linear / 1x1 conv inside the UNet's transformer blocks, the CLIP attention and MLP layers.
_TE_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class LoraModule(torch.nn.Module):
    """`scale * up(down(x))` beside one layer; up starts at zero so training starts from the unchanged model."""

    def __init__(self, target: torch.nn.Module, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(target, torch.nn.Conv2d):
            self.down: torch.nn.Module = torch.nn.Conv2d(target.in_channels, rank, 1, bias=False)
            self.up: torch.nn.Module = torch.nn.Conv2d(rank, target.out_channels, 1, bias=False)
        else:
            self.down = torch.nn.Linear(target.in_features, rank, bias=False)
            self.up = torch.nn.Linear(rank, target.out_features, bias=False)
        with torch.no_grad():
            torch.nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5), generator=generator)
            torch.nn.init.zeros_(self.up.weight)
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.down.weight
        return self.up(self.down(x.to(w.dtype))) * self.scale


@dataclass
class LoraSet:
    """The trainable modules by kohya key, and the model layers they sit beside."""

    modules: dict[str, LoraModule]
    targets: dict[str, torch.nn.Module]

    def parameters(self, prefix: str) -> list[torch.nn.Parameter]:
        return [p for k, m in self.modules.items() if k.startswith(prefix) for p in m.parameters()]


def _underscored(path: str) -> str:
    return path.replace(".", "_")


def target_layers(model: Any, unet: bool, text_encoder: bool) -> dict[str, torch.nn.Module]:
    """kohya key -> layer: `lora_unet_<diffusers path>` and `lora_te_text_model_<path>` (dots as underscores)."""
    out: dict[str, torch.nn.Module] = {}
    if unet:
        for path, module in model.pipe.unet.named_modules():
            if ".attentions." not in path:
                continue
            if isinstance(module, torch.nn.Linear) or (isinstance(module, torch.nn.Conv2d)
                                                       and module.kernel_size == (1, 1)):
                out["lora_unet_" + _underscored(path)] = module
    if text_encoder:
        # kohya: `lora_te_` for SD1/SD2; SDXL's CLIP-L and bigG are `lora_te1_` and `lora_te2_`.
        sdxl = getattr(model.pipe, "text_encoder_2", None) is not None
        encoders = [("lora_te1_" if sdxl else "lora_te_", model.pipe.text_encoder)]
        if sdxl:
            encoders.append(("lora_te2_", model.pipe.text_encoder_2))
        for prefix, encoder in encoders:
            for path, module in encoder.named_modules():
                if isinstance(module, torch.nn.Linear) and path.rsplit(".", 1)[-1] in _TE_LAYERS:
                    spelled = path if path.startswith("text_model.") else "text_model." + path
                    out[prefix + _underscored(spelled)] = module
    return out


def build_set(model: Any, params: TrainLoraParams, generator: torch.Generator) -> LoraSet:
    targets = target_layers(model, params.train_unet, params.train_text_encoder)
    if not targets:
        raise ValidationError("train_unet", "nothing to train: enable the UNet and/or the text encoder")
    device = next(model.pipe.unet.parameters()).device
    modules = {k: LoraModule(t, params.network_dim, params.network_alpha, generator).to(device)
               for k, t in targets.items()}
    return LoraSet(modules, targets)


@contextmanager
def installed(lora_set: LoraSet) -> Iterator[None]:
    """Forward hooks on the layer instances add the LoRA outputs; removing them leaves the model as it was."""
    handles = []
    try:
        for key, target in lora_set.targets.items():
            module = lora_set.modules[key]
            handles.append(target.register_forward_hook(
                lambda _m, args, out, module=module: out + module(args[0]).to(out.dtype)))
        yield
    finally:
        for h in handles:
            h.remove()


def state_dict(lora_set: LoraSet) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for key, m in lora_set.modules.items():
        tensors[f"{key}.lora_down.weight"] = m.down.weight.detach().float().cpu().contiguous()
        tensors[f"{key}.lora_up.weight"] = m.up.weight.detach().float().cpu().contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(m.alpha)
    return tensors


def load_state(lora_set: LoraSet, path: Path) -> int:
    """Resume: the saved weights into the modules (same targets and rank), and the step it stopped at."""
    from modules.lora import read_metadata
    from modules.safe_load import load_state_dict

    tensors = load_state_dict(path)
    meta = read_metadata(path)
    for key, m in lora_set.modules.items():
        down, up = tensors.get(f"{key}.lora_down.weight"), tensors.get(f"{key}.lora_up.weight")
        if down is None or up is None:
            raise ValidationError("resume", f"{path.name} has no layer {key}; train with the same targets "
                                            "(UNet/text encoder) as before, or untick resume")
        if down.shape != m.down.weight.shape:
            raise ValidationError("resume", f"{path.name} has rank {down.shape[0]}, not {m.rank}")
        with torch.no_grad():
            m.down.weight.copy_(down)
            m.up.weight.copy_(up)
    try:
        return int(meta.get("ss_steps", "0"))
    except ValueError:
        return 0


def metadata(params: TrainLoraParams, model: Any, data: dataset.Dataset, step: int, started: float, seed: int,
             checkpoint: str | None, checkpoint_name: str | None) -> dict[str, str]:
    """kohya's `ss_*` keys (what A1111, ComfyUI and our loader read for version, alias and dataset tags)."""
    sd2, sdxl = model.variant.startswith("sd2"), model.variant.startswith("sdxl")
    folder = Path(params.data_root).name
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(params.network_dim),
        "ss_network_alpha": str(params.network_alpha),
        "ss_output_name": params.lora_name,
        "ss_steps": str(step),
        "ss_max_train_steps": str(params.steps),
        "ss_epoch": str(step // max(1, -(-len(data) // data.batch_size))),
        "ss_base_model_version": "sdxl_base_v1-0" if sdxl else ("sd_v2" if sd2 else "sd_v1"),
        "ss_v2": str(sd2),
        "ss_v_parameterization": str(model.prediction_type == "v_prediction"),
        "ss_resolution": f"({params.resolution}, {params.resolution})",
        "ss_enable_bucket": str(params.enable_bucket),
        "ss_min_bucket_reso": str(params.min_bucket_reso),
        "ss_max_bucket_reso": str(params.max_bucket_reso),
        "ss_unet_lr": params.unet_lr if params.train_unet else "0",
        "ss_text_encoder_lr": params.text_encoder_lr if params.train_text_encoder else "0",
        "ss_learning_rate": params.unet_lr,
        "ss_network_train_unet_only": str(not params.train_text_encoder),
        "ss_num_train_images": str(len(data)),
        "ss_batch_size_per_device": str(params.batch_size),
        "ss_gradient_accumulation_steps": str(params.gradient_step),
        "ss_seed": str(seed),
        "ss_training_started_at": str(started),
        "ss_sd_model_name": checkpoint_name or "",
        "ss_sd_model_hash": checkpoint or "",
        "ss_tag_frequency": json.dumps({folder: data.tag_frequency}),
        "ss_dataset_dirs": json.dumps(dataset_dirs(Path(params.data_root), params.repeats)),
        "ss_caption_extension": params.caption_extension,
        "ss_flip_aug": str(params.flip_aug),
    }


def dataset_dirs(root: Path, repeats: int) -> dict[str, dict[str, int]]:
    """kohya's `ss_dataset_dirs`: image count and repeats per folder."""
    out = {}
    top = dataset.images_in(root) if root.is_dir() else []
    if top:
        out[root.name] = {"n_repeats": repeats, "img_count": len(top)}
    for sub, n in dataset.kohya_folders(root) if root.is_dir() else []:
        out[sub.name] = {"n_repeats": n * repeats, "img_count": len(dataset.images_in(sub))}
    return out


def save_lora(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def check_request(runtime: Any, params: TrainLoraParams) -> None:
    core.check_name(params.lora_name, "lora_name")
    if not (params.train_unet or params.train_text_encoder):
        raise ValidationError("train_unet", "nothing to train: enable the UNet and/or the text encoder")
    parse_schedule(params.unet_lr, params.steps, field="unet_lr")
    parse_schedule(params.text_encoder_lr, params.steps, field="text_encoder_lr")
    if params.clip_grad_mode != "disabled":
        parse_schedule(params.clip_grad_value, params.steps, field="clip_grad_value")
    if params.min_bucket_reso > params.max_bucket_reso:
        raise ValidationError("min_bucket_reso", "is larger than max_bucket_reso")
    if params.template_filename:
        dataset.read_template(dataset.templates_dir(runtime.cmd_opts, SCRIPT_PATH), params.template_filename)
    dataset.list_images(params.data_root, kohya=True)
    if runtime.models.current is not None:
        core.model_family(runtime.models.current, "LoRA", sdxl=True)
    path = runtime.paths.lora_dir / f"{params.lora_name.strip()}.safetensors"
    if path.exists() and not (params.resume or params.overwrite_old):
        raise ValidationError("lora_name", f"{path.name} already exists in {runtime.paths.lora_dir}; tick resume "
                                           "to continue it or overwrite to start again")


def run_training(runtime: Any, params: TrainLoraParams, state: Any, monitor: TrainingMonitor | None = None,
                 *, is_api: bool = False) -> session.TrainingResult:
    check_request(runtime, params)
    name = params.lora_name.strip()
    model = session.current_model(runtime)
    core.model_family(model, "LoRA", sdxl=True)
    path = runtime.paths.lora_dir / f"{name}.safetensors"
    rng, gen, seed = core.seeded(params.seed)
    lora_set = build_set(model, params, gen)
    initial_step = load_state(lora_set, path) if params.resume and path.exists() else 0
    if initial_step >= params.steps:
        raise ValidationError("steps", f"{name} is already trained for {initial_step} steps; raise steps above it")
    groups = []
    if params.train_unet:
        groups.append(Group(lora_set.parameters("lora_unet_"),
                            parse_schedule(params.unet_lr, params.steps, initial_step, field="unet_lr")))
    if params.train_text_encoder:
        groups.append(Group(lora_set.parameters("lora_te"), parse_schedule(
            params.text_encoder_lr, params.steps, initial_step, field="text_encoder_lr")))
    clip = (parse_schedule(params.clip_grad_value, params.steps, initial_step, field="clip_grad_value")
            if params.clip_grad_mode != "disabled" else None)
    lines = (dataset.read_template(dataset.templates_dir(runtime.cmd_opts, SCRIPT_PATH), params.template_filename)
             if params.template_filename else ["[filewords]"])
    log_dir = core.resolve_log_dir(runtime.paths.data_dir, params.log_directory, name, session.today(),
                                   allow_outside=not is_api)
    buckets = (dataset.bucket_sizes(params.resolution, params.min_bucket_reso, params.max_bucket_reso)
               if params.enable_bucket else None)
    data = dataset.load_dataset(params.data_root, params.resolution, params.resolution, batch_size=params.batch_size,
                                buckets=buckets, repeats=params.repeats, flip=params.flip_aug,
                                caption_extension=params.caption_extension, kohya=True)
    checkpoint, checkpoint_name = session.checkpoint_identity(runtime)
    conditioner = runtime.conditioner_for(model)
    objective = core.NoiseObjective.for_model(model)
    unet = model.pipe.unet
    started = time.time()
    last_texts: list[str] = []

    def compute_loss(batch: list[Any]) -> torch.Tensor:
        texts = [dataset.expand_template(rng.choice(lines), e.filename_text, name, rng, params.shuffle_tags,
                                         params.tag_drop_out) for e in batch]
        last_texts[:] = texts
        with torch.set_grad_enabled(params.train_text_encoder):
            cond, pooled = core.encode_prompts_pooled(conditioner, texts)
        return objective.loss(unet, core.batch_latents(batch, gen), cond, gen, pooled=pooled)

    def save(step: int, copy: bool) -> None:
        tensors, meta = state_dict(lora_set), metadata(params, model, data, step, started, seed, checkpoint,
                                                       checkpoint_name)
        save_lora(path, tensors, meta)
        if copy:
            save_lora(log_dir / "lora" / f"{name}-{step:06d}.safetensors", tensors, meta)

    def preview(step: int, batch: list[Any]) -> Preview | None:
        conditioner.clear_cache()  # the text encoder's LoRA moved since prompts were last encoded
        try:
            return session.make_preview(runtime, last_texts[0] if last_texts else name, params,
                                        from_txt2img=bool(params.preview_prompt))
        finally:
            conditioner.clear_cache()

    cfg = LoopConfig(name=name, steps=params.steps, initial_step=initial_step, gradient_step=params.gradient_step,
                     clip_mode=params.clip_grad_mode, clip=clip, create_image_every=params.create_image_every,
                     save_every=params.save_every,
                     write_csv_every=int(runtime.opts.get("training_write_csv_every", 500) or 0),
                     log_dir=log_dir, csv_name="lora_loss.csv", weight_decay=0.01)
    with core.frozen(model):
        core.clean_model(runtime, model)
        core.cache_latents(model, data, params.latent_sampling_method, gen, state)
        session.save_settings(runtime, log_dir, params, initial_step,
                              {"seed": seed, "model": checkpoint_name, "model_hash": checkpoint,
                               "num_of_dataset_images": len(data.entries)})
        try:
            with installed(lora_set):
                result = run_loop(cfg, state, data, rng, groups, compute_loss, save, preview, monitor)
        finally:
            conditioner.clear_cache()
    runtime.loras.refresh()
    verb = "interrupted" if result.interrupted else "finished"
    info = f"Training {verb} at {result.step} steps.\nLoRA saved to {path}"
    return session.TrainingResult("lora", name, str(path), result.step, result.interrupted, str(log_dir), info,
                                  result.losses, result.images)
