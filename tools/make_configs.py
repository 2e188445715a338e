"""Regenerate the offline diffusers config folders configs/<variant>/ (JSON only, no weights), deterministically.

UNet and VAE configs are not typed in by hand: they are derived by diffusers' own converters
(``create_unet_diffusers_config_from_ldm`` / ``create_vae_diffusers_config_from_ldm``) from the relevant fields of the
public original model yaml files, transcribed below as dicts:

* SD1: CompVis/stable-diffusion ``configs/stable-diffusion/v1-inference.yaml`` (inpainting: in_channels 9, as in
  runwayml's ``v1-inpainting-inference.yaml``);
* SD2: Stability-AI/stablediffusion ``configs/stable-diffusion/v2-inference.yaml`` (512, epsilon),
  ``v2-inference-v.yaml`` (768, v) and ``v2-inpainting-inference.yaml``;
* SDXL: Stability-AI/generative-models ``configs/inference/sd_xl_base.yaml`` and ``sd_xl_refiner.yaml``
  (inpainting = base with in_channels 9).

Each component is then instantiated on the meta device and its complete config (every constructor argument,
defaults included) is written, so the files do not depend on a future diffusers/transformers changing a default.

Run: ``HF_HUB_OFFLINE=1 venv/bin/python tools/make_configs.py`` (needs configs/clip-tokenizer, see
tools/make_clip_tokenizer.py). Use ``--check`` to verify the committed folders are up to date without writing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from modules.model_configs import CONFIGS_DIR, VARIANTS, variant_info  # noqa: E402

# --- the original yaml fields the converters read --------------------------------------------------------------

# first_stage_config.params.ddconfig: identical in every SD1/SD2/SDXL yaml.
_VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}

_SD1_UNET = {
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "num_heads": 8,
    "use_spatial_transformer": True,
    "transformer_depth": 1,
    "context_dim": 768,
    "legacy": False,
}

_SD2_UNET = {
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "num_head_channels": 64,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": True,
    "transformer_depth": 1,
    "context_dim": 1024,
    "legacy": False,
}

_SDXL_BASE_UNET = {
    "adm_in_channels": 2816,
    "num_classes": "sequential",
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "attention_resolutions": [4, 2],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4],
    "num_head_channels": 64,
    "use_linear_in_transformer": True,
    "transformer_depth": [1, 2, 10],
    "context_dim": 2048,
    "legacy": False,
}

_SDXL_REFINER_UNET = {
    "adm_in_channels": 2560,
    "num_classes": "sequential",
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 384,
    "attention_resolutions": [4, 2],
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "num_head_channels": 64,
    "use_linear_in_transformer": True,
    "transformer_depth": 4,
    "context_dim": [1280, 1280, 1280, 1280],
    "legacy": False,
}


def _ldm_config(unet_params: dict[str, Any], scale_factor: float, sgm: bool, in_channels: int = 4) -> dict:
    """Return the part of an LDM (ldm.*, key unet_config) or SGM (sgm.*, key network_config) yaml the converters use."""
    unet = copy.deepcopy(unet_params)
    unet["in_channels"] = in_channels
    params: dict[str, Any] = {
        "linear_start": 0.00085,
        "linear_end": 0.012,
        "timesteps": 1000,
        "scale_factor": scale_factor,
        "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": copy.deepcopy(_VAE_DDCONFIG)}},
        ("network_config" if sgm else "unet_config"): {"params": unet},
    }
    return {"model": {"params": params}}


# --- per-variant recipe ----------------------------------------------------------------------------------------

_UNET_SOURCE = {
    "sd1": (_SD1_UNET, False, 4),
    "sd1-inpainting": (_SD1_UNET, False, 9),
    "sd1-instruct-pix2pix": (_SD1_UNET, False, 8),
    "sd2-512": (_SD2_UNET, False, 4),
    "sd2-768-v": (_SD2_UNET, False, 4),
    "sd2-inpainting": (_SD2_UNET, False, 9),
    "sdxl-base": (_SDXL_BASE_UNET, True, 4),
    "sdxl-refiner": (_SDXL_REFINER_UNET, True, 4),
    "sdxl-inpainting": (_SDXL_BASE_UNET, True, 9),
}

# transformers CLIPTextConfig sizes. CLIP-L: openai ViT-L/14 text tower. OpenCLIP-H: ViT-H-14's 24-layer tower used
# to its penultimate layer, so SD2 stores it as a 23-layer CLIPTextModel. bigG: ViT-bigG-14 (SDXL text_encoder_2).
_CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
           "hidden_act": "quick_gelu", "projection_dim": 768}  # fmt: skip
_OPENCLIP_H = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23,
               "hidden_act": "gelu", "projection_dim": 512}  # fmt: skip
_OPENCLIP_BIGG = {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32,
                  "hidden_act": "gelu", "projection_dim": 1280}  # fmt: skip
_CLIP_COMMON = {"vocab_size": 49408, "max_position_embeddings": 77, "layer_norm_eps": 1e-5,
                "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1}  # fmt: skip

# (subfolder, architecture, sizes, tokenizer pad token). SD2 and SDXL's OpenCLIP tokenizers pad with "!" (id 0).
_TEXT_ENCODERS: dict[str, list[tuple[str, str, dict, str]]] = {
    "sd1": [("text_encoder", "CLIPTextModel", _CLIP_L, "<|endoftext|>")],
    "sd2": [("text_encoder", "CLIPTextModel", _OPENCLIP_H, "!")],
    "sdxl": [
        ("text_encoder", "CLIPTextModel", _CLIP_L, "<|endoftext|>"),
        ("text_encoder_2", "CLIPTextModelWithProjection", _OPENCLIP_BIGG, "!"),
    ],
    "sdxl-refiner": [("text_encoder_2", "CLIPTextModelWithProjection", _OPENCLIP_BIGG, "!")],
}

_SCHEDULER_BASE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    # Not PNDM/Euler arguments, but kept in the config so a DDIM/DPM scheduler built with
    # from_config(pipe.scheduler.config) gets the SD values instead of its own defaults (DDIM defaults clip on).
    "clip_sample": False,
    "set_alpha_to_one": False,
}


def _text_encoders(variant: str) -> list[tuple[str, str, dict, str]]:
    if variant == "sdxl-refiner":
        return _TEXT_ENCODERS["sdxl-refiner"]
    return _TEXT_ENCODERS[variant_info(variant)["family"]]


def unet_config(variant: str) -> dict[str, Any]:
    """Return the minimal UNet2DConditionModel config diffusers derives from the original yaml."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    info = variant_info(variant)
    unet_params, sgm, in_channels = _UNET_SOURCE[variant]
    ldm = _ldm_config(unet_params, info["scaling_factor"], sgm, in_channels)
    with warnings.catch_warnings():
        # Passing image_size explicitly is "deprecated" but avoids needing a real checkpoint to infer it.
        warnings.simplefilter("ignore", FutureWarning)
        config = create_unet_diffusers_config_from_ldm(ldm, {}, image_size=info["default_resolution"])
    # SD 2.1 768-v needs attention upcast to fp32 or it produces NaNs/black images in fp16 (diffusers sets this for
    # 2.1 in convert_from_ckpt); upcasting is harmless for the other variants, which do not need it.
    config["upcast_attention"] = variant == "sd2-768-v"
    return config


