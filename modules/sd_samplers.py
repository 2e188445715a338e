"""A1111 1.10's sampler and schedule-type registry by UI name, and the rules that turn a choice into sigmas and a run."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.sampling import dpm_solver, k_samplers, restart, schedules, timestep_samplers
from modules.sampling.common import SamplingInterrupted
from modules.sampling.discrete import DiscreteDenoiser, DiscreteSchedule, LCMDenoiser
from modules.sampling.noise import BrownianTreeNoiseSampler, default_noise_sampler


class UnknownSamplerError(ValueError):
    """A sampler or schedule-type name that is not registered."""


CHURN_PARAMS = ("s_churn", "s_tmin", "s_tmax", "s_noise")


@dataclass(frozen=True)
class SamplerConfig:
    """One entry of the sampler dropdown. `kind` is "sigma" (k-diffusion style), "dpm" (takes a sigma range) or
    "timestep" (DDIM/PLMS/UniPC: eps model, DDPM timesteps)."""

    name: str
    function: Callable[..., torch.Tensor]
    aliases: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "sigma"
    extra_params: tuple[str, ...] = ()
    takes_eta: bool = False
    denoiser: str = "discrete"  # "lcm" for A1111's LCM denoiser

    @property
    def scheduler(self) -> str | None:
        return self.options.get("scheduler")

    @property
    def discard_next_to_last_sigma(self) -> bool:
        return bool(self.options.get("discard_next_to_last_sigma", False))

    @property
    def second_order(self) -> bool:
        return bool(self.options.get("second_order", False))

    @property
    def uses_ensd(self) -> bool:
        return bool(self.options.get("uses_ensd", False))

    @property
    def brownian_noise(self) -> bool:
        return bool(self.options.get("brownian_noise", False))

    @property
    def solver_type(self) -> str | None:
        return self.options.get("solver_type")


def _s(name, fn, aliases, options=None, kind="sigma", extra=(), eta=False, denoiser="discrete"):
    return SamplerConfig(name, fn, tuple(aliases), dict(options or {}), kind, tuple(extra), eta, denoiser)


K = k_samplers
# Dropdown order, defaults and flags as A1111 1.10 (sd_samplers_kdiffusion/timesteps/lcm, sd_samplers_extra).
SAMPLERS: list[SamplerConfig] = [
    _s("DPM++ 2M", K.sample_dpmpp_2m, ["k_dpmpp_2m"], {"scheduler": "karras"}),
    _s(
        "DPM++ SDE",
        K.sample_dpmpp_sde,
        ["k_dpmpp_sde"],
        {"scheduler": "karras", "second_order": True, "brownian_noise": True},
        extra=("s_noise",),
        eta=True,
    ),
    _s(
        "DPM++ 2M SDE",
        K.sample_dpmpp_2m_sde,
        ["k_dpmpp_2m_sde"],
        {"scheduler": "exponential", "brownian_noise": True},
        extra=("s_noise",),
        eta=True,
    ),
    _s(
        "DPM++ 2M SDE Heun",
        K.sample_dpmpp_2m_sde,
        ["k_dpmpp_2m_sde_heun"],
        {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
        extra=("s_noise",),
        eta=True,
    ),
    _s(
        "DPM++ 2S a",
        K.sample_dpmpp_2s_ancestral,
        ["k_dpmpp_2s_a"],
        {"scheduler": "karras", "uses_ensd": True, "second_order": True},
        extra=("s_noise",),
        eta=True,
    ),
    _s(
        "DPM++ 3M SDE",
        K.sample_dpmpp_3m_sde,
        ["k_dpmpp_3m_sde"],
        {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
        extra=("s_noise",),
        eta=True,
    ),
    _s("Euler a", K.sample_euler_ancestral, ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}, eta=True),
    _s("Euler", K.sample_euler, ["k_euler"], {}, extra=CHURN_PARAMS),
    _s("LMS", K.sample_lms, ["k_lms"], {}),
    _s("Heun", K.sample_heun, ["k_heun"], {"second_order": True}, extra=CHURN_PARAMS),
    _s(
        "DPM2",
        K.sample_dpm_2,
        ["k_dpm_2"],
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True},
        extra=CHURN_PARAMS,
    ),
    _s(
        "DPM2 a",
        K.sample_dpm_2_ancestral,
        ["k_dpm_2_a"],
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True},
        extra=("s_noise",),
        eta=True,
    ),
    _s(
        "DPM fast",
        dpm_solver.sample_dpm_fast,
        ["k_dpm_fast"],
        {"uses_ensd": True},
        kind="dpm",
        extra=("s_noise",),
        eta=True,
    ),
    _s("DPM adaptive", dpm_solver.sample_dpm_adaptive, ["k_dpm_ad"], {"uses_ensd": True}, kind="dpm", eta=True),
    _s("Restart", restart.sample_restart, ["restart"], {"scheduler": "karras", "second_order": True}),
    _s("DDIM", timestep_samplers.sample_ddim, ["ddim"], {}, kind="timestep", eta=True),
    _s("PLMS", timestep_samplers.sample_plms, ["plms"], {}, kind="timestep"),
    _s("UniPC", timestep_samplers.sample_unipc, ["unipc"], {}, kind="timestep"),
    _s("LCM", K.sample_lcm, ["k_lcm"], {}, denoiser="lcm"),
]

# A1111 samplers we do not implement yet; named so a request for one fails clearly instead of being substituted.
MISSING_SAMPLERS = {"DDIM CFG++": "needs a guidance hook in the CFG denoiser (uncond prediction for renoising)"}


@dataclass(frozen=True)
class Scheduler:
    """One entry of the "Schedule type" dropdown."""

    name: str
    label: str
    function: Callable[..., torch.Tensor] | None
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: tuple[str, ...] = ()


SCHEDULERS: list[Scheduler] = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", schedules.uniform, need_inner_model=True),
    Scheduler("karras", "Karras", schedules.karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", schedules.exponential),
    Scheduler("polyexponential", "Polyexponential", schedules.polyexponential, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", schedules.sgm_uniform, need_inner_model=True, aliases=("SGMUniform",)),
    Scheduler("kl_optimal", "KL Optimal", schedules.kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", schedules.align_your_steps),
    Scheduler("simple", "Simple", schedules.simple, need_inner_model=True),
    Scheduler("normal", "Normal", schedules.normal, need_inner_model=True),
    Scheduler("ddim", "DDIM", schedules.ddim_uniform, need_inner_model=True),
    Scheduler("beta", "Beta", schedules.beta, need_inner_model=True),
]
sd_schedulers = SCHEDULERS  # A1111's module name for the table


def _sampler_map() -> dict[str, SamplerConfig]:
    out: dict[str, SamplerConfig] = {}
    for cfg in SAMPLERS:
        for key in (cfg.name, *cfg.aliases):
            out.setdefault(key, cfg)
            out.setdefault(key.lower(), cfg)
    return out


def _scheduler_map() -> dict[str, Scheduler]:
    out: dict[str, Scheduler] = {}
    for sch in SCHEDULERS:
        for key in (sch.name, sch.label, *sch.aliases):
            out.setdefault(key, sch)
            out.setdefault(key.lower(), sch)
    return out


def sampler_names() -> list[str]:
    return [cfg.name for cfg in SAMPLERS]


def scheduler_labels() -> list[str]:
    return [sch.label for sch in SCHEDULERS]


def find_sampler_config(name: str) -> SamplerConfig:
    """The sampler by UI name or alias (case-insensitive); unknown or unimplemented names raise UnknownSamplerError."""
    table = _sampler_map()
    cfg = table.get(name) or table.get(str(name).lower())
    if cfg is not None:
        return cfg
    if name in MISSING_SAMPLERS:
        raise UnknownSamplerError(f"Sampler {name!r} is not implemented yet: {MISSING_SAMPLERS[name]}")
    raise UnknownSamplerError(f"Unknown sampler {name!r}; valid samplers: {', '.join(sampler_names())}")


def find_scheduler(name: str | None) -> Scheduler:
    """The schedule type by label, internal name or alias (case-insensitive); None/"" means Automatic."""
    if not name:
        return SCHEDULERS[0]
    table = _scheduler_map()
    sch = table.get(name) or table.get(str(name).lower())
    if sch is None:
        raise UnknownSamplerError(
            f"Unknown schedule type {name!r}; valid schedule types: {', '.join(scheduler_labels())}"
        )
    return sch


def split_sampler_and_scheduler(name: str, scheduler: str | None = None, convert_automatic: bool = True):
    """Resolve an old combined name ("DPM++ 2M Karras", "Euler a SGMUniform") into (sampler name, schedule label).

    A trailing " <schedule label/name/alias>" overrides `scheduler`; the schedule goes back to "Automatic" when it
    is the sampler's own default, as A1111 does. Empty name means the first sampler.
    """
    found = find_scheduler(scheduler)
    base = name or SAMPLERS[0].name
    if base not in _sampler_map() and base.lower() not in _sampler_map():
        for sch in SCHEDULERS:
            suffix = next((opt for opt in (sch.label, sch.name, *sch.aliases) if base.endswith(" " + opt)), None)
            if suffix is not None:
                found = sch
                base = base[: -(len(suffix) + 1)]
                break
    cfg = find_sampler_config(base)
    if convert_automatic and cfg.scheduler == found.name:
        found = SCHEDULERS[0]
    return cfg.name, found.label


def create_denoiser(
    sampler_name: str, model_fn, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon", quantize: bool = False
) -> DiscreteDenoiser:
    """The sigma-space wrapper the sampler expects: A1111's LCM denoiser for LCM, else the discrete DDPM one."""
    if find_sampler_config(sampler_name).denoiser == "lcm":
        return LCMDenoiser(model_fn, alphas_cumprod, prediction_type)
    return DiscreteDenoiser(model_fn, alphas_cumprod, prediction_type, quantize)


