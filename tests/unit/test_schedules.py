"""Sigma schedules: k-diffusion's (oracle) and diffusers' where they agree, otherwise A1111's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modules import sd_samplers
from modules.sampling import schedules
from modules.sampling.discrete import DiscreteSchedule
from tests.fixtures.kdiffusion_oracle import kdiffusion_modules

AC = torch.cumprod(1.0 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2, dim=0)
SCHED = DiscreteSchedule.from_alphas_cumprod(AC)
LO, HI = SCHED.sigma_min.item(), SCHED.sigma_max.item()


@pytest.fixture(scope="module")
def kds():
    with kdiffusion_modules() as ns:
        yield ns.sampling


@pytest.mark.parametrize("n", [1, 2, 10, 33])
def test_k_diffusion_schedules_match(kds, n):
    torch.testing.assert_close(schedules.karras(n, LO, HI), kds.get_sigmas_karras(n, LO, HI))
    torch.testing.assert_close(schedules.karras(n, 0.1, 10, rho=3.0), kds.get_sigmas_karras(n, 0.1, 10, rho=3.0))
    torch.testing.assert_close(schedules.exponential(n, LO, HI), kds.get_sigmas_exponential(n, LO, HI))
    torch.testing.assert_close(schedules.polyexponential(n, LO, HI), kds.get_sigmas_polyexponential(n, LO, HI))
    torch.testing.assert_close(
        schedules.polyexponential(n, LO, HI, rho=2.5), kds.get_sigmas_polyexponential(n, LO, HI, rho=2.5)
    )
    torch.testing.assert_close(schedules.vp(n), kds.get_sigmas_vp(n))


def _euler(**kw):
    from diffusers import EulerDiscreteScheduler

    s = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **kw
    )
    return s


@pytest.mark.parametrize("steps", [10, 20, 30])
def test_karras_matches_diffusers_euler_with_karras_sigmas(steps):
    """What lets a txt2img test compare us with StableDiffusionPipeline + EulerDiscreteScheduler(use_karras_sigmas)."""
    sched = _euler(use_karras_sigmas=True)
    sched.set_timesteps(steps)
    ours = sd_samplers.build_sigmas("Euler", "Karras", steps, AC)
    torch.testing.assert_close(ours, sched.sigmas.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sd_samplers.build_sigmas("DPM++ 2M", "Automatic", steps, AC), ours)


def test_exponential_and_beta_match_diffusers():
    for kw, label in (({"use_exponential_sigmas": True}, "Exponential"), ({"use_beta_sigmas": True}, "Beta")):
        sched = _euler(**kw)
        sched.set_timesteps(15)
        torch.testing.assert_close(
            sd_samplers.build_sigmas("Euler", label, 15, AC), sched.sigmas.float(), rtol=1e-5, atol=1e-6
        )


def test_simple_is_diffusers_trailing_and_ddim_is_leading_with_offset():
    """Simple takes timesteps 999, 899, ... (diffusers "trailing"); DDIM takes 901, 801, ..., 1 ("leading", offset 1)."""
    trailing = _euler(timestep_spacing="trailing")
    trailing.set_timesteps(10)
    torch.testing.assert_close(schedules.simple(10, SCHED), trailing.sigmas.float(), rtol=1e-5, atol=1e-6)
    leading = _euler(timestep_spacing="leading", steps_offset=1)
    leading.set_timesteps(10)
    torch.testing.assert_close(schedules.ddim_uniform(10, SCHED), leading.sigmas.float(), rtol=1e-5, atol=1e-6)
    assert len(schedules.ddim_uniform(30, SCHED)) == 32  # 1000 // 30 = 33 -> 31 timesteps, A1111's quirk


def test_uniform_is_the_model_schedule():
    torch.testing.assert_close(sd_samplers.build_sigmas("Euler", "Uniform", 12, AC), SCHED.get_sigmas(12))
    torch.testing.assert_close(sd_samplers.build_sigmas("Euler", "Automatic", 12, AC), SCHED.get_sigmas(12))
    assert SCHED.get_sigmas(12)[0].item() == pytest.approx(HI) and SCHED.get_sigmas(12)[-2].item() == pytest.approx(LO)


def test_sgm_uniform_and_normal_follow_their_timestep_definitions():
    """A1111 sd_schedulers: SGM Uniform = linspace(t_max, t_min, n+1)[:-1]; Normal = linspace(t_max, t_min, n)."""
    sgm = schedules.sgm_uniform(9, LO, HI, SCHED)  # 999/9 = 111: timesteps 999, 888, ..., 111
    torch.testing.assert_close(sgm[:-1], SCHED.sigmas[torch.arange(999, 0, -111)], rtol=1e-5, atol=1e-6)
    assert sgm[-1] == 0 and len(sgm) == 10
    normal = schedules.normal(10, LO, HI, SCHED)  # timesteps 999, 888, ..., 0
    torch.testing.assert_close(normal[:-1], SCHED.sigmas[torch.arange(999, -1, -111)], rtol=1e-5, atol=1e-6)
    assert normal[-1] == 0 and len(normal) == 11
    assert sd_samplers.build_sigmas("Euler", "SGMUniform", 9, AC).tolist() == sgm.tolist()


def test_kl_optimal_is_linear_in_arctan_and_has_no_trailing_zero():
    """Sabour et al. 2024 (AYS paper, eq. for the KL-optimal schedule), as A1111 implements it: n+1 values."""
    s = schedules.kl_optimal(8, LO, HI)
    assert len(s) == 9 and s[0].item() == pytest.approx(HI, rel=1e-5) and s[-1].item() == pytest.approx(LO, rel=1e-4)
    diffs = torch.diff(torch.arctan(s.double()))
    torch.testing.assert_close(diffs, diffs[:1].expand_as(diffs), rtol=1e-4, atol=1e-6)


def test_align_your_steps_tables_and_loglinear_resampling():
    """NVIDIA AYS 10-step tables (research.nvidia.com/labs/toronto-ai/AlignYourSteps/howto.html)."""
    assert schedules.align_your_steps(11)[:-1].tolist() == pytest.approx(schedules.AYS_SD1, rel=1e-6)
    assert schedules.align_your_steps(11, is_sdxl=True)[:-1].tolist() == pytest.approx(schedules.AYS_SDXL, rel=1e-6)
    s = schedules.align_your_steps(21, is_sdxl=True)  # 21 points include the 11 table nodes at even positions
    assert s[:-1:2].tolist() == pytest.approx(schedules.AYS_SDXL, rel=1e-5) and s[-1] == 0
    mid = np.exp((np.log(schedules.AYS_SDXL[0]) + np.log(schedules.AYS_SDXL[1])) / 2)
    assert s[1].item() == pytest.approx(mid, rel=1e-5)  # odd points are log-midpoints
    assert len(schedules.align_your_steps(10)) == 11  # n != 11 is resampled even for 10 steps (A1111 quirk)
    assert torch.all(torch.diff(schedules.align_your_steps(30)[:-1]) < 0)


def test_beta_schedule_shape():
    """Lee et al. 2024 (arXiv:2407.12173): beta(0.6, 0.6) quantiles, symmetric, from sigma_max down to sigma_min."""
    s = schedules.beta(9, LO, HI)
    assert s[0].item() == pytest.approx(HI, rel=1e-5) and s[-2].item() == pytest.approx(LO, rel=1e-4) and s[-1] == 0
    core = s[:-1].double()
    torch.testing.assert_close(core - LO, (HI - core).flip(0), rtol=1e-4, atol=1e-4)
    assert math.isclose(core[4].item(), (LO + HI) / 2, rel_tol=1e-4)  # median of a symmetric beta


@pytest.mark.parametrize("label", [s.label for s in sd_samplers.SCHEDULERS])
def test_every_schedule_type_builds_descending_sigmas_for_every_k_sampler_kind(label):
    for sampler in ("Euler", "DPM2", "LCM"):
        s = sd_samplers.build_sigmas(sampler, label, 12, AC)
        assert torch.isfinite(s).all() and (s >= 0).all()
        assert torch.all(torch.diff(s) <= 0), (sampler, label, s)
