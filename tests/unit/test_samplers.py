"""Our samplers against k-diffusion 0.1.1.post1 (test oracle only) and diffusers' schedulers, plus the A1111 registry."""

from __future__ import annotations

import math

import pytest
import torch

from modules import sd_samplers
from modules.sampling import dpm_solver, k_samplers, restart, timestep_samplers
from modules.sampling.common import SamplingInterrupted
from modules.sampling.discrete import DiscreteDenoiser, LCMDenoiser
from modules.sampling.noise import BrownianTreeNoiseSampler
from modules.sampling.schedules import karras
from tests.fixtures.kdiffusion_oracle import kdiffusion_modules

MU, STD = 0.3, 0.8  # toy data distribution N(MU, STD^2) per element


@pytest.fixture(scope="module")
def kd():
    with kdiffusion_modules() as ns:
        yield ns


def sd1_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


AC = sd1_alphas_cumprod()


def gaussian_denoised(x, sigma):
    s = sigma.view(-1, *([1] * (x.ndim - 1)))
    return (STD**2 * x + s**2 * MU) / (STD**2 + s**2)


def toy_eps_fn(x_scaled, t, **kwargs):
    """Exact eps for the Gaussian toy data, given the VP input and a (fractional) timestep."""
    sched = DiscreteDenoiser(lambda *a: None, AC)
    sigma = sched.t_to_sigma(t)
    x = x_scaled * (sigma**2 + 1).sqrt().view(-1, 1, 1, 1)
    return (x - gaussian_denoised(x, sigma)) / sigma.view(-1, 1, 1, 1)


@pytest.fixture(scope="module")
def unet_fn():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        layers_per_block=1,
        attention_head_dim=4,
    ).eval()
    cond = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(1))

    @torch.no_grad()
    def fn(x, t, **kwargs):
        return unet(x, t, encoder_hidden_states=cond).sample

    return fn


