"""Restart sampling (Xu et al. 2023, arXiv:2306.14878) in the form A1111 ships as its "Restart" sampler.

The main path is Heun steps; after reaching the restart interval's low end (sigma ~0.1) the sample is pushed back
up to a higher sigma (~2) with fresh forward noise and the interval is re-solved with its own Karras sub-schedule,
restart_times times. With fewer than 20 steps no restarts happen and it is plain Heun on the given sigmas.
"""

from __future__ import annotations

import torch

from modules.sampling.common import batch_ones, call_back, derivative
from modules.sampling.noise import default_noise_sampler
from modules.sampling.schedules import karras


def default_restart_plan(steps: int):
    """Restart budget used when none is given: (main steps, {sigma_low: [sub-steps + 1, times, sigma_high]}).

    20..35 steps: one restart of 9 sub-steps; 36+: two restarts of steps//4; fewer: none. The Heun main path
    gets the steps that remain.
    """
    if steps < 20:
        return steps, {}
    restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
    return steps - restart_steps * restart_times, {0.1: [restart_steps + 1, restart_times, 2]}


def build_restart_segments(sigmas: torch.Tensor, restart_list: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ordered list of (sigma_from, sigma_to) Heun steps, with each restart's sub-schedule spliced in."""
    by_index = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_list.items()}
    segments = []
    for i in range(len(sigmas) - 1):
        segments.append((sigmas[i], sigmas[i + 1]))
        if i + 1 not in by_index:
            continue
        sub_steps, times, sigma_high = by_index[i + 1]
        low_idx = i + 1
        high_idx = int(torch.argmin(abs(sigmas - sigma_high), dim=0))
        if high_idx < low_idx:
            sub = karras(sub_steps, sigmas[low_idx].item(), sigmas[high_idx].item(), device=sigmas.device)[:-1]
            for _ in range(times):
                segments.extend(zip(sub[:-1], sub[1:], strict=True))
    return segments


@torch.no_grad()
def sample_restart(
    model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None, restart_list=None
):
    """Heun steps along the restart plan; moving up in sigma adds noise of variance sigma_new^2 - sigma_old^2.

    `restart_list` is {sigma_low: [sub_steps, times, sigma_high]}; None picks default_restart_plan and, when it
    restarts, rebuilds the main path as a Karras schedule between sigmas[-2] and sigmas[0] with fewer steps.
    """
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = batch_ones(x)
    if restart_list is None:
        main_steps, restart_list = default_restart_plan(len(sigmas) - 1)
        if restart_list:
            sigmas = karras(main_steps, sigmas[-2].item(), sigmas[0].item(), device=sigmas.device)
    last_sigma = None
    for step_id, (old_sigma, new_sigma) in enumerate(build_restart_segments(sigmas, restart_list)):
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + noise_sampler(last_sigma, old_sigma) * s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        denoised = model(x, old_sigma * s_in, **extra_args)
        d = derivative(x, old_sigma, denoised)
        call_back(callback, x, step_id, new_sigma, old_sigma, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = derivative(x_2, new_sigma, model(x_2, new_sigma * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
        last_sigma = new_sigma
    return x
