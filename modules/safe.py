"""A1111's `modules.safe`: pickles load only through the weights-only loader, never unrestricted.

A1111 lets extensions bypass its checker (`unsafe_torch_load`, `Extra`); here both still go through
modules.safe_load, so a pickle that runs code is refused whoever asks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

_extra_handlers: list[Callable[[str, str], Any]] = []


def load(filename: Any, *args: Any, **kwargs: Any) -> Any:
    """torch.load with weights_only=True (A1111's checked load); `.safetensors` read as such."""
    from modules.safe_load import load_state_dict

    if str(filename).endswith(".safetensors"):
        return load_state_dict(filename)
    import torch

    kwargs.pop("weights_only", None)
    return torch.load(filename, *args, weights_only=True, **kwargs)


unsafe_torch_load = load
"""Extensions call this to skip A1111's checker; here it is the same weights-only load (see the module doc)."""


def load_with_extra(filename: Any, extra_handler: Callable[[str, str], Any] | None = None, *args: Any,
                    **kwargs: Any) -> Any:
    return load(filename, *args, **kwargs)


class Extra(contextlib.AbstractContextManager):
    """`with safe.Extra(handler):` — A1111 allows extra globals through the handler. Only the weights-only
    set is allowed here; the handler is recorded but never widens it."""

    def __init__(self, handler: Callable[[str, str], Any]) -> None:
        self.handler = handler

    def __enter__(self) -> Extra:
        _extra_handlers.append(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        _extra_handlers.remove(self.handler)