def _schedule_for(cfg: SamplerConfig, model) -> DiscreteSchedule:
    if isinstance(model, DiscreteSchedule):
        return model
    ac = torch.as_tensor(model)
    if cfg.denoiser == "lcm":
        return LCMDenoiser(lambda *a, **k: None, ac)
    return DiscreteSchedule.from_alphas_cumprod(ac)


def build_sigmas(
    sampler_name: str,
    scheduler_name: str | None,
    steps: int,
    alphas_cumprod,
    is_sdxl: bool = False,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float | None = None,
    always_discard_next_to_last_sigma: bool = False,
    use_old_karras_scheduler_sigmas: bool = False,
    beta_alpha: float = 0.6,
    beta_beta: float = 0.6,
    device="cpu",
) -> torch.Tensor:
    """The sigmas A1111's KDiffusionSampler.get_sigmas would use.

    `alphas_cumprod` may be the model's table or a DiscreteSchedule/denoiser. "Automatic" takes the sampler's default
    schedule or else the model's own (Uniform). Samplers that discard the penultimate sigma get one more step and
    drop it. Model sigma range is the default range; sigma_min/sigma_max (when non-zero) and rho override it.
    """
    cfg = find_sampler_config(sampler_name)
    if cfg.kind == "timestep":
        raise UnknownSamplerError(f"{cfg.name} is a timestep sampler: use build_timesteps, not build_sigmas")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    schedule = _schedule_for(cfg, alphas_cumprod)
    discard = cfg.discard_next_to_last_sigma or always_discard_next_to_last_sigma
    n = steps + 1 if discard else steps
    sch = find_scheduler(scheduler_name)
    if sch.function is None and cfg.scheduler:
        sch = find_scheduler(cfg.scheduler)
    m_min, m_max = schedule.sigma_min.item(), schedule.sigma_max.item()
    if sch.function is None:
        sigmas = schedule.get_sigmas(n).to(device)
    else:
        lo, hi = (0.1, 10.0) if use_old_karras_scheduler_sigmas else (m_min, m_max)
        if sigma_min:
            lo = sigma_min
        if sigma_max:
            hi = sigma_max
        sigmas = _call_schedule(sch, n, lo, hi, schedule, is_sdxl, rho, beta_alpha, beta_beta, device)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def _call_schedule(sch, n, lo, hi, schedule, is_sdxl, rho, beta_alpha, beta_beta, device):
    f = schedules
    if sch.function is f.karras:
        return f.karras(n, lo, hi, rho if rho else 7.0, device=device)
    if sch.function is f.polyexponential:
        return f.polyexponential(n, lo, hi, rho if rho else 1.0, device=device)
    if sch.function is f.exponential:
        return f.exponential(n, lo, hi, device=device)
    if sch.function is f.uniform:
        return f.uniform(n, schedule, device=device)
    if sch.function in (f.sgm_uniform, f.normal):
        return sch.function(n, lo, hi, schedule, device=device)
    if sch.function is f.kl_optimal:
        return f.kl_optimal(n, lo, hi, device=device)
    if sch.function is f.align_your_steps:
        return f.align_your_steps(n, is_sdxl, device=device)
    if sch.function in (f.simple, f.ddim_uniform):
        return sch.function(n, schedule, device=device)
    return f.beta(n, lo, hi, beta_alpha, beta_beta, device=device)