BROWNIAN = {"sample_dpmpp_sde", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"}
CASES = [
    ("sample_euler", {}),
    ("sample_euler", {"s_churn": 1.0}),
    ("sample_euler_ancestral", {}),
    ("sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("sample_heun", {}),
    ("sample_heun", {"s_churn": 2.0, "s_tmin": 0.5}),
    ("sample_dpm_2", {}),
    ("sample_dpm_2", {"s_churn": 1.0}),
    ("sample_dpm_2_ancestral", {}),
    ("sample_lms", {}),
    ("sample_dpmpp_2s_ancestral", {}),
    ("sample_dpmpp_sde", {}),
    ("sample_dpmpp_sde", {"eta": 0.0}),
    ("sample_dpmpp_2m", {}),
    ("sample_dpmpp_2m_sde", {}),
    ("sample_dpmpp_2m_sde", {"solver_type": "heun"}),
    ("sample_dpmpp_3m_sde", {}),
    ("sample_dpm_fast", {}),
    ("sample_dpm_fast", {"eta": 1.0}),
    ("sample_dpm_adaptive", {}),
    ("sample_dpm_adaptive", {"eta": 1.0}),
]
OURS = {name: getattr(k_samplers, name, None) or getattr(dpm_solver, name) for name, _ in CASES}


def _run(fn, denoiser, x, sigmas, name, kwargs, noise_cls, calls):
    torch.manual_seed(1234)  # churn / ancestral noise comes from the global generator on both sides
    kw = dict(kwargs)
    if name in BROWNIAN:
        kw["noise_sampler"] = noise_cls(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=[11, 12])
    if name == "sample_dpm_fast":
        return fn(denoiser, x, sigmas[-2].item(), sigmas[0].item(), len(sigmas) - 1, callback=calls.append, **kw)
    if name == "sample_dpm_adaptive":
        return fn(denoiser, x, sigmas[-2].item(), sigmas[0].item(), callback=calls.append, **kw)
    return fn(denoiser, x, sigmas, callback=calls.append, disable=True, **kw)


def _compare(kd, model_fn, prediction, name, kwargs, steps=8):
    ours_model = DiscreteDenoiser(model_fn, AC, prediction)
    oracle_cls = kd.external.DiscreteEpsDDPMDenoiser if prediction == "epsilon" else kd.external.DiscreteVDDPMDenoiser
    oracle_model = oracle_cls(model_fn, AC, quantize=False)
    sigmas = kd.sampling.get_sigmas_karras(steps, oracle_model.sigma_min.item(), oracle_model.sigma_max.item())
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5)) * sigmas[0]
    ours_calls, oracle_calls = [], []
    expected = _run(
        getattr(kd.sampling, name),
        oracle_model,
        x.clone(),
        sigmas,
        name,
        kwargs,
        kd.sampling.BrownianTreeNoiseSampler,
        oracle_calls,
    )
    got = _run(OURS[name], ours_model, x.clone(), sigmas, name, kwargs, BrownianTreeNoiseSampler, ours_calls)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert len(ours_calls) == len(oracle_calls) > 0
    for a, b in zip(ours_calls, oracle_calls, strict=True):
        torch.testing.assert_close(a["denoised"], b["denoised"], rtol=1e-5, atol=1e-5)
        assert float(a["sigma"]) == pytest.approx(float(b["sigma"]), rel=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_sampler_matches_k_diffusion_on_toy_model(kd, name, kwargs):
    _compare(kd, toy_eps_fn, "epsilon", name, kwargs)


UNET_CASES = [c for c in CASES if c[0] != "sample_dpm_adaptive"]  # adaptive takes dozens of steps; toy model covers it


@pytest.mark.parametrize(("name", "kwargs"), UNET_CASES, ids=[f"{n}-{k}" for n, k in UNET_CASES])
def test_sampler_matches_k_diffusion_on_tiny_unet(kd, unet_fn, name, kwargs):
    _compare(kd, unet_fn, "epsilon", name, kwargs, steps=5)


@pytest.mark.parametrize("name", ["sample_euler", "sample_dpmpp_2m", "sample_dpmpp_2m_sde"])
def test_v_prediction_matches_k_diffusion(kd, unet_fn, name):
    _compare(kd, unet_fn, "v_prediction", name, {}, steps=4)


def test_discrete_schedule_matches_k_diffusion(kd):
    ours = DiscreteDenoiser(toy_eps_fn, AC)
    oracle = kd.external.DiscreteEpsDDPMDenoiser(toy_eps_fn, AC, quantize=False)
    for n in (1, 7, 20, 1000):
        torch.testing.assert_close(ours.get_sigmas(n), oracle.get_sigmas(n))
    sig = torch.tensor([0.03, 0.5, 1.0, 3.3, 14.0])
    torch.testing.assert_close(ours.sigma_to_t(sig), oracle.sigma_to_t(sig))
    torch.testing.assert_close(ours.sigma_to_t(sig, quantize=True), oracle.sigma_to_t(sig, quantize=True))
    t = torch.tensor([0.0, 10.5, 500.25, 999.0])
    torch.testing.assert_close(ours.t_to_sigma(t), oracle.t_to_sigma(t))


def test_brownian_noise_matches_k_diffusion_single_and_batched_seeds(kd):
    x = torch.zeros(2, 3, 4, 4)
    for seed in (7, [7, 8]):
        a = BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=seed)
        b = kd.sampling.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=seed)
        for s0, s1 in ((14.6, 9.0), (9.0, 2.0), (2.0, 0.03)):
            torch.testing.assert_close(a(torch.tensor(s0), torch.tensor(s1)), b(torch.tensor(s0), torch.tensor(s1)))
    # per-image trees: an image's noise does not depend on its batch companions
    one = BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, seed=[8])(torch.tensor(5.0), torch.tensor(4.0))
    two = BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=[7, 8])(torch.tensor(5.0), torch.tensor(4.0))
    torch.testing.assert_close(one[0], two[1])


# ---- timestep samplers ----------------------------------------------------------------------------------------


def _ddim_scheduler(cls_name="DDIMScheduler", **kw):
    import diffusers

    return getattr(diffusers, cls_name)(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **kw
    )


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(unet_fn, eta):
    """A1111 runs len(timesteps) - 1 DDIM updates; they equal diffusers' first steps with leading spacing, offset 1."""
    steps = 10
    timesteps = sd_samplers.build_timesteps("DDIM", steps)
    assert timesteps.tolist() == list(range(1, 1000, 100))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    noises = [torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(100 + i)) for i in range(steps)]
    it = iter(noises)
    got = timestep_samplers.sample_ddim(
        unet_fn, x.clone(), timesteps, eta=eta, alphas_cumprod=AC, noise_sampler=lambda s, sn: next(it)
    )
    sched = _ddim_scheduler(steps_offset=1, set_alpha_to_one=False, clip_sample=False, timestep_spacing="leading")
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == timesteps.flip(0).tolist()
    y = x.clone()
    for i, t in enumerate(sched.timesteps[:-1]):
        eps = unet_fn(y, t.float().expand(2))
        y = sched.step(eps, t, y, eta=eta, variance_noise=noises[i]).prev_sample
    torch.testing.assert_close(got, y, rtol=1e-4, atol=1e-5)


