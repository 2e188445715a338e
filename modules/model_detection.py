"""Which Stable Diffusion family a checkpoint is, decided from its key names and tensor shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modules.errors import UnknownArchitectureError

UNET = "model.diffusion_model."
_IN_CONV = UNET + "input_blocks.0.0.weight"
_SD1_TE = "cond_stage_model.transformer."
_SD2_TE = "cond_stage_model.model."
_XL_CLIP_L = "conditioner.embedders.0.transformer."
_XL_BIGG = "conditioner.embedders.1.model."
_REFINER_BIGG = "conditioner.embedders.0.model."


@dataclass(frozen=True)
class Detection:
    """The bundled config variant a checkpoint needs, and a sentence saying why."""

    variant: str
    reason: str
    needs_v_check: bool = False  # SD2 non-inpainting: epsilon vs v-prediction is decided by running the UNet


def _has_prefix(keys: Sequence[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _context_dim(shapes: Mapping[str, Sequence[int]]) -> int | None:
    """Cross-attention context width from the first attn2.to_k weight of the UNet."""
    for key, shape in shapes.items():
        if key.startswith(UNET) and key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return int(shape[1])
    return None


def detect_architecture(shapes: Mapping[str, Sequence[int]], source: str = "checkpoint") -> Detection:
    """Detect the family from LDM key names and shapes (never from file size or name).

    `shapes` maps every key of the state dict to its tensor shape; meta tensors work as well.
    """
    keys = list(shapes)
    if not _has_prefix(keys, UNET):
        te_only = any(_has_prefix(keys, p) for p in (_SD1_TE, _SD2_TE, "conditioner."))
        vae_only = _has_prefix(keys, "encoder.") or _has_prefix(keys, "first_stage_model.")
        what = ("a text encoder only" if te_only else "a VAE" if vae_only
                else "no Stable Diffusion UNet (model.diffusion_model.*)")
        if _has_prefix(keys, "lora_") or any(".lora_" in k or "lora_down" in k for k in keys[:200]):
            what = "a LoRA network (put it in models/Lora)"
        raise UnknownArchitectureError(source, f"not a Stable Diffusion checkpoint: it holds {what}")
    in_shape = shapes.get(_IN_CONV)
    if in_shape is None or len(in_shape) != 4:
        raise UnknownArchitectureError(source, f"UNet input convolution {_IN_CONV} is missing or malformed")
    in_ch = int(in_shape[1])
    ctx = _context_dim(shapes)
    if in_ch not in (4, 8, 9):
        raise UnknownArchitectureError(
            source, f"UNet takes {in_ch} input channels; only 4 (txt2img), 8 (instruct-pix2pix) and 9 (inpainting) "
                    "are supported")
    inpaint = in_ch == 9
    ctx_note = f"UNet context dim {ctx}" if ctx else "no cross-attention"
    if in_ch == 8:
        if _has_prefix(keys, _SD1_TE) or ctx == 768:
            te = ("cond_stage_model.transformer (CLIP-L) present" if _has_prefix(keys, _SD1_TE)
                  else "no text encoder in the file")
            return Detection("sd1-instruct-pix2pix", f"SD1 instruct-pix2pix: {te}, {ctx_note}, UNet input channels 8 "
                                                     "(latent + image latent)")
        raise UnknownArchitectureError(source, "an 8-channel (instruct-pix2pix) UNet is supported for SD1 only")
    suffix = "-inpainting" if inpaint else ""
    ch_note = f"UNet input channels {in_ch}"
    ctx_note = f"UNet context dim {ctx}" if ctx else "no cross-attention"

    if _has_prefix(keys, _XL_BIGG) and _has_prefix(keys, _XL_CLIP_L):
        return Detection(f"sdxl-{'inpainting' if inpaint else 'base'}",
                         f"SDXL {'inpainting' if inpaint else 'base'}: conditioner.embedders.1 (OpenCLIP bigG) "
                         f"and conditioner.embedders.0 (CLIP-L) present, {ctx_note}, {ch_note}")
    if _has_prefix(keys, _REFINER_BIGG):
        return Detection("sdxl-refiner", f"SDXL refiner: only conditioner.embedders.0 (OpenCLIP bigG) present, "
                                         f"{ctx_note}, {ch_note}")
    if _has_prefix(keys, _SD2_TE):
        if inpaint:
            return Detection("sd2-inpainting", f"SD2 inpainting: cond_stage_model.model (OpenCLIP-H) present, {ctx_note}, "
                                               f"{ch_note}")
        return Detection("sd2-512", f"SD2: cond_stage_model.model (OpenCLIP-H) present, {ctx_note}, {ch_note}; "
                                    "epsilon vs v-prediction decided by a test run of the UNet",
                         needs_v_check=True)
    if _has_prefix(keys, _SD1_TE):
        return Detection(f"sd1{suffix}", f"SD1{' inpainting' if inpaint else ''}: cond_stage_model.transformer "
                                         f"(CLIP-L) present, {ctx_note}, {ch_note}")
    # No text encoder in the file: fall back on the UNet's context width (some pruned uploads).
    if ctx == 768:
        return Detection(f"sd1{suffix}", f"SD1: no text encoder in the file, {ctx_note}, {ch_note}")
    if ctx == 1024:
        return Detection("sd2-inpainting" if inpaint else "sd2-512",
                         f"SD2: no text encoder in the file, {ctx_note}, {ch_note}", needs_v_check=not inpaint)
    if ctx == 2048:
        return Detection(f"sdxl-{'inpainting' if inpaint else 'base'}",
                         f"SDXL: no text encoder in the file, {ctx_note}, {ch_note}")
    raise UnknownArchitectureError(source, f"unknown architecture: no known text encoder keys and {ctx_note}")


def variant_from_ldm_yaml(text: str) -> tuple[str | None, str | None]:
    """Read an A1111-style LDM .yaml: returns (family hint, prediction type) from its key settings.

    Only the facts that choose a bundled config are read: parameterization, UNet in_channels,
    context_dim and the conditioner target. Returns (None, None) when they are absent.
    """
    import yaml  # local: L0 callers should not pay for it

    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"invalid YAML: {e}") from e
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise ValueError("not an LDM model config (no top-level 'model' key)")
    params = (cfg.get("model") or {}).get("params") or {}
    prediction = "v_prediction" if params.get("parameterization") == "v" else "epsilon"
    unet = ((params.get("unet_config") or params.get("network_config") or {}).get("params")) or {}
    in_ch = unet.get("in_channels", 4)
    ctx = unet.get("context_dim")
    inpaint = in_ch == 9
    if in_ch == 8 and ctx == 768:
        return "sd1-instruct-pix2pix", prediction
    if "conditioner" in params or ctx == 2048 or unet.get("adm_in_channels"):
        if unet.get("adm_in_channels") == 2560 or ctx == 1280:
            return "sdxl-refiner", prediction
        return ("sdxl-inpainting" if inpaint else "sdxl-base"), prediction
    if ctx == 1024:
        if inpaint:
            return "sd2-inpainting", prediction
        return ("sd2-768-v" if prediction == "v_prediction" else "sd2-512"), prediction
    if ctx == 768:
        return ("sd1-inpainting" if inpaint else "sd1"), prediction
    return None, prediction
