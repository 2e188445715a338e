"""Loading a checkpoint (single file or diffusers folder) into diffusers components, fully offline."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.errors import ModelLoadError, UnknownArchitectureError
from modules.model_detection import Detection, detect_architecture, variant_from_ldm_yaml
from modules.safe_load import load_state_dict

log = logging.getLogger(__name__)

# Nothing we load may reach the network; set before diffusers/transformers import (they read it once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass
class LoadedModel:
    """A ready pipeline plus what we know about it (family, why, where from, how long it took)."""

    pipe: Any
    variant: str
    reason: str
    path: str
    config_dir: str
    prediction_type: str
    dtype: Any
    device: Any
    load_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sdxl(self) -> bool:
        return self.variant.startswith("sdxl")

    @property
    def is_sdxl_refiner(self) -> bool:
        return self.variant == "sdxl-refiner"

    @property
    def is_sd2(self) -> bool:
        return self.variant.startswith("sd2")

    @property
    def is_sd1(self) -> bool:
        return self.variant.startswith("sd1")

    @property
    def is_inpainting(self) -> bool:
        return self.variant.endswith("inpainting")


def bundled_config_dir(variant: str) -> Path:
    from modules.model_configs import config_dir

    return config_dir(variant)


def resolve_config(detection: Detection, override: Path | None) -> tuple[Path, str, str, str | None]:
    """(config folder, variant, reason, forced prediction type) after applying a .yaml/folder override."""
    if override is None:
        return bundled_config_dir(detection.variant), detection.variant, detection.reason, None
    override = Path(override)
    if override.is_dir():
        sched = override / "scheduler" / "scheduler_config.json"
        prediction = None
        if sched.is_file():
            prediction = json.loads(sched.read_text(encoding="utf-8")).get("prediction_type")
        variant = detection.variant
        if prediction == "v_prediction" and variant == "sd2-512":
            variant = "sd2-768-v"
        return (override, variant, f"{detection.reason}; configs from the folder {override.name}/ beside the file",
                prediction or "epsilon")
    try:
        hint, prediction = variant_from_ldm_yaml(override.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(override, f"cannot use this config file: {e}") from e
    variant = hint or detection.variant
    if variant.split("-")[0] != detection.variant.split("-")[0]:
        raise ModelLoadError(override, f"this .yaml describes {variant} but the checkpoint is {detection.variant} "
                                       f"({detection.reason})")
    return (bundled_config_dir(variant), variant, f"{detection.reason}; {override.name} beside the file selects "
                                                  f"{variant} ({prediction})", prediction)


def _component_specs(config_dir: Path) -> dict[str, tuple[str, str]]:
    index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
    specs = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue
        if name in ("safety_checker", "feature_extractor", "image_encoder"):
            continue
        specs[name] = (value[0], value[1])
    return specs


def _pipeline_class(config_dir: Path) -> Any:
    import diffusers

    index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
    return getattr(diffusers, index["_class_name"])


_TOKENIZERS: dict[tuple[str, str], Any] = {}


def _load_component(name: str, library: str, class_name: str, checkpoint: dict, config_dir: Path, dtype: Any) -> Any:
    # diffusers' per-component single-file loader is internal API; diffusers is pinned exactly and this is the
    # only place that calls it.
    from diffusers import pipelines
    from diffusers.loaders.single_file import load_single_file_sub_model

    if name.startswith("tokenizer"):
        # Parsing the 49k-entry BPE vocabulary takes ~0.1 s; tokenizers are read-only, so share them per folder.
        key = (str(config_dir), name)
        if key not in _TOKENIZERS:
            import transformers

            _TOKENIZERS[key] = getattr(transformers, class_name).from_pretrained(str(config_dir), subfolder=name)
        return _TOKENIZERS[key]
    context = contextlib.nullcontext()
    if name.startswith("text_encoder"):
        # The text encoder is built on the meta device and then filled from the checkpoint; transformers would
        # still run its random initialisers over every layer first. Its own switch skips that wasted work.
        from transformers.initialization import no_init_weights

        context = no_init_weights()
    with context:
        return load_single_file_sub_model(
            library_name=library, class_name=class_name, name=name, checkpoint=checkpoint, pipelines=pipelines,
            is_pipeline_module=hasattr(pipelines, library), cached_model_config_path=str(config_dir),
            local_files_only=True, torch_dtype=dtype,
        )


def is_v_prediction_sd2(unet: Any) -> bool:
    """A1111's test: at t=999 on a constant input, a v-model's output minus the input averages below -1."""
    import torch

    ctx_dim = unet.config.cross_attention_dim
    p = next(unet.parameters())
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, dtype=p.dtype, device=p.device)
    ctx = torch.full((1, 77, ctx_dim), 0.5, dtype=p.dtype, device=p.device)
    with torch.no_grad():
        out = unet(x, torch.tensor([999], device=p.device), encoder_hidden_states=ctx).sample
    return float((out.float() - x.float()).mean()) < -1


def _assemble(checkpoint: dict, config_dir: Path, dtype: Any, vae_dtype: Any, path: Path,
              skip: tuple[str, ...] = (), given: dict[str, Any] | None = None) -> dict[str, Any]:
    components: dict[str, Any] = dict(given or {})
    for name, (library, class_name) in _component_specs(config_dir).items():
        if name in components or name in skip:
            continue
        try:
            components[name] = _load_component(name, library, class_name, checkpoint, config_dir,
                                               vae_dtype if name == "vae" else dtype)
        except ModelLoadError:
            raise
        except Exception as e:  # diffusers/transformers raise many types on shape or key mismatches
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(path, f"the {name} weights do not fit the {config_dir.name} config ({first[:300]})"
                                 ) from e
    return components


def load_single_file(path: Path | str, *, device: Any, dtype: Any, vae_dtype: Any | None = None,
                     config_override: Path | None = None, prediction_type: str | None = None,
                     disable_mmap: bool = False) -> LoadedModel:
    """Load a `.safetensors`/`.ckpt` checkpoint with the bundled local configs (never the network)."""
    import torch

    start = time.perf_counter()
    path = Path(path)
    vae_dtype = vae_dtype or dtype
    checkpoint = load_state_dict(path, disable_mmap=disable_mmap)
    detection = detect_architecture({k: tuple(v.shape) for k, v in checkpoint.items()}, source=str(path))
    config_dir, variant, reason, forced = resolve_config(detection, config_override)
    prediction = prediction_type or forced

    given: dict[str, Any] = {}
    if detection.needs_v_check and prediction is None and config_override is None:
        # Decide epsilon vs v as A1111 does: run the UNet once; the 768-v config differs only in
        # attention upcasting and sample size, so the UNet is rebuilt from that config when needed.
        unet = _load_component("unet", "diffusers", "UNet2DConditionModel", checkpoint, config_dir, torch.float32)
        is_v = is_v_prediction_sd2(unet)
        prediction = "v_prediction" if is_v else "epsilon"
        reason += f"; test run: {'v-prediction' if is_v else 'epsilon'}"
        if is_v:
            variant, config_dir = "sd2-768-v", bundled_config_dir("sd2-768-v")
            del unet
        else:
            given["unet"] = unet.to(dtype)
    elif prediction is not None and variant == "sd2-512" and prediction == "v_prediction":
        variant, config_dir = "sd2-768-v", bundled_config_dir("sd2-768-v") if config_override is None else config_dir
    components = _assemble(checkpoint, config_dir, dtype, vae_dtype, path, given=given)
    del checkpoint

    prediction = prediction or _scheduler_prediction(config_dir)
    pipe = _build_pipeline(config_dir, components, prediction)
    pipe.to(device)
    return LoadedModel(pipe=pipe, variant=variant, reason=reason, path=str(path), config_dir=str(config_dir),
                       prediction_type=prediction, dtype=dtype, device=device,
                       load_seconds=time.perf_counter() - start)


def _scheduler_prediction(config_dir: Path) -> str:
    sched = config_dir / "scheduler" / "scheduler_config.json"
    if sched.is_file():
        return json.loads(sched.read_text(encoding="utf-8")).get("prediction_type", "epsilon")
    return "epsilon"


def _build_pipeline(config_dir: Path, components: dict[str, Any], prediction: str) -> Any:
    pipeline_class = _pipeline_class(config_dir)
    if "scheduler" in components:
        sched = components["scheduler"]
        if sched.config.get("prediction_type") != prediction:
            components["scheduler"] = sched.__class__.from_config(sched.config, prediction_type=prediction)
    expected, _optional = pipeline_class._get_signature_keys(pipeline_class)
    kwargs = {k: components.get(k) for k in expected}
    if "requires_safety_checker" in pipeline_class.__init__.__code__.co_varnames:
        kwargs["requires_safety_checker"] = False
    pipe = pipeline_class(**kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _variant_of_diffusers_folder(folder: Path) -> tuple[str, str]:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    cls = index.get("_class_name", "")
    inpaint = unet_cfg.get("in_channels") == 9
    ctx = unet_cfg.get("cross_attention_dim")
    if "XL" in cls:
        variant = "sdxl-refiner" if index.get("text_encoder", [None])[0] is None else \
            ("sdxl-inpainting" if inpaint else "sdxl-base")
    elif index.get("text_encoder", [None, None])[1] and _te_hidden(folder) == 1024 or ctx == 1024:
        variant = "sd2-inpainting" if inpaint else "sd2-512"
    elif unet_cfg.get("in_channels") == 8:
        variant = "sd1-instruct-pix2pix"
    else:
        variant = "sd1-inpainting" if inpaint else "sd1"
    return variant, f"diffusers folder: pipeline {cls}, UNet input channels {unet_cfg.get('in_channels')}, " \
                    f"context dim {ctx}"


def _te_hidden(folder: Path) -> int | None:
    cfg = folder / "text_encoder" / "config.json"
    if not cfg.is_file():
        return None
    return json.loads(cfg.read_text(encoding="utf-8")).get("hidden_size")


def load_diffusers_folder(folder: Path | str, *, device: Any, dtype: Any, vae_dtype: Any | None = None,
                          prediction_type: str | None = None) -> LoadedModel:
    """Load a diffusers-format model folder from disk only."""
    import diffusers

    start = time.perf_counter()
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(folder, "not a diffusers model folder (no model_index.json)")
    variant, reason = _variant_of_diffusers_folder(folder)
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True,
                                                           safety_checker=None, requires_safety_checker=False)
    except TypeError:
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(folder, f"the diffusers folder could not be loaded ({first[:300]})") from e
    if vae_dtype is not None and getattr(pipe, "vae", None) is not None:
        pipe.vae.to(vae_dtype)
    prediction = prediction_type or pipe.scheduler.config.get("prediction_type", "epsilon")
    if prediction == "v_prediction" and variant == "sd2-512":
        variant = "sd2-768-v"
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    return LoadedModel(pipe=pipe, variant=variant, reason=reason, path=str(folder), config_dir=str(folder),
                       prediction_type=prediction, dtype=dtype, device=device,
                       load_seconds=time.perf_counter() - start)


def load_model(path: Path | str, *, device: Any, dtype: Any, vae_dtype: Any | None = None,
               config_override: Path | None = None, prediction_type: str | None = None) -> LoadedModel:
    """Entry point: dispatch on file or folder; every failure is a ModelLoadError naming the file."""
    path = Path(path)
    try:
        if path.is_dir() and (path / "model_index.json").is_file():
            return load_diffusers_folder(path, device=device, dtype=dtype, vae_dtype=vae_dtype,
                                         prediction_type=prediction_type)
        return load_single_file(path, device=device, dtype=dtype, vae_dtype=vae_dtype,
                                config_override=config_override, prediction_type=prediction_type)
    except (ModelLoadError, UnknownArchitectureError):
        raise
    except MemoryError as e:
        raise ModelLoadError(path, "not enough memory to load this model") from e