def test_plms_equals_ddim_for_constant_eps_and_calls_model_once_per_step_plus_one():
    """With eps independent of x and t every Adams-Bashforth combination is that eps, so PLMS == DDIM (eta 0)."""
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    calls = []

    def model(x, t, **kw):
        calls.append(float(t[0]))
        return eps

    ts = timestep_samplers.a1111_timesteps(20)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    plms = timestep_samplers.sample_plms(model, x.clone(), ts, alphas_cumprod=AC)
    assert len(calls) == len(ts) - 1 + 1  # first step is a two-evaluation improved-Euler step
    ddim = timestep_samplers.sample_ddim(model, x.clone(), ts, alphas_cumprod=AC)
    torch.testing.assert_close(plms, ddim, rtol=1e-5, atol=1e-5)


def _vp_exact(x_t, t_from, t_to_sigma_end):
    """Exact probability-flow ODE solution for the Gaussian toy data, in VP coordinates."""
    sig = DiscreteDenoiser(toy_eps_fn, AC)
    s_from = sig.t_to_sigma(torch.tensor(float(t_from)))
    x_ve = x_t * (1 + s_from**2).sqrt()
    end_ve = MU + (x_ve - MU) * ((STD**2 + t_to_sigma_end**2) / (STD**2 + s_from**2)) ** 0.5
    return end_ve / (1 + t_to_sigma_end**2) ** 0.5


@pytest.mark.parametrize(("name", "tol_at_50"), [("DDIM", 0.08), ("PLMS", 0.01), ("UniPC", 0.025)])
def test_timestep_samplers_converge_to_the_exact_ode_of_gaussian_data(name, tol_at_50):
    """Error against the closed-form ODE solution is small and shrinks with more steps (first order for DDIM)."""
    den = DiscreteDenoiser(toy_eps_fn, AC)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    errors = []
    for steps in (25, 50):
        ts = sd_samplers.build_timesteps(name, steps)
        out = sd_samplers.sample(name, den.timestep_eps, x.clone(), ts, alphas_cumprod=AC)
        if name == "UniPC":  # runs its own grid from t=1 (timestep 999) to t=1/N (timestep 0)
            expected = _vp_exact(x, 999, den.sigmas[0])
        else:  # DDIM/PLMS end at timesteps[0]'s noise level
            expected = _vp_exact(x, int(ts[-1]), den.sigmas[int(ts[0])])
        errors.append((out - expected).abs().max().item())
    assert errors[1] < tol_at_50
    assert errors[1] < 0.7 * errors[0]


def test_unipc_matches_diffusers(unet_fn):
    """Over 9 steps UniPC's continuous grid lands on timesteps 999, 888, ..., 111, 0, which is diffusers' linspace grid.

    UniPC only uses the number of timesteps it is given (A1111's build_timesteps(9) has 10 entries, 1000 // 9 = 111),
    so we hand it 9 of them directly.
    """
    steps = 9
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    got = sd_samplers.sample("UniPC", unet_fn, x.clone(), torch.arange(steps), alphas_cumprod=AC)
    sched = _ddim_scheduler(
        "UniPCMultistepScheduler",
        solver_order=3,
        solver_type="bh1",
        predict_x0=True,
        lower_order_final=True,
        timestep_spacing="linspace",
        final_sigmas_type="sigma_min",
    )
    sched.set_timesteps(steps)
    y = x.clone()
    for t in sched.timesteps:
        y = sched.step(unet_fn(y, t.float().expand(2)), t, y).prev_sample
    torch.testing.assert_close(got, y, rtol=1e-4, atol=1e-4)


def test_v_model_timestep_eps_agrees_with_sigma_space_denoiser(unet_fn):
    den = DiscreteDenoiser(unet_fn, AC, "v_prediction")
    t = torch.tensor([400.0, 400.0])
    sigma = den.t_to_sigma(t)
    x_t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    x_ve = x_t * (1 + sigma**2).sqrt().view(-1, 1, 1, 1)
    eps_from_sigma = (x_ve - den(x_ve, sigma)) / sigma.view(-1, 1, 1, 1)
    torch.testing.assert_close(den.timestep_eps(x_t, t), eps_from_sigma, rtol=1e-4, atol=1e-4)


# ---- restart, LCM ---------------------------------------------------------------------------------------------


