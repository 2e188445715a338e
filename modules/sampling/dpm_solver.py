"""DPM-Solver fast (fixed orders) and adaptive (embedded pair with PID step control), Lu et al. 2022 (arXiv:2206.00927).

Time is t = -log sigma; the solver integrates the noise-prediction ODE from sigma_max to sigma_min (not to 0).
"""

from __future__ import annotations

import math

import torch

from modules.sampling.common import ancestral_split, call_back
from modules.sampling.noise import default_noise_sampler


class PIDStepController:
    """Proposes the next step size from the error history (proportional/integral/derivative on inverse error)."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error) -> bool:
        inv = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv, inv, inv]
        self.errs[0] = inv
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)  # soft limiter
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


class DPMSolver:
    """Single-step DPM-Solver-1/2/3 updates on the eps model derived from a denoiser; model evaluations are cached."""

    def __init__(self, model, extra_args=None, on_eval=None):
        self.model = model
        self.extra_args = extra_args or {}
        self.on_eval = on_eval

    @staticmethod
    def t(sigma):
        return -sigma.log()

    @staticmethod
    def sigma(t):
        return t.neg().exp()

    def eps(self, cache, key, x, t):
        if key in cache:
            return cache[key], cache
        sigma = self.sigma(t) * x.new_ones([x.shape[0]])
        eps = (x - self.model(x, sigma, **self.extra_args)) / self.sigma(t)
        if self.on_eval is not None:
            self.on_eval()
        return eps, {key: eps, **cache}

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps, cache

    def step_2(self, x, t, t_next, r1=1 / 2, cache=None):
        cache = cache or {}
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        x_2 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        return x_2, cache

    def step_3(self, x, t, t_next, r1=1 / 3, r2=2 / 3, cache=None):
        cache = cache or {}
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        u2 = (
            x
            - self.sigma(s2) * (r2 * h).expm1() * eps
            - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        )
        eps_r2, cache = self.eps(cache, "eps_r2", u2, s2)
        x_3 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_3, cache

    def _step(self, order, x, t, t_next, cache):
        if order == 1:
            return self.step_1(x, t, t_next, cache)
        if order == 2:
            return self.step_2(x, t, t_next, cache=cache)
        return self.step_3(x, t, t_next, cache=cache)

    def fast(self, x, t_start, t_end, nfe, eta=0.0, s_noise=1.0, noise_sampler=None, callback=None):
        noise_sampler = noise_sampler or default_noise_sampler(x)
        if not t_end > t_start and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        for i, order in enumerate(orders):
            cache = {}
            t, t_next = ts[i], ts[i + 1]
            if eta:
                sd, su = ancestral_split(self.sigma(t), self.sigma(t_next), eta)
                t_next_ = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5
            else:
                t_next_, su = t_next, 0.0
            eps, cache = self.eps(cache, "eps", x, t)
            denoised = x - self.sigma(t) * eps
            call_back(callback, x, i, self.sigma(t), self.sigma(t), denoised)
            x, cache = self._step(order, x, t, t_next_, cache)
            x = x + su * s_noise * noise_sampler(self.sigma(t), self.sigma(t_next))
        return x

    def adaptive(
        self,
        x,
        t_start,
        t_end,
        order=3,
        rtol=0.05,
        atol=0.0078,
        h_init=0.05,
        pcoeff=0.0,
        icoeff=1.0,
        dcoeff=0.0,
        accept_safety=0.81,
        eta=0.0,
        s_noise=1.0,
        noise_sampler=None,
        callback=None,
    ):
        noise_sampler = noise_sampler or default_noise_sampler(x)
        if order not in (2, 3):
            raise ValueError(f"order should be 2 or 3, got {order}")
        forward = t_end > t_start
        if not forward and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        h_init = abs(h_init) * (1 if forward else -1)
        atol, rtol = torch.tensor(atol), torch.tensor(rtol)
        s = t_start
        x_prev = x
        pid = PIDStepController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
            cache = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            if eta:
                sd, su = ancestral_split(self.sigma(s), self.sigma(t), eta)
                t_ = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t) ** 2 - self.sigma(t_) ** 2) ** 0.5
            else:
                t_, su = t, 0.0
            eps, cache = self.eps(cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps
            if order == 2:
                x_low, cache = self.step_1(x, s, t_, cache)
                x_high, cache = self.step_2(x, s, t_, cache=cache)
            else:
                x_low, cache = self.step_2(x, s, t_, r1=1 / 3, cache=cache)
                x_high, cache = self.step_3(x, s, t_, cache=cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose_step(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(self.sigma(s), self.sigma(t))
                s = t
                info["n_accept"] += 1
            else:
                info["n_reject"] += 1
            info["nfe"] += order
            info["steps"] += 1
            call_back(callback, x, info["steps"] - 1, self.sigma(s), self.sigma(s), denoised)
        return x, info


def _check_range(sigma_min, sigma_max):
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must be positive for DPM-Solver")


@torch.no_grad()
def sample_dpm_fast(
    model,
    x,
    sigma_min,
    sigma_max,
    n,
    extra_args=None,
    callback=None,
    disable=None,
    eta=0.0,
    s_noise=1.0,
    noise_sampler=None,
):
    """DPM-Solver-Fast: n model evaluations split into third-order steps (with a lower-order tail)."""
    _check_range(sigma_min, sigma_max)
    solver = DPMSolver(model, extra_args)
    t_start, t_end = solver.t(torch.tensor(sigma_max)), solver.t(torch.tensor(sigma_min))
    return solver.fast(x, t_start, t_end, n, eta, s_noise, noise_sampler, callback)


@torch.no_grad()
def sample_dpm_adaptive(
    model,
    x,
    sigma_min,
    sigma_max,
    extra_args=None,
    callback=None,
    disable=None,
    order=3,
    rtol=0.05,
    atol=0.0078,
    h_init=0.05,
    pcoeff=0.0,
    icoeff=1.0,
    dcoeff=0.0,
    accept_safety=0.81,
    eta=0.0,
    s_noise=1.0,
    noise_sampler=None,
    return_info=False,
):
    """DPM-Solver-12/23 with adaptive step size; ignores the step count."""
    _check_range(sigma_min, sigma_max)
    solver = DPMSolver(model, extra_args)
    t_start, t_end = solver.t(torch.tensor(sigma_max)), solver.t(torch.tensor(sigma_min))
    x, info = solver.adaptive(
        x,
        t_start,
        t_end,
        order,
        rtol,
        atol,
        h_init,
        pcoeff,
        icoeff,
        dcoeff,
        accept_safety,
        eta,
        s_noise,
        noise_sampler,
        callback,
    )
    return (x, info) if return_info else x
