"""Noise (sigma) schedules with A1111 1.10's names and semantics; each returns descending sigmas for n steps."""

from __future__ import annotations

import math

import numpy as np
import torch

from modules.sampling.discrete import DiscreteSchedule, append_zero


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device="cpu") -> torch.Tensor:
    """Karras et al. (2022) eq. 5: evenly spaced in sigma^(1/rho)."""
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho).to(device)


def exponential(n: int, sigma_min: float, sigma_max: float, device="cpu") -> torch.Tensor:
    """Evenly spaced in log sigma."""
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, device=device).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, device="cpu") -> torch.Tensor:
    """log sigma follows a rho-th power ramp between the ends (rho 1 = exponential)."""
    ramp = torch.linspace(1, 0, n, device=device) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3, device="cpu") -> torch.Tensor:
    """Continuous VP-SDE schedule (Song et al. 2021); k-diffusion has it, A1111 does not offer it."""
    t = torch.linspace(1, eps_s, n, device=device)
    return append_zero(torch.sqrt(torch.exp(beta_d * t**2 / 2 + beta_min * t) - 1))


def uniform(n: int, schedule: DiscreteSchedule, device="cpu") -> torch.Tensor:
    """The model's own schedule: n sigmas evenly spaced in timestep (A1111 "Uniform", and "Automatic" by default)."""
    return schedule.get_sigmas(n).to(device)


def sgm_uniform(n: int, sigma_min: float, sigma_max: float, schedule: DiscreteSchedule, device="cpu") -> torch.Tensor:
    """Evenly spaced timesteps from sigma_max toward sigma_min, n+1 points with the last dropped, then 0 (SGM/SDXL)."""
    start = schedule.sigma_to_t(torch.tensor(sigma_max))
    end = schedule.sigma_to_t(torch.tensor(sigma_min))
    ts = torch.linspace(start, end, n + 1)[:-1]
    sigs = [float(schedule.t_to_sigma(t)) for t in ts] + [0.0]
    return torch.tensor(sigs, dtype=torch.float32, device=device)


def normal(n: int, sigma_min: float, sigma_max: float, schedule: DiscreteSchedule, device="cpu") -> torch.Tensor:
    """n evenly spaced timesteps from sigma_max to sigma_min inclusive, then 0."""
    start = schedule.sigma_to_t(torch.tensor(sigma_max))
    end = schedule.sigma_to_t(torch.tensor(sigma_min))
    sigs = [float(schedule.t_to_sigma(t)) for t in torch.linspace(start, end, n)] + [0.0]
    return torch.tensor(sigs, dtype=torch.float32, device=device)


def kl_optimal(n: int, sigma_min: float, sigma_max: float, device="cpu") -> torch.Tensor:
    """tan of a linear ramp from atan(sigma_max) to atan(sigma_min) (Sabour et al. 2024, "Align Your Steps" appendix).

    As in A1111 there are n + 1 values ending at sigma_min, with no trailing zero.
    """
    a_min = torch.arctan(torch.tensor(sigma_min, device=device))
    a_max = torch.arctan(torch.tensor(sigma_max, device=device))
    i = torch.arange(n + 1, device=device)
    return torch.tan(i / n * a_min + (1.0 - i / n) * a_max)


# NVIDIA's published 10-step tables, https://research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html
AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


def loglinear_interp(values, num: int) -> np.ndarray:
    """Resample a decreasing sequence to num points, interpolating linearly in log space."""
    xs = np.linspace(0, 1, len(values))
    ys = np.log(np.asarray(values, dtype=np.float64)[::-1])
    return np.exp(np.interp(np.linspace(0, 1, num), xs, ys))[::-1].copy()


def align_your_steps(n: int, is_sdxl: bool = False, device="cpu") -> torch.Tensor:
    """The AYS table for the model family, log-linearly resampled to n points unless n equals the table length, + 0."""
    table = AYS_SDXL if is_sdxl else AYS_SD1
    sigs = list(table) if n == len(table) else list(loglinear_interp(table, n))
    return torch.tensor(sigs + [0.0], dtype=torch.float32, device=device)


def simple(n: int, schedule: DiscreteSchedule, device="cpu") -> torch.Tensor:
    """Every (len/n)-th model sigma counted down from the largest, then 0."""
    stride = len(schedule.sigmas) / n
    sigs = [float(schedule.sigmas[-(1 + int(k * stride))]) for k in range(n)] + [0.0]
    return torch.tensor(sigs, dtype=torch.float32, device=device)


def ddim_uniform(n: int, schedule: DiscreteSchedule, device="cpu") -> torch.Tensor:
    """Model sigmas at timesteps 1, 1+s, 1+2s, ... (s = len//n) in descending order, then 0, as DDIM's discretisation.

    When len is not a multiple of n this gives more than n steps, as A1111 does.
    """
    stride = max(len(schedule.sigmas) // n, 1)
    sigs = [float(schedule.sigmas[k]) for k in range(1, len(schedule.sigmas), stride)][::-1] + [0.0]
    return torch.tensor(sigs, dtype=torch.float32, device=device)


def beta(
    n: int, sigma_min: float, sigma_max: float, alpha: float = 0.6, beta_param: float = 0.6, device="cpu"
) -> torch.Tensor:
    """Beta-distribution quantiles mapped linearly onto [sigma_min, sigma_max] (Lee et al. 2024, arXiv:2407.12173)."""
    from scipy import stats

    qs = [float(stats.beta.ppf(p, alpha, beta_param)) for p in 1 - np.linspace(0, 1, n)]
    sigs = [sigma_min + q * (sigma_max - sigma_min) for q in qs] + [0.0]
    return torch.tensor(sigs, dtype=torch.float32, device=device)
