"""Seamless tiling: circular padding on a model's Conv2d layers for one job, undone on exit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


def conv_layers(modules: Iterable[Any]) -> list[torch.nn.Conv2d]:
    """Every Conv2d instance inside `modules` (A1111 switches exactly these, not transposed convolutions)."""
    found: list[torch.nn.Conv2d] = []
    seen: set[int] = set()
    for module in modules:
        if module is None:
            continue
        for layer in module.modules():
            if type(layer) is torch.nn.Conv2d and id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
    return found


def model_parts(model: Any) -> list[Any]:
    """The UNet and VAE of a loaded model (the parts with image-space convolutions)."""
    pipe = getattr(model, "pipe", model)
    return [getattr(pipe, "unet", None), getattr(pipe, "vae", None)]


@contextmanager
def circular_padding(model: Any, enabled: bool = True) -> Iterator[None]:
    """Make the UNet and VAE convolutions wrap around (left edge continues the right) while the block runs.

    Only the padding mode of the layer instances changes, and each layer gets back exactly the mode it had, so a
    model shared with other jobs is left as it was found, even if the block raises.
    """
    if not enabled:
        yield
        return
    layers = conv_layers(model_parts(model))
    saved = [(layer, layer.padding_mode) for layer in layers]
    try:
        for layer in layers:
            layer.padding_mode = "circular"
        yield
    finally:
        for layer, mode in saved:
            layer.padding_mode = mode