def vae_config(variant: str) -> dict[str, Any]:
    """Return the minimal AutoencoderKL config diffusers derives from the original yaml."""
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    info = variant_info(variant)
    unet_params, sgm, in_channels = _UNET_SOURCE[variant]
    ldm = _ldm_config(unet_params, info["scaling_factor"], sgm, in_channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        config = create_vae_diffusers_config_from_ldm(ldm, {}, image_size=info["default_resolution"])
    # The SDXL VAE overflows in fp16; diffusers upcasts it to fp32 for decoding when this is set.
    config["force_upcast"] = info["is_sdxl"]
    return config


def scheduler_config(variant: str) -> tuple[str, dict[str, Any]]:
    info = variant_info(variant)
    config = dict(_SCHEDULER_BASE, prediction_type=info["prediction_type"])
    if info["is_sdxl"]:
        return "EulerDiscreteScheduler", config
    return "PNDMScheduler", dict(config, skip_prk_steps=True)


def model_index(variant: str) -> dict[str, Any]:
    import diffusers

    info = variant_info(variant)
    sched_class, _ = scheduler_config(variant)
    index: dict[str, Any] = {
        "_class_name": info["pipeline_class"],
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "scheduler": ["diffusers", sched_class],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    for folder, arch, _sizes, _pad in _text_encoders(variant):
        index[folder] = ["transformers", arch]
        index[folder.replace("text_encoder", "tokenizer")] = ["transformers", "CLIPTokenizer"]
    if info["is_sdxl"]:
        index["image_encoder"] = [None, None]
        is_refiner = variant == "sdxl-refiner"
        if is_refiner:
            index["text_encoder"] = [None, None]
            index["tokenizer"] = [None, None]
        # As in the official repos: the refiner conditions on aesthetic score and keeps empty-prompt embeddings.
        index["force_zeros_for_empty_prompt"] = not is_refiner
        if info["pipeline_class"] != "StableDiffusionXLPipeline":  # only img2img/inpaint pipelines take this
            index["requires_aesthetics_score"] = is_refiner
    else:
        index["safety_checker"] = [None, None]
        index["requires_safety_checker"] = False
    return index


def tokenizer_files(pad_token: str) -> dict[str, dict[str, Any]]:
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    # model_max_length must be 77: transformers 5 otherwise writes/assumes 1e30 and the pipelines overflow.
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        **special,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


# --- materialise -----------------------------------------------------------------------------------------------


def _full_diffusers_config(cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Instantiate cls from config (on the meta device for models) and return its complete config as saved."""
    from accelerate import init_empty_weights

    if hasattr(cls, "set_timesteps"):  # a scheduler: cheap, no weights
        obj = cls.from_config(config)
    else:
        with init_empty_weights():
            obj = cls.from_config(config)
    return json.loads(obj.to_json_string())


def _full_clip_config(arch: str, sizes: dict[str, Any]) -> dict[str, Any]:
    from transformers import CLIPTextConfig

    cfg = CLIPTextConfig(**_CLIP_COMMON, **sizes)
    cfg.architectures = [arch]
    return cfg.to_dict()


def build_variant(variant: str) -> dict[str, Any]:
    """Return {relative path: JSON-able content or ('symlink', target)} for one variant folder."""
    import diffusers

    files: dict[str, Any] = {"model_index.json": model_index(variant)}
    sched_class, sched = scheduler_config(variant)
    files["scheduler/scheduler_config.json"] = _full_diffusers_config(getattr(diffusers, sched_class), sched)
    files["unet/config.json"] = _full_diffusers_config(diffusers.UNet2DConditionModel, unet_config(variant))
    files["vae/config.json"] = _full_diffusers_config(diffusers.AutoencoderKL, vae_config(variant))
    for folder, arch, sizes, pad in _text_encoders(variant):
        files[f"{folder}/config.json"] = _full_clip_config(arch, sizes)
        tok = folder.replace("text_encoder", "tokenizer")
        for name, content in tokenizer_files(pad).items():
            files[f"{tok}/{name}"] = content
        # Relative symlinks: the 1.5 MB vocabulary is stored once, in configs/clip-tokenizer.
        for name in ("vocab.json", "merges.txt"):
            files[f"{tok}/{name}"] = ("symlink", f"../../clip-tokenizer/{name}")
    return files


def _dump(content: Any) -> str:
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def write_variant(variant: str, out_root: Path) -> None:
    folder = out_root / variant
    for rel, content in build_variant(variant).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        if isinstance(content, tuple):
            path.symlink_to(content[1])
        else:
            path.write_text(_dump(content), encoding="utf-8")


def check_variant(variant: str, out_root: Path) -> list[str]:
    """Return the differences between the folder on disk and what this script would write."""
    problems = []
    folder = out_root / variant
    expected = build_variant(variant)
    for rel, content in expected.items():
        path = folder / rel
        if isinstance(content, tuple):
            if not path.is_symlink() or os.readlink(path) != content[1]:
                problems.append(f"{path}: expected a symlink to {content[1]}")
        elif not path.is_file() or path.read_text(encoding="utf-8") != _dump(content):
            problems.append(f"{path}: missing or out of date")
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    problems += [f"{folder / rel}: not generated by this script" for rel in sorted(on_disk - set(expected))]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CONFIGS_DIR, help=f"configs root (default {CONFIGS_DIR})")
    parser.add_argument("--check", action="store_true", help="only verify the folders; exit 1 if they differ")
    parser.add_argument("variants", nargs="*", default=list(VARIANTS), help="variants (default: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (args.out / "clip-tokenizer" / "vocab.json").is_file():
        print(f"error: {args.out / 'clip-tokenizer'} is missing; run tools/make_clip_tokenizer.py", file=sys.stderr)
        return 2
    problems: list[str] = []
    for variant in args.variants:
        if args.check:
            problems += check_variant(variant, args.out)
        else:
            write_variant(variant, args.out)
            print(f"wrote {args.out / variant}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
