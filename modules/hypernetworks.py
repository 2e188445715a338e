"""A1111 hypernetworks (`models/hypernetworks/*.pt`, `<hypernet:name:w>`): residual MLPs on cross-attention k/v."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.errors import WebUIError

log = logging.getLogger(__name__)

_ACTIVATIONS = {
    "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU, "elu": torch.nn.ELU, "swish": torch.nn.Hardswish,
    "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "softsign": torch.nn.Softsign, "mish": torch.nn.Mish,
    "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "softplus": torch.nn.Softplus, "selu": torch.nn.SELU,
}


class HypernetworkError(WebUIError, ValueError):
    """A hypernetwork file is unreadable or does not fit the model; the message names it."""


class HyperModule(torch.nn.Module):
    """`x + mlp(x) * multiplier`, the MLP rebuilt from A1111's saved `linear.N.*` keys and options."""

    def __init__(self, state: dict[str, torch.Tensor], activation: str | None, layer_norm: bool,
                 activate_output: bool, name: str) -> None:
        super().__init__()
        indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("linear.")})
        linears = [i for i in indices if state.get(f"linear.{i}.weight", torch.empty(0)).ndim == 2]
        if not linears:
            raise HypernetworkError(f"{name}: no linear layers in the file")
        act_cls = _ACTIVATIONS.get((activation or "linear").lower())
        if activation and activation.lower() not in ("linear", "none") and act_cls is None:
            raise HypernetworkError(f"{name}: unsupported activation function {activation!r}")
        layers: list[torch.nn.Module] = []
        # Saved order is Linear, activation, LayerNorm, Dropout per layer; only Linear/LayerNorm carry weights.
        for i in indices:
            w, b = state.get(f"linear.{i}.weight"), state.get(f"linear.{i}.bias")
            if w is None or b is None:
                continue
            if w.ndim == 2:
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                lin.load_state_dict({"weight": w, "bias": b})
                layers.append(lin)
                n = linears.index(i)
                if act_cls is not None and (n < len(linears) - 1 or activate_output):
                    layers.append(act_cls())
            elif w.ndim == 1 and layer_norm:
                ln = torch.nn.LayerNorm(w.shape[0])
                ln.load_state_dict({"weight": w, "bias": b})
                layers.append(ln)
        self.mlp = torch.nn.Sequential(*layers).eval().requires_grad_(False)
        self.multiplier = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = next(self.mlp.parameters())
        return x + self.mlp(x.to(p.dtype)).to(x.dtype) * self.multiplier


@dataclass
class Hypernetwork:
    name: str
    filename: Path
    layers: dict[int, tuple[HyperModule, HyperModule]]  # context width -> (k module, v module)


def load_hypernetwork(path: Path) -> Hypernetwork:
    name = path.stem
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise HypernetworkError(f"{name}: refused, the file asks to load non-tensor objects ({e})") from None
    except (OSError, RuntimeError, EOFError) as e:
        raise HypernetworkError(f"{name}: unreadable file ({e})") from None
    if not isinstance(data, dict):
        raise HypernetworkError(f"{name}: not an A1111 hypernetwork (no dictionary inside)")
    activation = data.get("activation_func")
    layers: dict[int, tuple[HyperModule, HyperModule]] = {}
    for size, pair in data.items():
        if not isinstance(size, int):
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise HypernetworkError(f"{name}: layer {size} is not a (k, v) pair")
        layers[size] = tuple(HyperModule(dict(sd), activation, bool(data.get("is_layer_norm")),
                                         bool(data.get("activate_output")), name) for sd in pair)  # type: ignore[assignment]
    if not layers:
        raise HypernetworkError(f"{name}: no layers found; is this an A1111 hypernetwork .pt?")
    return Hypernetwork(name, path, layers)


def _cross_attentions(unet: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for name, m in unet.named_modules() if name.endswith("attn2") and hasattr(m, "to_k")]


class _ContextHook:
    """A forward pre-hook on one `to_k`/`to_v` instance: the hypernetworks transform its input (the context).

    A hook, not a replaced module: the model's own modules and parameters stay where they are (LoRA and the
    model patcher find them unchanged) and removing the hook restores the model exactly.
    """

    def __init__(self, modules: list[HyperModule]) -> None:
        self.modules = modules

    def __call__(self, _module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        for hyper in self.modules:
            x = hyper(x)
        return (x, *args[1:])


def apply(model: Any, networks: list[tuple[Hypernetwork, float]]) -> None:
    """Install the hypernetworks on the model's cross-attention k/v inputs, replacing any installed before;
    an empty list removes them. The hooks live in `model.extra["hypernetwork_hooks"]`."""
    unet = model.pipe.unet
    attentions = _cross_attentions(unet)
    for net, _mult in networks:
        widths = {a.to_k.in_features for a in attentions}
        if not widths <= set(net.layers):
            raise HypernetworkError(f"{net.name}: made for context widths {sorted(net.layers)}, this model uses "
                                    f"{sorted(widths)} (a hypernetwork for another model type)")
    remove(model)
    if not networks:
        return
    handles = []
    for attn in attentions:
        for attr, slot in (("to_k", 0), ("to_v", 1)):
            linear = getattr(attn, attr)
            width = linear.in_features
            mods = []
            for net, mult in networks:
                module = net.layers[width][slot]
                module.to(linear.weight.device)
                module.multiplier = mult
                mods.append(module)
            handles.append(linear.register_forward_pre_hook(_ContextHook(mods)))
    model.extra["hypernetwork_hooks"] = handles


def remove(model: Any) -> None:
    """Take every hypernetwork hook off the model."""
    for handle in model.extra.pop("hypernetwork_hooks", []):
        handle.remove()


class HypernetworkDatabase:
    """`.pt` files under models/hypernetworks (recursive), loaded on first use and reloaded when changed."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.files: dict[str, Path] = {}
        self._loaded: dict[str, tuple[float, Hypernetwork]] = {}

    def refresh(self) -> list[str]:
        self.files = {}
        for root in self.dirs:
            if root.is_dir():
                for path in sorted(root.rglob("*.pt")):
                    self.files.setdefault(path.stem, path)
        return list(self.files)

    def get(self, name: str) -> Hypernetwork:
        if name not in self.files:
            self.refresh()
        path = self.files.get(name)
        if path is None:
            raise HypernetworkError(f"Hypernetwork not found: {name}")
        mtime = os.path.getmtime(path)
        cached = self._loaded.get(name)
        if cached is None or cached[0] != mtime:
            cached = self._loaded[name] = (mtime, load_hypernetwork(path))
        return cached[1]


class ExtraNetworkHypernet:
    """The `<hypernet:name:multiplier>` handler."""

    name = "hypernet"

    def __init__(self, db: HypernetworkDatabase) -> None:
        self.db = db

    def activate(self, p: Any, params_list: list[Any]) -> None:
        from modules.extra_networks import add_error

        chosen: list[tuple[Hypernetwork, float]] = []
        for params in params_list:
            items = list(params.items)
            try:
                net = self.db.get(str(items[0]))
                mult = float(items[1]) if len(items) > 1 else 1.0
            except (HypernetworkError, ValueError) as e:
                add_error(p, str(e))
                continue
            chosen.append((net, mult))
        try:
            apply(p.sd_model, chosen)
        except HypernetworkError as e:
            add_error(p, str(e))
            apply(p.sd_model, [])

    def deactivate(self, p: Any) -> None:
        # Job-scoped: the hooks come off when the job ends (the next job installs its own).
        if p.sd_model is not None:
            remove(p.sd_model)
