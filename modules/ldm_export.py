"""Convert diffusers component state dicts to the original LDM/SGM single-file checkpoint layout."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from modules.errors import WebUIError

# Prefixes of the original CompVis (SD1/SD2) and Stability "generative-models" (SDXL) checkpoints.
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_BIGG_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_BIGG_PREFIX = "conditioner.embedders.0.model."

# Which text encoder goes under which prefix, and in which layout, for every variant we write.
# ("clip" = HF CLIPTextModel names; "openclip" = open_clip resblocks with fused q/k/v.)
_TEXT_ENCODERS: dict[str, list[tuple[str, str, str]]] = {
    "sd1": [("text_encoder", "clip", SD1_CLIP_PREFIX)],
    "sd1-inpainting": [("text_encoder", "clip", SD1_CLIP_PREFIX)],
    "sd1-instruct-pix2pix": [("text_encoder", "clip", SD1_CLIP_PREFIX)],
    "sd2-512": [("text_encoder", "openclip", SD2_OPENCLIP_PREFIX)],
    "sd2-768-v": [("text_encoder", "openclip", SD2_OPENCLIP_PREFIX)],
    "sd2-inpainting": [("text_encoder", "openclip", SD2_OPENCLIP_PREFIX)],
    "sdxl-base": [("text_encoder", "clip", SDXL_CLIP_L_PREFIX), ("text_encoder_2", "openclip", SDXL_BIGG_PREFIX)],
    "sdxl-refiner": [("text_encoder_2", "openclip", SDXL_REFINER_BIGG_PREFIX)],
    "sdxl-inpainting": [
        ("text_encoder", "clip", SDXL_CLIP_L_PREFIX),
        ("text_encoder_2", "openclip", SDXL_BIGG_PREFIX),
    ],
}
VARIANTS: tuple[str, ...] = tuple(_TEXT_ENCODERS)

# open_clip's logit_scale is initialised to log(1/0.07) and trained towards log(100); the value is never
# used for generation, it only has to exist because real checkpoints carry it.
_LOGIT_SCALE = math.log(100.0)

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_TOP = {
    "conv_in": "conv_in",
    "conv_out": "conv_out",
    "conv_norm_out": "norm_out",
}
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


class LdmExportError(WebUIError, ValueError):
    """A state dict cannot be expressed in the original LDM layout (unknown key, wrong shape, bad variant)."""


def _split(rest: str, table: Mapping[str, str], what: str, key: str) -> str:
    """Rename the leading module path of `rest` ('norm1.weight' -> 'in_layers.0.weight') using `table`."""
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    raise LdmExportError(f"cannot map {what} key {key!r}: unknown sub-module in {rest!r}")


def _layers_per_block(unet_config: Mapping[str, Any]) -> int:
    layers = unet_config.get("layers_per_block")
    if isinstance(layers, (list, tuple)):
        if len(set(layers)) != 1:
            raise LdmExportError(f"per-block layers_per_block {list(layers)} has no LDM equivalent")
        layers = layers[0]
    if not isinstance(layers, int) or layers < 1:
        raise LdmExportError(f"unet config has no usable layers_per_block (got {layers!r})")
    return layers


def unet_to_ldm(unet_sd: Mapping[str, torch.Tensor], unet_config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet2DConditionModel state dict to LDM `input_blocks/middle_block/output_blocks` keys.

    The returned keys have no `model.diffusion_model.` prefix. Tensors are passed through untouched.
    """
    per_block = _layers_per_block(unet_config)
    # Up blocks with attention put their upsampler after the attention (`.2.conv`), others right after the resnet.
    up_has_attention = {int(m.group(1)) for k in unet_sd if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in unet_sd.items():
        new = _unet_key(key, per_block, up_has_attention)
        if new in out:
            raise LdmExportError(f"two UNet keys map to {new!r}")
        out[new] = tensor
    return out


def _unet_key(key: str, per_block: int, up_has_attention: set[int]) -> str:
    for old, new in _UNET_TOP.items():
        if key.startswith(old + ".") and key.count(".") == old.count(".") + 1:
            return new + key[len(old) :]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)$", key)
    if m:
        block, kind, layer, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        base = 1 + block * (per_block + 1)
        if kind == "resnets":
            return f"input_blocks.{base + layer}.0.{_split(rest, _UNET_RESNET, 'UNet', key)}"
        if kind == "attentions":
            return f"input_blocks.{base + layer}.1.{rest}"
        if not rest.startswith("conv."):
            raise LdmExportError(f"cannot map UNet key {key!r}: unexpected downsampler layout")
        return f"input_blocks.{base + per_block}.0.op.{rest[len('conv.') :]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)$", key)
    if m:
        kind, layer, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == "attentions":
            return f"middle_block.{1 + layer}.{rest}"
        return f"middle_block.{2 * layer}.{_split(rest, _UNET_RESNET, 'UNet', key)}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)$", key)
    if m:
        block, kind, layer, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        base = block * (per_block + 1)
        if kind == "resnets":
            return f"output_blocks.{base + layer}.0.{_split(rest, _UNET_RESNET, 'UNet', key)}"
        if kind == "attentions":
            return f"output_blocks.{base + layer}.1.{rest}"
        position = 2 if block in up_has_attention else 1
        return f"output_blocks.{base + per_block}.{position}.{rest}"
    raise LdmExportError(f"cannot map UNet key {key!r} to the LDM layout (unsupported UNet feature?)")


