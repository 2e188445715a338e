"""Discrete-time DDPM models seen as continuous sigma-space denoisers (k-diffusion's formulation, as A1111 uses it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from modules.sampling.common import expand_to

ModelFn = Callable[..., torch.Tensor]  # fn(x_scaled, t, **kwargs) -> eps or v
PREDICTION_TYPES = ("epsilon", "v_prediction")


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t): the VE noise level equivalent to DDPM timestep t."""
    ac = torch.as_tensor(alphas_cumprod)
    return ((1 - ac) / ac) ** 0.5


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Schedules end at sigma 0 (a clean image)."""
    return torch.cat([sigmas, sigmas.new_zeros([1])])


class DiscreteSchedule:
    """Maps between the model's discrete timesteps and continuous sigmas (log-sigma linear interpolation).

    `sigmas` is ascending (index = timestep). With quantize=False (A1111's default, `enable_quantization` off)
    sigma_to_t returns fractional timesteps.
    """

    def __init__(self, sigmas: torch.Tensor, quantize: bool = False):
        self.sigmas = torch.as_tensor(sigmas)
        self.log_sigmas = self.sigmas.log()
        self.quantize = quantize

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor, quantize: bool = False) -> DiscreteSchedule:
        return cls(sigmas_from_alphas_cumprod(alphas_cumprod), quantize)

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def get_sigmas(self, n: int | None = None) -> torch.Tensor:
        """n sigmas evenly spaced in timestep from the last timestep to 0, plus the trailing zero."""
        if n is None:
            return append_zero(self.sigmas.flip(0))
        t_max = len(self.sigmas) - 1
        t = torch.linspace(t_max, 0, n, device=self.sigmas.device)
        return append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        quantize = self.quantize if quantize is None else quantize
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        if quantize:
            return dists.abs().argmin(dim=0).view(sigma.shape)
        # index of the last table entry not above sigma, kept one below the end so there is an upper neighbour
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        return ((1 - w) * low_idx + w * high_idx).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t).float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]).exp()


class DiscreteDenoiser(DiscreteSchedule):
    """Wraps fn(x_scaled, t, **kw) -> eps | v of a discrete DDPM model into denoiser(x, sigma, **kw) -> x0.

    Input scaling c_in = 1 / sqrt(sigma^2 + 1) turns the VE sample x = x0 + sigma * eps back into the model's
    VP input; the timestep is sigma_to_t(sigma) (fractional unless quantize). For eps models denoised =
    x - sigma * eps; for v models denoised = c_skip * x + c_out * v with sigma_data = 1.
    """

    def __init__(
        self, model_fn: ModelFn, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon", quantize: bool = False
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        super().__init__(sigmas_from_alphas_cumprod(alphas_cumprod), quantize)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod)
        self.inner_model = model_fn
        self.prediction_type = prediction_type

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        c_in = expand_to(1 / (sigma**2 + 1) ** 0.5, x.ndim)
        out = self.inner_model(x * c_in, self.sigma_to_t(sigma), **kwargs)
        if self.prediction_type == "epsilon":
            return x + out * expand_to(-sigma, x.ndim)
        c_skip = expand_to(1 / (sigma**2 + 1), x.ndim)
        c_out = expand_to(-sigma / (sigma**2 + 1) ** 0.5, x.ndim)
        return out * c_out + x * c_skip

    def timestep_eps(self, x_t: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """eps prediction at integer timestep t on the unscaled VP sample, what DDIM/PLMS/UniPC consume."""
        out = self.inner_model(x_t, t, **kwargs)
        if self.prediction_type == "epsilon":
            return out
        ac = self.alphas_cumprod.to(x_t.device)[t.long()]
        return expand_to(ac.sqrt(), x_t.ndim) * out + expand_to((1 - ac).sqrt(), x_t.ndim) * x_t


class LCMDenoiser(DiscreteDenoiser):
    """A1111's LCM denoiser: the 50 "original" LCM timesteps (19, 39, ..., 999) and the consistency boundary scaling.

    Timesteps are always quantised to that grid, and the result is c_skip * x + c_out * x0 with
    sigma_data 0.5 and a timestep scaling of 10, as LCM's scheduler defines them.
    """

    original_steps = 50

    def __init__(self, model_fn: ModelFn, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
        ac = torch.as_tensor(alphas_cumprod)
        total = len(ac)
        self.skip_steps = total // self.original_steps
        picked = ac[total - 1 - self.skip_steps * torch.arange(self.original_steps - 1, -1, -1)]
        super().__init__(model_fn, picked, prediction_type, quantize=True)
        self.alphas_cumprod = ac  # the full table, for timestep_eps

    def get_sigmas(self, n: int | None = None) -> torch.Tensor:
        if n is None:
            return append_zero(self.sigmas.flip(0))
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return append_zero(self.t_to_sigma(torch.linspace(start, end, n, device=self.sigmas.device)))

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        idx = (sigma.log() - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape)
        return idx * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        idx = ((t - (self.skip_steps - 1)) / self.skip_steps).float().clamp(0, len(self.sigmas) - 1)
        return super().t_to_sigma(idx)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        denoised = super().__call__(x, sigma, **kwargs)
        sigma_data = 0.5
        scaled_t = expand_to(self.sigma_to_t(sigma), x.ndim) * 10.0
        c_skip = sigma_data**2 / (scaled_t**2 + sigma_data**2)
        c_out = scaled_t / (scaled_t**2 + sigma_data**2) ** 0.5
        return c_out * denoised + c_skip * x
