"""A1111 hypernetworks: create the residual MLPs, train them on cross-attention k/v, save A1111's .pt layout."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from modules.errors import ValidationError
from modules.params_train import WEIGHT_INITS, CreateHypernetworkParams, TrainHypernetworkParams
from modules.paths import SCRIPT_PATH
from modules.training import core, dataset, session
from modules.training.loop import Group, LoopConfig, Preview, TrainingMonitor, run_loop
from modules.training.lr_schedule import parse_schedule

log = logging.getLogger(__name__)


def activation_choices() -> list[str]:
    """What our hypernetwork loader can rebuild (A1111's names)."""
    from modules.hypernetworks import _ACTIVATIONS

    return ["linear", *sorted(_ACTIVATIONS)]


def _floats(value: Any, field: str) -> list[float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return [float(x.strip()) for x in value.split(",") if x.strip()]
        except ValueError:
            raise ValidationError(field, f"{value!r} is not a comma-separated list of numbers") from None
    return [float(x) for x in value]


class HyperMLP(torch.nn.Module):
    """A1111's HypernetworkModule: `x + linear(x)`, `linear` = Linear, activation, LayerNorm, Dropout per layer."""

    def __init__(self, dim: int, structure: list[float], activation: str, weight_init: str, layer_norm: bool,
                 dropout: list[float], activate_output: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        from modules.hypernetworks import _ACTIVATIONS

        layers: list[torch.nn.Module] = []
        for i in range(len(structure) - 1):
            layers.append(torch.nn.Linear(int(dim * structure[i]), int(dim * structure[i + 1])))
            last = i >= len(structure) - 2
            if activation not in ("linear", "none") and not (last and not activate_output):
                layers.append(_ACTIVATIONS[activation]())
            if layer_norm:
                layers.append(torch.nn.LayerNorm(int(dim * structure[i + 1])))
            if dropout[i + 1] > 0:
                layers.append(torch.nn.Dropout(p=dropout[i + 1]))
        self.linear = torch.nn.Sequential(*layers)
        with torch.no_grad():
            for layer in self.linear:
                if not isinstance(layer, torch.nn.Linear | torch.nn.LayerNorm):
                    continue
                w, b = layer.weight, layer.bias
                if weight_init == "Normal" or isinstance(layer, torch.nn.LayerNorm):
                    w.normal_(0.0, 0.01, generator=generator)  # A1111 also inits LayerNorm this way
                    b.zero_()
                    continue
                nonlinearity = "leaky_relu" if activation == "leakyrelu" else "relu"
                if weight_init == "XavierUniform":
                    torch.nn.init.xavier_uniform_(w, generator=generator)
                elif weight_init == "XavierNormal":
                    torch.nn.init.xavier_normal_(w, generator=generator)
                elif weight_init == "KaimingUniform":
                    torch.nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity, generator=generator)
                else:
                    torch.nn.init.kaiming_normal_(w, nonlinearity=nonlinearity, generator=generator)
                b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.linear[0].weight
        return x + self.linear(x.to(p.dtype)).to(x.dtype)


def hypernetwork_options(params: CreateHypernetworkParams) -> dict[str, Any]:
    """Checked and normalised creation options (A1111 defaults: structure 1,2,1; linear; Normal)."""
    structure = _floats(params.layer_structure, "layer_structure") or [1.0, 2.0, 1.0]
    if len(structure) < 2 or structure[0] != 1 or structure[-1] != 1 or any(x <= 0 for x in structure):
        raise ValidationError("layer_structure", f"{structure} must start and end with 1 and be positive, e.g. 1, 2, 1")
    dropout = _floats(params.dropout_structure, "dropout_structure") if params.use_dropout else None
    dropout = dropout or [0.0] * len(structure)
    if len(dropout) != len(structure):
        raise ValidationError("dropout_structure", f"has {len(dropout)} values; the layer structure has "
                                                   f"{len(structure)}")
    if dropout[0] != 0 or any(not 0 <= d < 1 for d in dropout):
        raise ValidationError("dropout_structure", "values must be in [0, 1) and the first must be 0")
    activation = (params.activation_func or "linear").lower()
    if activation not in activation_choices():
        raise ValidationError("activation_func", f"{activation!r} is not one of {', '.join(activation_choices())}")
    weight_init = params.weight_init or "Normal"
    if weight_init not in WEIGHT_INITS:
        raise ValidationError("weight_init", f"{weight_init!r} is not one of {', '.join(WEIGHT_INITS)}")
    sizes = sorted({int(s) for s in params.enable_sizes})
    if not sizes or any(s <= 0 or s > 8192 for s in sizes):
        raise ValidationError("enable_sizes", "needs at least one positive size (768 for SD1, 1024 for SD2)")
    return {"layer_structure": structure, "activation_func": activation, "weight_initialization": weight_init,
            "is_layer_norm": bool(params.add_layer_norm), "use_dropout": bool(params.use_dropout),
            "dropout_structure": dropout, "activate_output": False, "last_layer_dropout": False, "sizes": sizes}


def build_layers(options: dict[str, Any], generator: torch.Generator | None = None) -> dict[int, tuple[HyperMLP, ...]]:
    return {size: tuple(HyperMLP(size, options["layer_structure"], options["activation_func"],
                                 options["weight_initialization"], options["is_layer_norm"],
                                 options["dropout_structure"], options["activate_output"], generator)
                        for _ in range(2)) for size in options["sizes"]}


def hypernetwork_data(name: str, layers: dict[int, tuple[HyperMLP, ...]], options: dict[str, Any], step: int,
                      checkpoint: str | None, checkpoint_name: str | None) -> dict[Any, Any]:
    """A1111's saved dictionary: {size: (k state, v state)} plus its option keys."""
    data: dict[Any, Any] = {size: tuple({k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
                                        for m in pair) for size, pair in layers.items()}
    data.update({"step": int(step), "name": name, "sd_checkpoint": checkpoint, "sd_checkpoint_name": checkpoint_name,
                 "optional_info": None, **{k: v for k, v in options.items() if k != "sizes"}})
    return data


def save_file(path: Path, data: dict[Any, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)


def create_hypernetwork(runtime: Any, params: CreateHypernetworkParams) -> Path:
    name = core.check_name(params.name, "name")
    path = runtime.paths.hypernetwork_dir / f"{name}.pt"
    if path.exists() and not params.overwrite_old:
        raise ValidationError("name", f"hypernetwork file {path.name} already exists (tick 'Overwrite Old "
                                      "Hypernetwork')")
    options = hypernetwork_options(params)
    save_file(path, hypernetwork_data(name, build_layers(options), options, 0, None, None))
    runtime.hypernetworks.refresh()
    return path


def load_for_training(path: Path) -> tuple[dict[int, tuple[HyperMLP, ...]], dict[str, Any], int]:
    """Rebuild trainable modules from an A1111 hypernetwork file (weights-only load)."""
    from modules.hypernetworks import load_hypernetwork

    load_hypernetwork(path)  # the loader's checks and its refusal of unsafe pickles
    data = torch.load(str(path), map_location="cpu", weights_only=True)
    structure = list(data.get("layer_structure") or [1, 2, 1])
    options = {"layer_structure": structure,
               "activation_func": str(data.get("activation_func") or "linear").lower(),
               "weight_initialization": data.get("weight_initialization") or "Normal",
               "is_layer_norm": bool(data.get("is_layer_norm")), "use_dropout": bool(data.get("use_dropout")),
               "dropout_structure": list(data.get("dropout_structure") or [0.0] * len(structure)),
               "activate_output": bool(data.get("activate_output")),
               "last_layer_dropout": bool(data.get("last_layer_dropout")),
               "sizes": sorted(k for k in data if isinstance(k, int))}
    layers = build_layers(options)
    for size, pair in layers.items():
        for module, state in zip(pair, data[size], strict=True):
            module.load_state_dict(dict(state))
    step = data.get("step")
    return layers, options, int(step) if isinstance(step, int) else 0


@contextmanager
def installed(model: Any, layers: dict[int, tuple[HyperMLP, ...]]) -> Iterator[None]:
    """Forward pre-hooks on every cross-attention to_k/to_v instance: the context goes through the MLPs first."""
    handles = []
    param = next(model.pipe.unet.parameters())
    for module in layers.values():
        for m in module:
            m.to(param.device)
    try:
        for name, attn in model.pipe.unet.named_modules():
            if not (name.endswith("attn2") and hasattr(attn, "to_k")):
                continue
            for attr, slot in (("to_k", 0), ("to_v", 1)):
                linear = getattr(attn, attr)
                width = linear.in_features
                if width not in layers:
                    raise ValidationError("hypernetwork_name", f"the hypernetwork has sizes {sorted(layers)} but the "
                                                               f"model's cross-attention needs {width}")
                mlp = layers[width][slot]
                handles.append(linear.register_forward_pre_hook(
                    lambda _m, args, mlp=mlp: (mlp(args[0]), *args[1:])))
        yield
    finally:
        for h in handles:
            h.remove()


def check_request(runtime: Any, params: TrainHypernetworkParams) -> None:
    core.check_name(params.hypernetwork_name, "hypernetwork_name")
    parse_schedule(params.learn_rate, params.steps, field="learn_rate")
    if params.clip_grad_mode != "disabled":
        parse_schedule(params.clip_grad_value, params.steps, field="clip_grad_value")
    dataset.read_template(dataset.templates_dir(runtime.cmd_opts, SCRIPT_PATH), params.template_filename)
    dataset.list_images(params.data_root)
    if runtime.models.current is not None:
        core.model_family(runtime.models.current, "hypernetwork")
    if params.varsize and params.batch_size > 1:
        raise ValidationError("batch_size", "must be 1 with 'Do not resize images' (varsize)")


def run_training(runtime: Any, params: TrainHypernetworkParams, state: Any,
                 monitor: TrainingMonitor | None = None, *, is_api: bool = False) -> session.TrainingResult:
    check_request(runtime, params)
    name = params.hypernetwork_name.strip()
    runtime.hypernetworks.refresh()
    path = runtime.hypernetworks.files.get(name)
    if path is None:
        raise ValidationError("hypernetwork_name", f"no hypernetwork named {name!r} in "
                                                   f"{runtime.paths.hypernetwork_dir} (create it first)")
    model = session.current_model(runtime)
    core.model_family(model, "hypernetwork")
    layers, options, initial_step = load_for_training(path)
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
    checkpoint, checkpoint_name = session.checkpoint_identity(runtime)
    conditioner = runtime.conditioner_for(model)
    objective = core.NoiseObjective.for_model(model)
    unet = model.pipe.unet
    modules = [m for pair in layers.values() for m in pair]
    weights = [p for m in modules for p in m.parameters()]
    for p in weights:
        p.requires_grad_(True)
    last_texts: list[str] = []

    def compute_loss(batch: list[Any]) -> torch.Tensor:
        texts = [dataset.expand_template(rng.choice(lines), e.filename_text, name, rng, params.shuffle_tags,
                                         params.tag_drop_out) for e in batch]
        last_texts[:] = texts
        with torch.no_grad():  # only the UNet side is trained
            cond = core.encode_prompts(conditioner, texts)
        weight = torch.stack([e.weight for e in batch]) if params.use_weight and batch[0].weight is not None else None
        return objective.loss(unet, core.batch_latents(batch, gen), cond, gen, weight)

    def save(step: int, copy: bool) -> None:
        blob = hypernetwork_data(name, layers, options, step, checkpoint, checkpoint_name)
        save_file(path, blob)
        if copy:
            save_file(log_dir / "hypernetworks" / f"{name}-{step}.pt", blob)

    def preview(step: int, batch: list[Any]) -> Preview | None:
        for m in modules:
            m.eval()
        try:
            return session.make_preview(runtime, last_texts[0] if last_texts else name, params,
                                        from_txt2img=params.preview_from_txt2img)
        finally:
            for m in modules:
                m.train()

    cfg = LoopConfig(name=name, steps=params.steps, initial_step=initial_step, gradient_step=params.gradient_step,
                     clip_mode=params.clip_grad_mode, clip=clip, create_image_every=params.create_image_every,
                     save_every=params.save_hypernetwork_every,
                     write_csv_every=int(runtime.opts.get("training_write_csv_every", 500) or 0),
                     log_dir=log_dir, csv_name="hypernetwork_loss.csv", weight_decay=0.01)
    with core.frozen(model):
        core.clean_model(runtime, model)
        core.cache_latents(model, data, params.latent_sampling_method, gen, state)
        session.save_settings(runtime, log_dir, params, initial_step,
                              {"seed": seed, "model": checkpoint_name, "model_hash": checkpoint,
                               "num_of_dataset_images": len(data.entries)})
        for m in modules:
            m.train()
        with installed(model, layers):
            result = run_loop(cfg, state, data, rng, [Group(weights, lr)], compute_loss, save, preview, monitor)
    verb = "interrupted" if result.interrupted else "finished"
    info = f"Training {verb} at {result.step} steps.\nHypernetwork saved to {path}"
    return session.TrainingResult("hypernetwork", name, str(path), result.step, result.interrupted, str(log_dir),
                                  info, result.losses, result.images)