def test_restart_below_20_steps_is_heun():
    den = DiscreteDenoiser(toy_eps_fn, AC)
    sigmas = karras(12, den.sigma_min.item(), den.sigma_max.item())
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    torch.testing.assert_close(restart.sample_restart(den, x, sigmas), k_samplers.sample_heun(den, x, sigmas))


def test_restart_plan_and_result_at_20_steps():
    den = DiscreteDenoiser(toy_eps_fn, AC)
    sigmas = sd_samplers.build_sigmas("Restart", "Automatic", 20, AC)
    main, plan = restart.default_restart_plan(20)
    assert (main, plan) == (11, {0.1: [10, 1, 2]})
    main_sigmas = karras(main, sigmas[-2].item(), sigmas[0].item())
    segments = restart.build_restart_segments(main_sigmas, plan)
    assert len(segments) == 11 + 9
    jumps = [k for k in range(len(segments) - 1) if segments[k + 1][0] > segments[k][1]]
    assert len(jumps) == 1  # one restart: back up to the main-path sigma nearest 2, from the one nearest 0.1
    k = jumps[0]
    assert float(segments[k][1]) == pytest.approx(float(main_sigmas[torch.argmin((main_sigmas - 0.1).abs())]))
    assert float(segments[k + 1][0]) == pytest.approx(float(main_sigmas[torch.argmin((main_sigmas - 2).abs())]))
    calls = []
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * sigmas[0]
    out = restart.sample_restart(den, x, sigmas, callback=calls.append)
    assert len(calls) == 20
    # the restart re-noises, so the result is a fresh sample of N(MU, STD^2) rather than the ODE end point
    assert abs(out.mean().item() - MU) < 0.1 and abs(out.std().item() - STD) < 0.1
    draws = []

    def noise(a, b):
        draws.append((float(a), float(b)))
        return torch.randn(x.shape, generator=torch.Generator().manual_seed(len(draws)))

    restart.sample_restart(den, x, sigmas, noise_sampler=noise)
    assert len(draws) == 1 and draws[0][0] == pytest.approx(float(segments[k][1]))  # noise only at the jump up


def test_lcm_denoiser_grid_and_boundary_condition():
    den = LCMDenoiser(lambda x, t, **k: torch.zeros_like(x), AC)
    sig = den.get_sigmas(4)
    assert den.sigma_to_t(sig[:-1]).tolist() == [999, 679, 339, 19]  # linspace(999, 19, 4) on the 20-step grid
    x = torch.ones(1, 1, 2, 2)
    out = den(x, sig[:1])  # eps 0 -> x0 = x; boundary scaling with t=999*10 is ~ identity
    t10 = 9990.0
    c_skip, c_out = 0.25 / (t10**2 + 0.25), t10 / (t10**2 + 0.25) ** 0.5
    torch.testing.assert_close(out, x * (c_out + c_skip))
    assert torch.equal(k_samplers.sample_lcm(lambda x, s: x * 0 + 2, x, torch.tensor([3.0, 0.0])), x * 0 + 2)


# ---- registry -------------------------------------------------------------------------------------------------


def test_registry_order_aliases_and_flags():
    names = sd_samplers.sampler_names()
    assert names[:3] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"] and names[-1] == "LCM"
    assert len(names) == 19 and "DDIM CFG++" not in names
    assert sd_samplers.find_sampler_config("k_euler_a").name == "Euler a"
    assert sd_samplers.find_sampler_config("dpm++ 2m").name == "DPM++ 2M"
    cfg = sd_samplers.find_sampler_config("DPM++ 3M SDE")
    assert cfg.scheduler == "exponential" and cfg.discard_next_to_last_sigma and cfg.brownian_noise
    assert sd_samplers.find_sampler_config("DPM++ 2M SDE Heun").solver_type == "heun"
    assert sd_samplers.scheduler_labels()[0] == "Automatic" and len(sd_samplers.scheduler_labels()) == 12


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("DPM++ 2M Karras", ("DPM++ 2M", "Automatic")),
        ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Automatic")),
        ("Euler a SGMUniform", ("Euler a", "SGM Uniform")),
        ("Euler Karras", ("Euler", "Karras")),
        ("DPM++ 2M SDE Heun", ("DPM++ 2M SDE Heun", "Automatic")),
        ("k_dpmpp_2m", ("DPM++ 2M", "Automatic")),
        ("Euler a", ("Euler a", "Automatic")),
        ("", ("DPM++ 2M", "Automatic")),
    ],
)
def test_split_sampler_and_scheduler(given, expected):
    assert sd_samplers.split_sampler_and_scheduler(given) == expected


