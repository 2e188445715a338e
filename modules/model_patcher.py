"""Weight-delta patches on a model's parameters: apply once per patch set, restore bit-exactly, no class patching."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

# A patch is a delta added to the original weight (in float32), or a function of the original float32 weight
# that returns such a delta (DoRA and IA3 need to see the weight they modify).
Patch = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


class PatchError(ValueError):
    """A patch does not fit the parameter it targets (unknown parameter or wrong shape)."""


class ModelPatcher:
    """Owns the patched state of a set of modules' parameters.

    The original tensor of a patched parameter is kept as it is (no copy) and the parameter is pointed at a
    new tensor holding `original + deltas`; restoring points it back at the original, which is therefore
    bit-exact and costs nothing. Only module *instances* are touched; no torch class is modified.
    """

    def __init__(self, roots: Mapping[str, torch.nn.Module]) -> None:
        self.roots = dict(roots)
        self._originals: dict[str, torch.Tensor] = {}  # "component.module.path.weight" -> original tensor
        self.current_key: Hashable = None
        self.applied_count = 0  # how many times a new patch set was written (tests/benchmarks read it)

    def parameter(self, name: str) -> torch.nn.Parameter:
        """The parameter `component.module.path.param` ('unet.conv_in.weight')."""
        root_name, _, rest = name.partition(".")
        root = self.roots.get(root_name)
        if root is None:
            raise PatchError(f"no model component {root_name!r} for parameter {name!r}")
        try:
            param = root.get_parameter(rest)
        except AttributeError as e:
            raise PatchError(f"the model has no parameter {name!r}") from e
        return param

    def original(self, name: str) -> torch.Tensor:
        """The unpatched tensor of a parameter (the live one when it is not patched)."""
        found = self._originals.get(name)
        return found if found is not None else self.parameter(name).data

    @property
    def patched_names(self) -> list[str]:
        return list(self._originals)

    def apply(self, key: Hashable, patches: Mapping[str, Sequence[Patch]]) -> bool:
        """Make the model hold original + `patches`; nothing happens when `key` equals the current set's key.

        Returns True when weights were written. All deltas are computed before any weight changes, so a
        patch that fails leaves the model exactly as it was.
        """
        if key is not None and key == self.current_key:
            return False
        new_values: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, deltas in patches.items():
                if not deltas:
                    continue
                original = self.original(name)
                base = original.to(torch.float32)
                total = torch.zeros_like(base)
                for delta in deltas:
                    d = delta(base) if callable(delta) else delta
                    d = d.to(device=base.device, dtype=torch.float32)
                    if d.shape != base.shape:
                        if d.numel() != base.numel():
                            raise PatchError(
                                f"delta of shape {tuple(d.shape)} does not fit {name} of shape {tuple(base.shape)}"
                            )
                        d = d.reshape(base.shape)
                    total += d
                new_values[name] = (base + total).to(original.dtype)
        self.restore()
        for name, value in new_values.items():
            param = self.parameter(name)
            self._originals[name] = param.data
            param.data = value
        self.current_key = key if new_values else None
        self.applied_count += 1
        return True

    def restore(self) -> None:
        """Point every patched parameter back at its original tensor."""
        for name, original in self._originals.items():
            param = self.parameter(name)
            if param.data.device != original.device or param.data.dtype != original.dtype:
                # The module was moved or cast while patched: keep its new placement, with original values.
                original = original.to(param.data.device, param.data.dtype)
            param.data = original
        self._originals.clear()
        self.current_key = None

    @contextlib.contextmanager
    def patched(self, patches: Mapping[str, Sequence[Patch]], key: Hashable = None) -> Iterator[ModelPatcher]:
        """Apply `patches` for the duration of a block, then restore whatever was there before."""
        previous_key = self.current_key
        previous = {name: self.parameter(name).data for name in self._originals}
        originals = dict(self._originals)
        self.apply(key if key is not None else object(), patches)
        try:
            yield self
        finally:
            self.restore()
            for name, value in previous.items():
                param = self.parameter(name)
                self._originals[name] = originals[name]
                param.data = value
            self.current_key = previous_key


def model_roots(model: Any) -> dict[str, torch.nn.Module]:
    """The patchable components of a LoadedModel's pipeline (unet, text encoders)."""
    pipe = model.pipe
    roots = {}
    for name in ("unet", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            roots[name] = module
    return roots


def patcher_for(model: Any) -> ModelPatcher:
    """The one patcher of a loaded model, created on first use and kept in `model.extra`."""
    extra = model.extra
    patcher = extra.get("model_patcher")
    if patcher is None:
        patcher = extra["model_patcher"] = ModelPatcher(model_roots(model))
    return patcher
