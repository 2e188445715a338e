"""Small helpers shared by every sampler: dimension broadcasting, the Karras ODE derivative, ancestral step sizes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Callback = Callable[[dict[str, Any]], None]


class SamplingInterrupted(Exception):  # noqa: N818 - named for what happened, as A1111's InterruptedException
    """Raised from a sampler callback to stop sampling; `sd_samplers.sample` turns it into an early return."""


def expand_to(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append singleton dimensions so a per-batch value broadcasts against an image tensor."""
    missing = ndim - v.ndim
    if missing < 0:
        raise ValueError(f"tensor has {v.ndim} dims, more than the target {ndim}")
    return v[(...,) + (None,) * missing]


def derivative(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE in the Karras et al. (2022) parameterisation."""
    return (x - denoised) / expand_to(sigma, x.ndim)


def ancestral_split(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """Split a step from sigma_from to sigma_to into a deterministic part down to sigma_down and fresh noise sigma_up.

    sigma_up^2 + sigma_down^2 == sigma_to^2; eta scales how much of the step is re-noised (0 = deterministic).
    """
    if not eta:
        return sigma_to, 0.0
    up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    down = (sigma_to**2 - up**2) ** 0.5
    return down, up


def batch_ones(x: torch.Tensor) -> torch.Tensor:
    """A (batch,) vector of ones, used to turn a scalar sigma into one sigma per image."""
    return x.new_ones([x.shape[0]])


def call_back(callback: Callback | None, x, i, sigma, sigma_hat, denoised) -> None:
    """Report one step with the payload A1111 callbacks expect."""
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})
