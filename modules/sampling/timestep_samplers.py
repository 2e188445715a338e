"""Timestep samplers that A1111 runs outside k-diffusion: DDIM, PLMS and UniPC (its `sd_samplers_timesteps_impl`).

They take eps_model(x_t, t, **extra_args) -> eps on the VP sample x_t (no input scaling) at DDPM timesteps
(floats), ascending `timesteps` as A1111's get_timesteps builds them, and the model's `alphas_cumprod`.
Like A1111, DDIM and PLMS run len(timesteps) - 1 updates and never take the final step from timesteps[0].
"""

from __future__ import annotations

import numpy as np
import torch

from modules.sampling.common import call_back, expand_to
from modules.sampling.noise import default_noise_sampler


def a1111_timesteps(steps: int, device="cpu") -> torch.Tensor:
    """1, 1 + s, 1 + 2s, ... below 1000 with s = 1000 // steps (ascending), clipped to [0, 999]."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return torch.clip(torch.arange(0, 1000, 1000 // steps, device=device) + 1, 0, 999)


def _alphas(model, alphas_cumprod):
    ac = alphas_cumprod if alphas_cumprod is not None else getattr(model, "alphas_cumprod", None)
    if ac is None:
        raise ValueError("timestep samplers need alphas_cumprod (pass it, or give the model an .alphas_cumprod)")
    return torch.as_tensor(ac)


def _per_image(x: torch.Tensor, value: float) -> torch.Tensor:
    """A scalar as an x-dtype tensor shaped to broadcast per image (so maths happens in x's precision)."""
    return x.new_full((x.shape[0],) + (1,) * (x.ndim - 1), value)


def _ddim_tables(alphas_cumprod, timesteps, eta):
    ac = alphas_cumprod.to(timesteps.device)
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    a, ap = alphas.cpu().double().numpy(), alphas_prev.cpu().numpy()
    sigmas = eta * np.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
    return alphas, alphas_prev, torch.sqrt(1 - alphas), sigmas


@torch.no_grad()
def sample_ddim(
    model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0, noise_sampler=None, alphas_cumprod=None
):
    """DDIM (Song et al. 2020, eq. 12): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z.

    Noise is drawn every step, even with eta 0 (as A1111 does, which keeps the RNG stream aligned).
    """
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    alphas, alphas_prev, sqrt_one_minus, sigmas = _ddim_tables(_alphas(model, alphas_cumprod), timesteps, eta)
    s_in = x.new_ones((x.shape[0],))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in, **extra_args)
        a_t = _per_image(x, alphas[index].item())
        a_prev = _per_image(x, alphas_prev[index].item())
        sigma_t = _per_image(x, float(sigmas[index]))
        pred_x0 = (x - _per_image(x, sqrt_one_minus[index].item()) * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * e_t
        noise = sigma_t * noise_sampler(None, None)
        x = a_prev.sqrt() * pred_x0 + dir_xt + noise
        call_back(callback, x, i, 0, 0, pred_x0)
    return x


@torch.no_grad()
def sample_plms(model, x, timesteps, extra_args=None, callback=None, disable=None, alphas_cumprod=None):
    """PLMS / PNDM (Liu et al. 2022): Adams-Bashforth combinations of up to 4 past eps in DDIM updates.

    The first step is a pseudo improved-Euler step (two model calls).
    """
    extra_args = extra_args or {}
    alphas, alphas_prev, sqrt_one_minus, _ = _ddim_tables(_alphas(model, alphas_cumprod), timesteps, 0.0)
    s_in = x.new_ones([x.shape[0]])
    old_eps: list[torch.Tensor] = []

    def ddim_step(x, e_t, index):
        a_t = _per_image(x, alphas[index].item())
        a_prev = _per_image(x, alphas_prev[index].item())
        pred_x0 = (x - _per_image(x, sqrt_one_minus[index].item()) * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t, pred_x0

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        ts = timesteps[index].item() * s_in
        t_next = timesteps[max(index - 1, 0)].item() * s_in
        e_t = model(x, ts, **extra_args)
        if not old_eps:
            x_prev, _ = ddim_step(x, e_t, index)
            e_t_prime = (e_t + model(x_prev, t_next, **extra_args)) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x_prev, pred_x0 = ddim_step(x, e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        x = x_prev
        call_back(callback, x, i, 0, 0, pred_x0)
    return x


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(x) through (xp, fp), xp increasing; outside the range the end segments are extended."""
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, y0, y1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class DiscreteVPSchedule:
    """Continuous-time view of a discrete DDPM: t_n = (n + 1) / N, log alpha_t piecewise linear in t (DPM-Solver)."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        ac = torch.as_tensor(alphas_cumprod).float()
        self.total_n = len(ac)
        self.t_array = torch.linspace(0.0, 1.0, self.total_n + 1)[1:]
        self.log_alpha_array = 0.5 * torch.log(ac)

    def log_alpha(self, t):
        return _interp(t, self.t_array.to(t.device), self.log_alpha_array.to(t.device))

    def alpha(self, t):
        return self.log_alpha(t).exp()

    def std(self, t):
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def lambda_(self, t):
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))

    def inverse_lambda(self, lamb):
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lamb), -2.0 * lamb)
        return _interp(log_alpha, self.log_alpha_array.flip(0).to(lamb.device), self.t_array.flip(0).to(lamb.device))

    def model_time(self, t):
        """Continuous t in [1/N, 1] to the model's timestep label in [0, 999]."""
        return (t - 1.0 / self.total_n) * 1000.0