def vae_to_ldm(vae_sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers AutoencoderKL state dict to LDM `encoder.down/decoder.up/mid` keys.

    The returned keys have no `first_stage_model.` prefix. Mid-block attention projections become 1x1 convs,
    as the original autoencoder stores them.
    """
    up_ids = {int(m.group(1)) for k in vae_sd if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    num_up = max(up_ids) + 1 if up_ids else 0
    out: dict[str, torch.Tensor] = {}
    for key, tensor in vae_sd.items():
        new, tensor = _vae_key(key, tensor, num_up)
        if new in out:
            raise LdmExportError(f"two VAE keys map to {new!r}")
        out[new] = tensor
    return out


def _vae_key(key: str, tensor: torch.Tensor, num_up: int) -> tuple[str, torch.Tensor]:
    if key.split(".")[0] in ("quant_conv", "post_quant_conv"):
        return key, tensor
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        raise LdmExportError(f"cannot map VAE key {key!r} to the LDM layout")
    for old, new in _VAE_TOP.items():
        if rest.startswith(old + ".") and rest.count(".") == 1:
            return f"{side}.{new}{rest[len(old) :]}", tensor
    m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)$", rest)
    if m:
        direction, block, kind, layer, tail = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        # The LDM decoder numbers its up blocks from the lowest resolution upwards, diffusers the other way.
        ldm_block = block if direction == "down" else num_up - 1 - block
        if kind == "resnets":
            return f"{side}.{direction}.{ldm_block}.block.{layer}.{_split(tail, _VAE_RESNET, 'VAE', key)}", tensor
        sampler = "downsample" if kind == "downsamplers" else "upsample"
        return f"{side}.{direction}.{ldm_block}.{sampler}.{tail}", tensor
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.+)$", rest)
    if m:
        return f"{side}.mid.block_{int(m.group(1)) + 1}.{_split(m.group(2), _VAE_RESNET, 'VAE', key)}", tensor
    m = re.match(r"mid_block\.attentions\.0\.(.+)$", rest)
    if m:
        new_rest = _split(m.group(1), _VAE_ATTENTION, "VAE", key)
        if new_rest.split(".")[0] in ("q", "k", "v", "proj_out") and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        return f"{side}.mid.attn_1.{new_rest}", tensor
    raise LdmExportError(f"cannot map VAE key {key!r} to the LDM layout")


def _with_text_model(te_sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 flattened CLIPTextModel (no `text_model.` level); restore it so both layouts agree."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in te_sd.items():
        if key.startswith(("text_model.", "text_projection.")):
            out[key] = tensor
        else:
            out["text_model." + key] = tensor
    return out


def clip_to_ldm(
    te_sd: Mapping[str, torch.Tensor], prefix: str = SD1_CLIP_PREFIX, position_ids: bool = True
) -> dict[str, torch.Tensor]:
    """HF CLIP text model state dict -> `<prefix>text_model.*` (SD1 CLIP-L, SDXL's first embedder).

    `position_ids` adds the int64 `embeddings.position_ids` buffer that real checkpoints carry.
    """
    sd = _with_text_model(te_sd)
    out = {prefix + key: tensor for key, tensor in sd.items() if not key.startswith("text_projection.")}
    pos_key = "text_model.embeddings.position_embedding.weight"
    if pos_key not in sd:
        raise LdmExportError(f"CLIP text encoder state dict has no {pos_key!r}")
    if position_ids and prefix + "text_model.embeddings.position_ids" not in out:
        pos = sd[pos_key]
        out[prefix + "text_model.embeddings.position_ids"] = torch.arange(pos.shape[0], device=pos.device)[None]
    return out


def openclip_to_ldm(
    te_sd: Mapping[str, torch.Tensor], prefix: str = SD2_OPENCLIP_PREFIX, extra_layers: int = 0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """HF CLIP text model state dict -> open_clip text tower layout under `prefix`.

    q/k/v projections are fused into `attn.in_proj_weight/in_proj_bias`; `text_projection` is stored transposed
    (`x @ text_projection`, as open_clip does). A model without a projection (SD2's CLIPTextModel) gets a seeded
    random one, and `extra_layers` seeded random resblocks are appended: real SD2 files hold all 24 OpenCLIP-H
    blocks while diffusers keeps 23. Meta-device inputs give meta-device fillers.
    """
    sd = _with_text_model(te_sd)
    emb = sd.get("text_model.embeddings.token_embedding.weight")
    if emb is None:
        raise LdmExportError("text encoder state dict has no 'text_model.embeddings.token_embedding.weight'")
    width, dtype, device = emb.shape[1], emb.dtype, emb.device
    out: dict[str, torch.Tensor] = {}
    layers: set[int] = set()
    fused: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in sd.items():
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()
        elif key == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = tensor
        elif key == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = tensor
        elif key.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + key.rsplit(".", 1)[1]] = tensor
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)$", key):
            layer, rest = int(m.group(1)), m.group(2)
            layers.add(layer)
            qkv = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if qkv:
                fused.setdefault((layer, qkv.group(2)), {})[qkv.group(1)] = tensor
            else:
                new = _split(rest, _OPENCLIP_LAYER, "text encoder", key)
                out[f"{prefix}transformer.resblocks.{layer}.{new}"] = tensor
        elif key != "text_model.embeddings.position_ids":
            raise LdmExportError(f"cannot map text encoder key {key!r} to the open_clip layout")
    for (layer, kind), parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise LdmExportError(f"text encoder layer {layer} lacks one of q/k/v_proj.{kind}")
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]], dim=0
        )
    gen = _generator(device, seed)
    mlp = _mlp_width(sd, width)
    first_extra = max(layers) + 1 if layers else 0
    for layer in range(first_extra, first_extra + extra_layers):
        out.update(_random_resblock(f"{prefix}transformer.resblocks.{layer}.", width, mlp, dtype, device, gen))
    if prefix + "text_projection" not in out:
        out[prefix + "text_projection"] = _randn((width, width), dtype, device, gen, 0.02)
    out[prefix + "logit_scale"] = torch.full((), _LOGIT_SCALE, dtype=dtype, device=device)
    return out


def _mlp_width(sd: Mapping[str, torch.Tensor], width: int) -> int:
    fc1 = sd.get("text_model.encoder.layers.0.mlp.fc1.weight")
    return int(fc1.shape[0]) if fc1 is not None else 4 * width


def _generator(device: torch.device, seed: int) -> torch.Generator | None:
    if device.type == "meta":
        return None
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def _randn(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, gen: torch.Generator | None, scale: float
) -> torch.Tensor:
    if device.type == "meta" or gen is None:
        return torch.empty(shape, dtype=dtype, device="meta")
    return (torch.randn(shape, generator=gen) * scale).to(dtype=dtype, device=device)


def _random_resblock(
    prefix: str, width: int, mlp: int, dtype: torch.dtype, device: torch.device, gen: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """A seeded random open_clip resblock; nothing reads it for generation, it only mirrors the real file."""
    shapes = {
        "ln_1.weight": (width,),
        "ln_1.bias": (width,),
        "attn.in_proj_weight": (3 * width, width),
        "attn.in_proj_bias": (3 * width,),
        "attn.out_proj.weight": (width, width),
        "attn.out_proj.bias": (width,),
        "ln_2.weight": (width,),
        "ln_2.bias": (width,),
        "mlp.c_fc.weight": (mlp, width),
        "mlp.c_fc.bias": (mlp,),
        "mlp.c_proj.weight": (width, mlp),
        "mlp.c_proj.bias": (width,),
    }
    out = {}
    for name, shape in shapes.items():
        tensor = _randn(shape, dtype, device, gen, 0.02)
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight"):
            tensor = tensor + 1.0
        out[prefix + name] = tensor
    return out


def _state_dict(component: Any) -> dict[str, torch.Tensor]:
    return dict(component.state_dict()) if hasattr(component, "state_dict") else dict(component)


def _config(component: Any) -> Mapping[str, Any]:
    config = getattr(component, "config", None)
    if config is None:
        raise LdmExportError("the unet component has no .config; pass a diffusers UNet2DConditionModel")
    return config


def pipeline_to_ldm(components: Mapping[str, Any], variant: str) -> dict[str, torch.Tensor]:
    """Assemble a whole original-layout checkpoint from diffusers components (`unet`, `vae`, text encoders).

    `components` maps component names, as in a diffusers pipeline, to modules; `variant` is one of VARIANTS.
    Tensors are shared with the modules where no reshaping is needed (no copy of a full-size model).
    """
    if variant not in _TEXT_ENCODERS:
        raise LdmExportError(f"unknown checkpoint variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    needed = ["unet", "vae"] + [name for name, _, _ in _TEXT_ENCODERS[variant]]
    missing = [name for name in needed if components.get(name) is None]
    if missing:
        raise LdmExportError(f"variant {variant!r} needs components {missing} which were not given")
    unet = components["unet"]
    config = _config(unet)
    in_channels = config.get("in_channels")
    expected = 9 if variant.endswith("inpainting") else 8 if variant.endswith("pix2pix") else 4
    if in_channels != expected:
        raise LdmExportError(f"variant {variant!r} needs a UNet with {expected} input channels, got {in_channels}")
    out: dict[str, torch.Tensor] = {}
    out.update({UNET_PREFIX + k: v for k, v in unet_to_ldm(_state_dict(unet), config).items()})
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(_state_dict(components["vae"])).items()})
    for name, layout, prefix in _TEXT_ENCODERS[variant]:
        sd = _state_dict(components[name])
        if layout == "clip":
            out.update(clip_to_ldm(sd, prefix))
        else:
            # Only SD2's CLIPTextModel is the penultimate cut of a longer tower; SDXL's bigG is complete.
            extra = 1 if prefix == SD2_OPENCLIP_PREFIX else 0
            out.update(openclip_to_ldm(sd, prefix, extra_layers=extra))
    return out