def build_timesteps(sampler_name: str, steps: int, always_discard_next_to_last_sigma: bool = False, device="cpu"):
    """DDPM timesteps for DDIM/PLMS/UniPC as A1111 builds them (ascending, 1 + k * (1000 // steps))."""
    cfg = find_sampler_config(sampler_name)
    if cfg.kind != "timestep":
        raise UnknownSamplerError(f"{cfg.name} is a sigma sampler: use build_sigmas, not build_timesteps")
    discard = cfg.discard_next_to_last_sigma or always_discard_next_to_last_sigma
    return timestep_samplers.a1111_timesteps(steps + 1 if discard else steps, device=device)


def sample(
    sampler_name: str,
    model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    eta: float | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    randn_like: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seeds: Sequence[int] | None = None,
    noise_sampler=None,
    alphas_cumprod: torch.Tensor | None = None,
    is_img2img: bool = False,
    model_sigma_range: tuple[float, float] | None = None,
    unipc_options: dict | None = None,
) -> torch.Tensor:
    """Run one A1111 sampler and return the final latent.

    model: for sigma samplers denoiser(x, sigma, **extra_args) -> x0 (e.g. a CFG wrapper over create_denoiser);
    for timestep samplers eps_model(x_t, t, **extra_args) -> eps, with `sigmas` holding build_timesteps() output.
    x: already scaled initial latent (noise * sigmas[0] for sigma samplers, plain noise for timestep ones).
    Noise: `randn_like` (A1111's per-image RNG) feeds every non-Brownian draw; Brownian samplers get one tree per
    seed in `seeds`. Interrupt/skip: `should_stop()` is polled after every step, or the callback may raise
    SamplingInterrupted; either way sampling ends and the last denoised estimate is returned, as A1111 does.
    DPM fast/adaptive integrate between `model_sigma_range` (txt2img: the model's) or else sigmas[-2]..sigmas[0].
    """
    cfg = find_sampler_config(sampler_name)
    kwargs: dict[str, Any] = {}
    params = {"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise}
    for key in cfg.extra_params:
        kwargs[key] = params[key]
    if cfg.takes_eta:
        kwargs["eta"] = eta if eta is not None else (0.0 if cfg.kind == "timestep" else 1.0)
    if cfg.solver_type:
        kwargs["solver_type"] = cfg.solver_type
    if "noise_sampler" in inspect.signature(cfg.function).parameters:
        if noise_sampler is None and cfg.brownian_noise and seeds is not None:
            positive = sigmas[sigmas > 0]
            noise_sampler = BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=list(seeds))
        if noise_sampler is None and not cfg.brownian_noise:
            noise_sampler = default_noise_sampler(x, randn_like)
        if noise_sampler is not None:
            kwargs["noise_sampler"] = noise_sampler
    if cfg.kind == "timestep":
        kwargs["alphas_cumprod"] = alphas_cumprod
        if cfg.name == "UniPC":
            kwargs.update({"is_img2img": is_img2img, **(unipc_options or {})})

    last = {"denoised": None}

    def step_callback(payload):
        last["denoised"] = payload.get("denoised")
        if callback is not None:
            callback(payload)
        if should_stop is not None and should_stop():
            raise SamplingInterrupted

    try:
        if cfg.kind == "dpm":
            if model_sigma_range is not None and not is_img2img:
                lo, hi = model_sigma_range
            else:
                lo, hi = sigmas[-2], sigmas[0]
            return cfg.function(
                model,
                x,
                lo,
                hi,
                **({"n": len(sigmas) - 1} if cfg.name == "DPM fast" else {}),
                extra_args=extra_args,
                callback=step_callback,
                **kwargs,
            )
        return cfg.function(model, x, sigmas, extra_args=extra_args, callback=step_callback, **kwargs)
    except SamplingInterrupted:
        return last["denoised"] if last["denoised"] is not None else x


# A1111's sampler lists for extensions (SamplerData tuples), built from SAMPLERS above; looked up on first use
# because compat_surface itself reads SAMPLERS.
_A1111_NAMES = ("all_samplers", "samplers", "samplers_for_img2img", "samplers_map", "create_sampler")


def __getattr__(name: str):
    if name in _A1111_NAMES:
        from modules import compat_surface

        return getattr(compat_surface, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
