"""LoRA-family network types (LoRA/LoCon, LoHa, LoKr, IA3, full diff, norm, DoRA): weight deltas from file tensors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from modules.model_patcher import LowRank

# Spellings of the same tensor in other trainers' files, renamed to kohya's before the type is chosen.
_PART_ALIASES = {
    "lora_A.weight": "lora_down.weight",
    "lora_B.weight": "lora_up.weight",
    "lora.down.weight": "lora_down.weight",
    "lora.up.weight": "lora_up.weight",
    "lora_linear_layer.down.weight": "lora_down.weight",
    "lora_linear_layer.up.weight": "lora_up.weight",
}

# First dotted segment of a network part: everything before it in a key is the module name.
PART_TOKENS = frozenset({
    "lora_up", "lora_down", "lora_mid", "lora_A", "lora_B", "lora", "lora_linear_layer", "alpha", "scale",
    "dora_scale", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2", "lokr_w1", "lokr_w1_a",
    "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2", "weight", "on_input", "diff", "diff_b", "w_norm",
    "b_norm", "bias",
})


class NetworkLayerError(ValueError):
    """One layer group of a network file cannot be used (unknown type or shapes that do not fit)."""


def normalize_parts(group: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {_PART_ALIASES.get(k, k): v for k, v in group.items()}


def _scalar(t: torch.Tensor | None) -> float | None:
    return None if t is None else float(t.float().reshape(-1)[0].item())


@dataclass
class LayerDelta:
    """What one network contributes to one layer: deltas for `weight`/`bias`, each a tensor or fn(orig weight)."""

    weight: torch.Tensor | LowRank | Callable[[torch.Tensor], torch.Tensor] | None = None
    bias: torch.Tensor | None = None


def _fit(delta: torch.Tensor, shape: torch.Size, layer: str) -> torch.Tensor:
    """Reshape a delta to the weight; zero-pad extra input channels (inpainting UNet conv_in has 9, LoRAs 4)."""
    if delta.shape == shape:
        return delta
    if delta.numel() == shape.numel():
        return delta.reshape(shape)
    if (len(shape) == 4 and delta.ndim == 4 and delta.shape[0] == shape[0] and delta.shape[2:] == shape[2:]
            and delta.shape[1] < shape[1]):
        return torch.nn.functional.pad(delta, (0, 0, 0, 0, 0, shape[1] - delta.shape[1]))
    raise NetworkLayerError(f"layer {layer}: delta of shape {tuple(delta.shape)} does not fit its weight "
                            f"{tuple(shape)} (a network for a different model?)")


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1)


def _cp(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tucker/CP rebuild: core t [r1, r2, kh, kw], out factor a [out, r1], in factor b [r2, in] -> [out, in, kh, kw]."""
    return torch.einsum("ijkl,pi,jr->prkl", t, a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


def _lora(w: dict[str, torch.Tensor], dyn: int | None) -> tuple[torch.Tensor, int]:
    up, down, mid = w["lora_up.weight"].float(), w["lora_down.weight"].float(), w.get("lora_mid.weight")
    if dyn:
        up, down = up[:, :dyn], down[:dyn]
        mid = mid[:dyn, :dyn] if mid is not None else None
    rank = down.shape[0]
    if mid is not None:
        return _cp(mid.float(), up, down), rank
    delta = _mm(up, down)
    if down.ndim == 4:
        delta = delta.reshape(up.shape[0], down.shape[1], *down.shape[2:])
    return delta, rank


def _loha(w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    w1a, w1b, w2a, w2b = (w[k].float() for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
    if "hada_t1" in w and "hada_t2" in w:
        w1 = _cp(w["hada_t1"].float(), w1a, w1b)
        w2 = _cp(w["hada_t2"].float(), w2a, w2b)
    else:
        w1, w2 = _mm(w1a, w1b), _mm(w2a, w2b)
    return w1 * w2, w1b.shape[0]


def _lokr(w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int | None]:
    dim = None
    if "lokr_w1" in w:
        w1 = w["lokr_w1"].float()
    else:
        w1 = _mm(w["lokr_w1_a"].float(), w["lokr_w1_b"].float())
        dim = w["lokr_w1_b"].shape[0]
    if "lokr_w2" in w:
        w2 = w["lokr_w2"].float()
    elif "lokr_t2" in w:
        w2 = _cp(w["lokr_t2"].float(), w["lokr_w2_a"].float(), w["lokr_w2_b"].float())
        dim = dim or w["lokr_w2_b"].shape[0]
    else:
        w2 = _mm(w["lokr_w2_a"].float(), w["lokr_w2_b"].float())
        dim = dim or w["lokr_w2_b"].shape[0]
    if w2.ndim == 4 and w1.ndim == 2:
        w1 = w1[:, :, None, None]
    return torch.kron(w1, w2), dim


def network_type(parts: Mapping[str, torch.Tensor]) -> str:
    """Which network type a layer group is, by which keys it holds (A1111 decides per layer the same way)."""
    if "lora_up.weight" in parts and "lora_down.weight" in parts:
        return "lora"
    if all(k in parts for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")):
        return "loha"
    if ("lokr_w1" in parts or "lokr_w1_a" in parts) and ("lokr_w2" in parts or "lokr_w2_a" in parts):
        return "lokr"
    if "weight" in parts and "on_input" in parts:
        return "ia3"
    if "diff" in parts:
        return "full"
    if "w_norm" in parts or "b_norm" in parts:
        return "norm"
    raise NetworkLayerError(f"unsupported network layer with keys {sorted(parts)}")


def layer_delta(parts: Mapping[str, torch.Tensor], target: torch.nn.Module, layer: str,
                dyn: int | None = None) -> LayerDelta:
    """The delta (multiplier 1) one layer group adds to `target`; raises NetworkLayerError when it cannot fit."""
    parts = normalize_parts(parts)
    kind = network_type(parts)
    weight = getattr(target, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise NetworkLayerError(f"layer {layer}: the model's module has no weight")
    shape = weight.shape
    alpha, scale_key = _scalar(parts.get("alpha")), _scalar(parts.get("scale"))
    extra_bias = parts.get("bias")
    bias = None if extra_bias is None else extra_bias.float()
    if kind == "ia3":
        w = parts["weight"].float()
        on_input = bool(_scalar(parts["on_input"]))
        view = [1, -1] if on_input else [-1, 1]
        view += [1] * (len(shape) - 2)
        if w.numel() != shape[1 if on_input else 0]:
            raise NetworkLayerError(f"layer {layer}: IA3 vector of {w.numel()} does not fit weight {tuple(shape)}")
        vec = w.reshape(view)
        return LayerDelta(weight=lambda orig: orig * vec, bias=bias)
    if kind == "full":
        diff_b = parts.get("diff_b")
        return LayerDelta(weight=_fit(parts["diff"].float(), shape, layer),
                          bias=diff_b.float() if diff_b is not None else bias)
    if kind == "norm":
        w_norm, b_norm = parts.get("w_norm"), parts.get("b_norm")
        return LayerDelta(weight=None if w_norm is None else _fit(w_norm.float(), shape, layer),
                          bias=None if b_norm is None else b_norm.float())
    scale = None
    if kind == "lora" and "lora_mid.weight" not in parts and "dora_scale" not in parts:
        # Plain LoRA stays factored: the patcher merges it with one in-place addmm (no dense delta allocated).
        up, down = parts["lora_up.weight"].float(), parts["lora_down.weight"].float()
        if dyn:
            up, down = up[:, :dyn], down[:dyn]
        up2d, down2d = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
        if up2d.shape[1] != down2d.shape[0]:
            raise NetworkLayerError(f"layer {layer}: lora_up rank {up2d.shape[1]} != lora_down rank {down2d.shape[0]}")
        if up2d.shape[0] * down2d.shape[1] == shape.numel():
            dim = down2d.shape[0]
            scale = scale_key if scale_key is not None else (alpha / dim if alpha is not None and dim else 1.0)
            return LayerDelta(weight=LowRank(up2d, down2d, scale), bias=bias)
    if kind == "lora":
        delta, dim = _lora(parts, dyn)
    elif kind == "loha":
        delta, dim = _loha(parts)
    else:
        delta, dim = _lokr(parts)
    delta = _fit(delta, shape, layer)
    # kohya's scaling: alpha / rank when both are known (an explicit `scale` wins), else 1.
    scale = scale_key if scale_key is not None else (alpha / dim if alpha is not None and dim else 1.0)
    dora = parts.get("dora_scale")
    if dora is None:
        return LayerDelta(weight=delta * scale, bias=bias)
    dora = dora.float()

    def dora_delta(orig: torch.Tensor) -> torch.Tensor:
        # DoRA: the merged weight's per-input-column norm is replaced by the trained magnitude `dora_scale`.
        merged = orig + delta
        cols = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1, keepdim=True)
        cols = cols.reshape(merged.shape[1], *[1] * (merged.ndim - 1)).transpose(0, 1)
        return (merged * (dora.reshape(cols.shape) / cols) - orig) * scale

    if dora.numel() != shape[1]:
        raise NetworkLayerError(f"layer {layer}: dora_scale of {dora.numel()} values does not fit weight "
                                f"{tuple(shape)}")
    return LayerDelta(weight=dora_delta, bias=bias)