def test_unknown_names_raise_clear_errors():
    with pytest.raises(ValueError, match="valid samplers: DPM\\+\\+ 2M"):
        sd_samplers.find_sampler_config("Euler b")
    with pytest.raises(ValueError, match="not implemented"):
        sd_samplers.find_sampler_config("DDIM CFG++")
    with pytest.raises(ValueError, match="valid schedule types: Automatic"):
        sd_samplers.split_sampler_and_scheduler("Euler", "Bogus")
    with pytest.raises(ValueError, match="build_timesteps"):
        sd_samplers.build_sigmas("DDIM", "Automatic", 10, AC)


def test_build_sigmas_applies_a1111_rules(kd):
    den = DiscreteDenoiser(toy_eps_fn, AC)
    lo, hi = den.sigma_min.item(), den.sigma_max.item()
    torch.testing.assert_close(
        sd_samplers.build_sigmas("DPM++ 2M", "Automatic", 20, AC), kd.sampling.get_sigmas_karras(20, lo, hi)
    )
    torch.testing.assert_close(sd_samplers.build_sigmas("Euler", "Automatic", 20, AC), den.get_sigmas(20))
    dpm2 = sd_samplers.build_sigmas("DPM2", "Automatic", 10, AC)  # 11 karras sigmas, penultimate dropped
    full = kd.sampling.get_sigmas_karras(11, lo, hi)
    torch.testing.assert_close(dpm2, torch.cat([full[:-2], full[-1:]]))
    assert len(dpm2) == 11
    torch.testing.assert_close(
        sd_samplers.build_sigmas("Euler", "Karras", 5, AC, rho=3.0, sigma_max=10.0),
        kd.sampling.get_sigmas_karras(5, lo, 10.0, rho=3.0),
    )
    torch.testing.assert_close(
        sd_samplers.build_sigmas("Euler", "Karras", 5, AC, use_old_karras_scheduler_sigmas=True),
        kd.sampling.get_sigmas_karras(5, 0.1, 10.0),
    )
    ex = sd_samplers.build_sigmas("Euler", "Exponential", 6, AC, always_discard_next_to_last_sigma=True)
    assert len(ex) == 7


def test_sample_dispatch_brownian_seeds_and_interrupt():
    den = DiscreteDenoiser(toy_eps_fn, AC)
    sigmas = sd_samplers.build_sigmas("DPM++ 2M SDE", "Automatic", 6, AC)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    a = sd_samplers.sample("DPM++ 2M SDE", den, x, sigmas, seeds=[5, 6])
    b = sd_samplers.sample("DPM++ 2M SDE", den, x[1:], sigmas, seeds=[6])
    torch.testing.assert_close(a[1:], b)  # per-image Brownian trees: batch-independent
    draws = []

    def randn_like(t):
        draws.append(t.shape)
        return torch.zeros_like(t)

    quiet = sd_samplers.sample("Euler a", den, x, sigmas, randn_like=randn_like)
    assert len(draws) == len(sigmas) - 2  # no noise after the last step
    zero = k_samplers.sample_euler_ancestral(den, x, sigmas, noise_sampler=lambda s, sn: torch.zeros_like(x))
    torch.testing.assert_close(quiet, zero)
    seen = []
    out = sd_samplers.sample("Euler", den, x, sigmas, callback=seen.append, should_stop=lambda: len(seen) == 2)
    assert len(seen) == 2 and torch.equal(out, seen[-1]["denoised"])

    firsts = []

    def raising(payload):
        firsts.append(payload["denoised"])
        raise SamplingInterrupted

    assert torch.equal(sd_samplers.sample("DPM fast", den, x, sigmas, callback=raising), firsts[0])


def test_dpm_fast_uses_model_range_in_txt2img():
    den = DiscreteDenoiser(toy_eps_fn, AC)
    sigmas = sd_samplers.build_sigmas("DPM fast", "Align Your Steps", 6, AC)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * den.sigma_max
    seen = []
    sd_samplers.sample(
        "DPM fast",
        den,
        x,
        sigmas,
        eta=0.0,
        callback=seen.append,
        model_sigma_range=(den.sigma_min.item(), den.sigma_max.item()),
    )
    assert float(seen[0]["sigma"]) == pytest.approx(den.sigma_max.item(), rel=1e-5)
    assert math.isfinite(float(seen[-1]["sigma"]))
