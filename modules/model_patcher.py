"""Weight-delta patches on a model's parameters: apply once per patch set, restore bit-exactly, no class patching."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class LowRank:
    """A delta kept factored, `scale * up @ down` (up [out, r], down [r, in*k*k]): merged by one in-place addmm."""

    up: torch.Tensor
    down: torch.Tensor
    scale: float = 1.0

    @property
    def numel(self) -> int:
        return self.up.shape[0] * self.down.shape[1]

    def scaled(self, factor: float) -> LowRank:
        return LowRank(self.up, self.down, self.scale * factor)


# A patch is a delta added to the original weight (in float32): a dense tensor, a LowRank product, or a
# function of the original float32 weight returning a dense delta (DoRA and IA3 need to see the weight).
Patch = torch.Tensor | LowRank | Callable[[torch.Tensor], torch.Tensor]


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
        self._buffers: dict[str, torch.Tensor] = {}  # merged weights, reused by the next apply
        self._scratch: torch.Tensor | None = None
        self.current_key: Hashable = None
        self.applied_count = 0  # how many times a new patch set was written (tests/benchmarks read it)
        self._base: dict[str, list[Patch]] = {}  # the set last passed to apply() (LoRAs), kept to re-merge
        self._extra: dict[str, list[Patch]] = {}  # a job's extension patches, merged on top of every set
        self._extra_token: object | None = None  # changes whenever _extra does
        self._applied_extra: object | None = None  # the _extra_token the weights were merged with

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

        Returns True when weights were written. Every delta is checked before any weight changes, so a
        patch that does not fit leaves the model exactly as it was. The merge runs in float32 in a reused
        scratch buffer and lands in a per-parameter buffer kept for the next apply: on CPU, fresh multi-GB
        allocations (page faults) would cost more than the arithmetic.
        """
        if key is not None and key == self.current_key and self._applied_extra is self._extra_token:
            return False
        base = {name: list(deltas) for name, deltas in patches.items() if deltas}
        wanted = {name: list(deltas) for name, deltas in base.items()}
        for name, deltas in self._extra.items():
            wanted.setdefault(name, []).extend(deltas)
        for name, deltas in wanted.items():
            shape = self.original(name).shape
            for d in deltas:
                numel = d.numel if isinstance(d, LowRank) else (d.numel() if isinstance(d, torch.Tensor) else None)
                if numel is not None and numel != shape.numel():
                    raise PatchError(f"delta with {numel} values does not fit {name} of shape {tuple(shape)}")
        self.restore()
        try:
            self._merge(wanted)
        except Exception:
            self.restore()  # a callable delta failed half-way: back to the originals rather than half a set
            raise
        self.current_key = key if base else None
        self._base, self._applied_extra = base, self._extra_token
        self.applied_count += 1
        return True

    def set_extra(self, patches: Mapping[str, Sequence[Patch]] | None) -> None:
        """Merge `patches` on top of the current set (and of any set applied later) until cleared with None.

        This is how a job's extension patches coexist with its LoRAs: the weights are re-merged from the
        originals, so clearing brings back exactly the LoRA-only (or original) weights.
        """
        extra = {name: list(deltas) for name, deltas in (patches or {}).items() if deltas}
        if not extra and not self._extra:
            return
        previous = (self._extra, self._extra_token)
        self._extra, self._extra_token = extra, (object() if extra else None)
        try:
            self.apply(self.current_key, self._base)
        except Exception:
            self._extra, self._extra_token = previous  # a patch that does not fit leaves the model as it was
            raise

    def _merge(self, wanted: Mapping[str, Sequence[Patch]]) -> None:
        with torch.no_grad():
            for name, deltas in wanted.items():
                param = self.parameter(name)
                original = param.data
                work = self._scratch_view(original)
                work.copy_(original)
                for d in deltas:
                    if isinstance(d, LowRank):
                        work.view(d.up.shape[0], -1).addmm_(d.up.to(work), d.down.to(work), alpha=d.scale)
                    else:
                        dense = d(original.to(torch.float32)) if callable(d) else d
                        dense = dense.to(device=work.device, dtype=torch.float32)
                        if dense.shape != work.shape:
                            if dense.numel() != work.numel():
                                raise PatchError(f"delta of shape {tuple(dense.shape)} does not fit {name} "
                                                 f"of shape {tuple(work.shape)}")
                            dense = dense.reshape(work.shape)
                        work.add_(dense)
                out = self._buffers.get(name)
                if out is None or out.shape != original.shape or out.dtype != original.dtype \
                        or out.device != original.device:
                    out = self._buffers[name] = torch.empty_like(original)
                out.copy_(work)
                self._originals[name] = original
                param.data = out

    def _scratch_view(self, like: torch.Tensor) -> torch.Tensor:
        n = like.numel()
        if self._scratch is None or self._scratch.numel() < n or self._scratch.device != like.device:
            self._scratch = torch.empty(n, dtype=torch.float32, device=like.device)
        return self._scratch[:n].view(like.shape)

    def release(self) -> None:
        """Free the merge buffers of parameters that are not patched now (memory back after LoRAs are gone)."""
        self._buffers = {k: v for k, v in self._buffers.items() if k in self._originals}
        self._scratch = None

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
        self._base, self._applied_extra = {}, None

    @contextlib.contextmanager
    def patched(self, patches: Mapping[str, Sequence[Patch]], key: Hashable = None) -> Iterator[ModelPatcher]:
        """Apply `patches` for the duration of a block, then restore whatever was there before."""
        previous_key = self.current_key
        previous = {name: self.parameter(name).data.clone() for name in self._originals}  # buffers get reused
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


class JobPatches:
    """The public way for extensions to change a model for one job (`p.model_patches`), undone when it ends.

    Weight deltas go through the model's ModelPatcher (on top of the job's LoRAs); forward hooks are registered on
    module instances with torch's own `register_forward_hook`. No torch or diffusers method is replaced.
    Names are `component.module.path[.param]` in the job's main model: 'unet.conv_in.weight', 'unet.mid_block'.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._deltas: dict[str, list[Patch]] = {}
        self._hooks: list[Any] = []

    @property
    def patcher(self) -> ModelPatcher:
        return patcher_for(self.model)

    def add_weight_delta(self, name: str, delta: Patch) -> None:
        """Add `delta` to parameter `name` (float32 maths) for the rest of the job; a misfit raises PatchError."""
        wanted = {k: list(v) for k, v in self._deltas.items()}
        wanted.setdefault(name, []).append(delta)
        self.patcher.set_extra(wanted)  # validates before anything changes
        self._deltas = wanted

    def add_forward_hook(self, module_name: str, hook: Callable[..., Any], *, with_kwargs: bool = False) -> None:
        """`hook(module, args, output)` on the module instance `module_name`; its return value replaces the output."""
        root_name, _, rest = module_name.partition(".")
        root = self.patcher.roots.get(root_name)
        if root is None:
            raise PatchError(f"no model component {root_name!r} for module {module_name!r}")
        try:
            module = root.get_submodule(rest) if rest else root
        except AttributeError as e:
            raise PatchError(f"the model has no module {module_name!r}") from e
        self._hooks.append(module.register_forward_hook(hook, with_kwargs=with_kwargs))

    def close(self) -> None:
        """Undo everything: hooks removed, the weights back to what they were before the job's patches."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        if self._deltas:
            self._deltas = {}
            self.patcher.set_extra(None)


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