def unipc_time_steps(ns: DiscreteVPSchedule, skip_type: str, t_T: float, t_0: float, n: int, device="cpu"):
    if skip_type == "time_uniform":
        return torch.linspace(t_T, t_0, n + 1, device=device)
    if skip_type == "time_quadratic":
        return torch.linspace(t_T**0.5, t_0**0.5, n + 1).pow(2).to(device)
    if skip_type == "logSNR":
        lam_T = ns.lambda_(torch.tensor([t_T], device=device)).item()
        lam_0 = ns.lambda_(torch.tensor([t_0], device=device)).item()
        return ns.inverse_lambda(torch.linspace(lam_T, lam_0, n + 1, device=device))
    raise ValueError(f"UniPC skip type must be time_uniform, time_quadratic or logSNR, got {skip_type!r}")


class UniPC:
    """UniPC multistep predictor-corrector in data-prediction form (Zhao et al. 2023, arXiv:2302.04867), B(h) variants."""

    def __init__(self, eps_model, ns: DiscreteVPSchedule, extra_args=None, variant="bh1"):
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC variant must be 'bh1' or 'bh2' (vary_coeff is not implemented), got {variant!r}")
        self.eps_model = eps_model
        self.ns = ns
        self.extra_args = extra_args or {}
        self.variant = variant

    def data_prediction(self, x, t):
        eps = self.eps_model(x, self.ns.model_time(t), **self.extra_args)
        return (x - expand_to(self.ns.std(t), x.ndim) * eps) / expand_to(self.ns.alpha(t), x.ndim)

    def update(self, x, model_prev_list, t_prev_list, t, order, use_corrector=True):
        ns = self.ns
        dims = x.ndim
        t_prev_0 = t_prev_list[-1]
        lambda_prev_0, lambda_t = ns.lambda_(t_prev_0), ns.lambda_(t)
        model_prev_0 = model_prev_list[-1]
        sigma_prev_0, sigma_t = ns.std(t_prev_0), ns.std(t)
        alpha_t = ns.alpha(t)
        h = lambda_t - lambda_prev_0

        rks, d1s = [], []
        for i in range(1, order):
            rk = ((ns.lambda_(t_prev_list[-(i + 1)]) - lambda_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((model_prev_list[-(i + 1)] - model_prev_0) / rk)
        rks = torch.stack([torch.as_tensor(r, dtype=torch.float32) for r in rks + [1.0]]).to(x.device)

        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        rows, b = [], []
        factorial = 1
        for i in range(1, order + 1):
            rows.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_mat = torch.stack(rows)
        b = torch.stack(b).to(x.device)

        d1s_t = torch.stack(d1s, dim=1) if d1s else None
        x_t_ = expand_to(sigma_t / sigma_prev_0, dims) * x - expand_to(alpha_t * h_phi_1, dims) * model_prev_0
        if d1s_t is not None:
            rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else torch.linalg.solve(r_mat[:-1, :-1], b[:-1])
            pred_res = torch.einsum("k,bk...->b...", rhos_p, d1s_t)
        else:
            pred_res = 0
        x_t = x_t_ - expand_to(alpha_t * b_h, dims) * pred_res

        model_t = None
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_mat, b)
            model_t = self.data_prediction(x_t, t)
            corr_res = torch.einsum("k,bk...->b...", rhos_c[:-1], d1s_t) if d1s_t is not None else 0
            x_t = x_t_ - expand_to(alpha_t * b_h, dims) * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t


@torch.no_grad()
def sample_unipc(
    model,
    x,
    timesteps,
    extra_args=None,
    callback=None,
    disable=None,
    alphas_cumprod=None,
    is_img2img=False,
    variant="bh1",
    skip_type="time_uniform",
    order=3,
    lower_order_final=True,
):
    """UniPC over len(timesteps) steps on its own continuous time grid, as A1111 runs it (bh1, time_uniform, order 3).

    Only the number of timesteps is used (and, for img2img, the start time from the last timestep). The result is
    the sample at t = 1/N, not denoised to zero, as in A1111.
    """
    ns = DiscreteVPSchedule(_alphas(model, alphas_cumprod))
    steps = len(timesteps)
    order = min(order, steps)
    if order < 1:
        raise ValueError(f"UniPC order must be at least 1, got {order}")
    t_0 = 1.0 / ns.total_n
    t_T = float(timesteps[-1]) / 1000 + 1 / 1000 if is_img2img else 1.0
    ts = unipc_time_steps(ns, skip_type, t_T, t_0, steps, device=x.device)
    solver = UniPC(model, ns, extra_args, variant)
    batch = x.shape[0]
    step_index = 0

    def report(x, model_x):
        nonlocal step_index
        call_back(callback, x, step_index, 0, 0, model_x if model_x is not None else x)
        step_index += 1

    vec_t = ts[0].expand(batch)
    model_prev_list = [solver.data_prediction(x, vec_t)]
    t_prev_list = [vec_t]
    for init_order in range(1, order):  # warm-up with increasing order
        vec_t = ts[init_order].expand(batch)
        x, model_x = solver.update(x, model_prev_list, t_prev_list, vec_t, init_order, use_corrector=True)
        if model_x is None:
            model_x = solver.data_prediction(x, vec_t)
        report(x, model_x)
        model_prev_list.append(model_x)
        t_prev_list.append(vec_t)
    for step in range(order, steps + 1):
        vec_t = ts[step].expand(batch)
        step_order = min(order, steps + 1 - step) if lower_order_final else order
        x, model_x = solver.update(x, model_prev_list, t_prev_list, vec_t, step_order, use_corrector=step != steps)
        report(x, model_x)
        model_prev_list = model_prev_list[1:] + model_prev_list[-1:]
        t_prev_list = t_prev_list[1:] + [vec_t]
        if step < steps:
            model_prev_list[-1] = model_x if model_x is not None else solver.data_prediction(x, vec_t)
    return x
