"""L3 processing: one sampling run: prompts and seeds set up, conds, noise, the CFG denoiser and the sampler call."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from modules import image_conditioning, prompt_parser, refiner, rng, sd_samplers, vae
from modules.denoiser import CFGDenoiser, DenoiserHooks, LatentBlend, UNetModel
from modules.extra_networks_syntax import extract_extra_networks

log = logging.getLogger(__name__)


def _as_list(value: Any, n: int) -> list[str]:
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"expected {n} prompts, got {len(value)}")
        return [str(v) for v in value]
    return [str(value or "")] * n


def setup_prompts(p: Any) -> None:
    """all_prompts / all_negative_prompts after styles, as A1111's setup_prompts."""
    n = p.n_iter * p.batch_size
    prompts = _as_list(p.prompt, n)
    negatives = _as_list(p.negative_prompt, n)
    # Comments are stripped from what the user typed before styles are merged in: A1111 strips them after,
    # so a "# note" on the last line also swallowed a style appended to that line.
    if p.opt("enable_prompt_comments", True):
        prompts = [prompt_parser.strip_comments(x).strip() for x in prompts]
        negatives = [prompt_parser.strip_comments(x).strip() for x in negatives]
    styles_db = getattr(p, "styles_db", None)
    if styles_db is not None and p.styles:
        prompts = [styles_db.apply_styles_to_prompt(x, p.styles) for x in prompts]
        negatives = [styles_db.apply_negative_styles_to_prompt(x, p.styles) for x in negatives]
    p.all_prompts, p.all_negative_prompts = prompts, negatives
    p.main_prompt, p.main_negative_prompt = prompts[0], negatives[0]


def setup_seeds(p: Any) -> None:
    n = p.n_iter * p.batch_size
    p.all_seeds, p.all_subseeds = rng.image_seeds(p.seed, p.subseed, p.subseed_strength, n)


def _time_ids(p: Any, batch: int, aesthetic: float | None, device: Any, width: int | None = None,
              height: int | None = None) -> torch.Tensor:
    """SDXL size/crop conditioning (A1111: original size = target size = image size, crops from settings)."""
    h, w = height or p.height, width or p.width
    crop = (p.opt("sdxl_crop_top", 0), p.opt("sdxl_crop_left", 0))
    tail = [aesthetic] if aesthetic is not None else [h, w]
    return torch.tensor([[h, w, *crop, *tail]] * batch, dtype=torch.float32, device=device)


def cached_conds(p: Any, prompts: list[str], negatives: list[str], steps: int) -> tuple[Any, Any]:
    """Conditioning for a batch, reused while the prompts and settings that shape it are unchanged."""
    return conds_for_model(p, p.sd_model, prompts, negatives, steps, conditioner=p.conditioner)


def conds_for_model(p: Any, model: Any, prompts: list[str], negatives: list[str], steps: int, *,
                    hires_steps: int | None = None, conditioner: Any = None, cache: str = "") -> tuple[Any, Any]:
    """(c, uc) for `model` (its own text encoders), cached on p per purpose (`cache`: "", "hr", "refiner"...)."""
    from modules.conditioning import ConditioningOptions

    if conditioner is None:
        conditioner = p.conditioner if model is p.sd_model else p.runtime.conditioner_for(model)
    # Settings are read now, inside the job, so per-job overrides (override_settings) apply.
    options = ConditioningOptions.from_settings(p.opt)
    if hasattr(conditioner, "set_options") and conditioner.options != options:
        conditioner.set_options(options)
    key_extra = (steps, hires_steps, p.opt("CLIP_stop_at_last_layers", 1), p.opt("emphasis", "Original"),
                 p.opt("comma_padding_backtrack", 20), id(model), getattr(conditioner, "cache_salt", None))
    ukey = (tuple(negatives), *key_extra)
    ckey = (tuple(prompts), *key_extra)
    c_name, uc_name = (f"cached_{cache}_c", f"cached_{cache}_uc") if cache else ("cached_c", "cached_uc")
    cached_c, cached_uc = getattr(p, c_name, None) or {}, getattr(p, uc_name, None) or {}
    if cached_uc.get("key") != ukey:
        # Marked as negative: SDXL encodes an empty negative prompt as zeros, as A1111 does.
        negative_texts = prompt_parser.SdConditioning(negatives, is_negative_prompt=True)
        cached_uc = {"key": ukey, "value": prompt_parser.get_learned_conditioning(
            conditioner, negative_texts, steps, hires_steps)}
        setattr(p, uc_name, cached_uc)
    if cached_c.get("key") != ckey:
        cached_c = {"key": ckey, "value": prompt_parser.get_multicond_learned_conditioning(
            conditioner, prompts, steps, hires_steps)}
        setattr(p, c_name, cached_c)
    if hasattr(conditioner, "pop_extra_generation_params"):
        p.extra_generation_params.update(conditioner.pop_extra_generation_params())  # TI hashes, Emphasis
    return cached_c["value"], cached_uc["value"]


def image_cond_for(p: Any, model: Any, batch: int, width: int, height: int) -> torch.Tensor | None:
    """The extra UNet input of `model` for this pass: the processing kind's, else A1111's txt2img default."""
    own = getattr(p, "image_conditioning_for", None)
    if own is not None:
        return own(model, batch, width, height)
    return image_conditioning.for_txt2img(model, batch, width, height)


def build_denoiser(p: Any, model: Any, c: Any, uc: Any, batch: int, width: int, height: int, total_steps: int,
                   sampler_name: str, hooks: DenoiserHooks | None = None) -> CFGDenoiser:
    """The CFG denoiser over `model`'s UNet, with its SDXL size (or refiner aesthetic) conditioning, the image
    conditioning of inpainting/instruct-pix2pix models and the kind's latent mask blend (inpainting)."""
    unet = model.pipe.unet
    device = next(unet.parameters()).device
    time_ids = uncond_time_ids = None
    if model.is_sdxl:
        if model.is_sdxl_refiner:
            time_ids = _time_ids(p, batch, p.opt("sdxl_refiner_high_aesthetic_score", 6.0), device, width, height)
            uncond_time_ids = _time_ids(p, batch, p.opt("sdxl_refiner_low_aesthetic_score", 2.5), device, width,
                                        height)
        else:
            time_ids = uncond_time_ids = _time_ids(p, batch, None, device, width, height)
    ac = model.pipe.scheduler.alphas_cumprod.to(torch.float32)
    inner = sd_samplers.create_denoiser(sampler_name, UNetModel(unet), ac, model.prediction_type)
    blend: LatentBlend | None = getattr(p, "latent_blend", None)
    image_cond = image_cond_for(p, model, batch, width, height)
    image_cfg = None
    if image_conditioning.kind(model) == "instruct-pix2pix" and getattr(p, "source_images", None) is not None:
        image_cfg = p.image_cfg_scale if getattr(p, "image_cfg_scale", None) is not None else 1.5  # A1111's default
    return CFGDenoiser(inner, c, uc, p.cfg_scale, state=p.state, hooks=hooks or p.hooks or DenoiserHooks(),
                       total_steps=total_steps, time_ids=time_ids, uncond_time_ids=uncond_time_ids,
                       image_cond=image_cond, blend=blend, image_cfg_scale=image_cfg)


def _step_callback(p: Any, denoiser: Any, steps: int, is_sdxl: bool) -> Any:
    preview_every = p.opt("show_progress_every_n_steps", 10)
    hooks = denoiser.hooks

    def callback(d: dict) -> None:
        step = d["i"] + 1
        denoiser.step = step
        p.state.set_step(step, steps)
        p.state.current_latent = d["denoised"]
        if p.opt("live_previews_enable", True) and preview_every > 0 and step % preview_every == 0:
            from modules.live_preview import preview_image

            runtime = getattr(p, "runtime", None)
            models_dir = runtime.paths.models_dir if runtime is not None else None
            model = p.sd_model
            p.state.current_image = preview_image(
                p.opt("show_progress_type", "TAESD"), d["denoised"][0], is_sdxl, models_dir,
                decode_full=lambda lat: vae.to_pil(vae.decode_latents(model, lat[None].float())[0]))
            p.state.current_image_sampling_step = step
            p.state.id_live_preview += 1
        for hook in hooks.after_step:
            hook(d)

    return callback


def _sampler_extra(p: Any, cfg: Any) -> dict:
    return {
        "eta": p.eta if p.eta is not None else (
            p.opt("eta_ddim", 0.0) if cfg.kind == "timestep" else p.opt("eta_ancestral", 1.0)),
        "s_churn": p.s_churn if p.s_churn is not None else p.opt("s_churn", 0.0),
        "s_tmin": p.s_tmin if p.s_tmin is not None else p.opt("s_tmin", 0.0),
        "s_tmax": (p.s_tmax if p.s_tmax is not None else p.opt("s_tmax", 0.0)) or math.inf,
        "s_noise": p.s_noise if p.s_noise is not None else p.opt("s_noise", 1.0),
    }


def _image_rng(p: Any, shape: tuple[int, int, int], seeds: list[int], subseeds: list[int], cfg: Any,
               device: Any) -> rng.ImageRNG:
    ensd = p.opt("eta_noise_seed_delta", 0) if cfg.uses_ensd else 0
    return rng.ImageRNG(shape, seeds, subseeds=subseeds, subseed_strength=p.subseed_strength,
                        seed_resize_from_h=max(p.seed_resize_from_h, 0),
                        seed_resize_from_w=max(p.seed_resize_from_w, 0),
                        source=p.opt("randn_source", "GPU"), device=device, eta_noise_seed_delta=ensd)


def _sigma_kwargs(p: Any) -> dict:
    return {"sigma_min": p.opt("sigma_min", 0.0) or None, "sigma_max": p.opt("sigma_max", 0.0) or None,
            "rho": p.opt("rho", 0.0) or None,
            "always_discard_next_to_last_sigma": p.opt("always_discard_next_to_last_sigma", False),
            "beta_alpha": p.opt("beta_dist_alpha", 0.6), "beta_beta": p.opt("beta_dist_beta", 0.6)}


def first_pass_conds(p: Any, model: Any) -> tuple[Any, Any]:
    """This batch's first-pass conds for another model (the refiner), from its own text encoders."""
    stripped = [extract_extra_networks(x)[0] for x in p.prompts]
    stripped_neg = [extract_extra_networks(x)[0] for x in p.negative_prompts]
    return conds_for_model(p, model, stripped, stripped_neg, p.steps, cache="refiner")


def sample_txt2img(p: Any, c: Any, uc: Any, seeds: list[int], subseeds: list[int]) -> torch.Tensor:
    """Noise for this batch, then one sampler run with the CFG denoiser; returns the final latents."""
    model = p.sd_model
    unet = model.pipe.unet
    device = next(unet.parameters()).device
    latent_ch = unet.config.out_channels
    shape = (latent_ch, p.height // 8, p.width // 8)
    cfg = sd_samplers.find_sampler_config(p.sampler_name)
    image_rng = _image_rng(p, shape, seeds, subseeds, cfg, device)
    noise = image_rng.first().to(device, torch.float32)
    ac = model.pipe.scheduler.alphas_cumprod.to(torch.float32)
    steps = p.steps
    base = build_denoiser(p, model, c, uc, len(seeds), p.width, p.height, steps, p.sampler_name)
    inner = base.inner
    denoiser = refiner.wrap(p, base, lambda m: build_denoiser(
        p, m, *first_pass_conds(p, m), len(seeds), p.width, p.height, steps, p.sampler_name, base.hooks),
        total_steps=steps, is_hr_pass=False)
    callback = _step_callback(p, denoiser, steps, model.is_sdxl)
    extra = _sampler_extra(p, cfg)
    record_sampler_params(p, cfg, extra)
    randn_like = lambda x: image_rng.next().to(x.device, x.dtype)  # noqa: E731
    if cfg.kind == "timestep":
        timesteps = sd_samplers.build_timesteps(p.sampler_name, steps, p.opt("always_discard_next_to_last_sigma",
                                                                              False), device=device)
        eps_model = EpsFromDenoiser(denoiser, inner)
        return sd_samplers.sample(p.sampler_name, eps_model, noise, timesteps, callback=callback,
                                  randn_like=randn_like, seeds=seeds, alphas_cumprod=ac, eta=extra["eta"],
                                  unipc_options=_unipc_options(p))
    sigmas = sd_samplers.build_sigmas(p.sampler_name, p.scheduler, steps, inner, model.is_sdxl, device=device,
                                      **_sigma_kwargs(p))
    x = noise * sigmas[0]
    if p.opt("sgm_noise_multiplier", False):
        x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    brownian_seeds = seeds if p.opt("enable_batch_seeds", True) else [seeds[0]]
    return sd_samplers.sample(p.sampler_name, denoiser, x, sigmas, callback=callback, eta=extra["eta"],
                              s_churn=extra["s_churn"], s_tmin=extra["s_tmin"], s_tmax=extra["s_tmax"],
                              s_noise=extra["s_noise"], randn_like=randn_like, seeds=brownian_seeds,
                              alphas_cumprod=ac, model_sigma_range=(float(inner.sigma_min), float(inner.sigma_max)))


def _resolved_schedule_label(sampler_name: str, scheduler: str | None) -> str | None:
    """The schedule A1111's get_sigmas labels (None when the model's own sigmas are used)."""
    cfg = sd_samplers.find_sampler_config(sampler_name)
    sch = sd_samplers.find_scheduler(scheduler)
    if sch.function is None and cfg.scheduler:
        sch = sd_samplers.find_scheduler(cfg.scheduler)
    return None if sch.function is None else sch.label


def sample_img2img(p: Any, x: torch.Tensor, c: Any, uc: Any, seeds: list[int], subseeds: list[int], *, steps: int,
                   sampler_name: str, scheduler: str | None, width: int, height: int, is_hr_pass: bool = False,
                   conds_for: Any = None, requested_steps: bool = True, noise_multiplier: float = 1.0
                   ) -> torch.Tensor:
    """Denoise the latents `x` from p.denoising_strength of the way, as A1111's sample_img2img.

    Noise comes from fresh per-image generators of the same seeds (a new ImageRNG at this size: its first draw is
    the start noise, later draws feed ancestral samplers). `conds_for(model)` gives conds for a refiner switch.
    """
    model = p.sd_model
    device = next(model.pipe.unet.parameters()).device
    x = x.to(device, torch.float32)
    cfg = sd_samplers.find_sampler_config(sampler_name)
    image_rng = _image_rng(p, tuple(x.shape[1:]), seeds, subseeds, cfg, device)
    noise = image_rng.next().to(device, torch.float32) * noise_multiplier
    total, t_enc = _img2img_steps(p, steps if requested_steps else None)
    if total < 1 or t_enc < 0:  # strength 0: A1111's empty schedule leaves the latents as they are
        return x
    ac = model.pipe.scheduler.alphas_cumprod.to(torch.float32)
    run_steps = t_enc + 1
    base = build_denoiser(p, model, c, uc, len(seeds), width, height, run_steps, sampler_name)
    inner = base.inner
    denoiser = refiner.wrap(p, base, lambda m: build_denoiser(
        p, m, *conds_for(m), len(seeds), width, height, run_steps, sampler_name, base.hooks),
        total_steps=run_steps, is_hr_pass=is_hr_pass) if conds_for is not None else base
    p.state.sampling_steps = run_steps
    callback = _step_callback(p, denoiser, run_steps, model.is_sdxl)
    extra = _sampler_extra(p, cfg)
    record_sampler_params(p, cfg, extra)
    extra_noise = p.opt("img2img_extra_noise", 0.0)
    randn_like = lambda t: image_rng.next().to(t.device, t.dtype)  # noqa: E731
    if p.scripts is not None:
        p.scripts.process_before_every_sampling(p, batch_number=p.iteration, x=x, noise=noise, c=c, uc=uc)
    if cfg.kind == "timestep":
        timesteps = sd_samplers.build_timesteps(sampler_name, total, p.opt("always_discard_next_to_last_sigma",
                                                                            False), device=device)
        t = int(timesteps[min(t_enc, len(timesteps) - 1)])
        a = ac[t].to(device)
        xi = x * a.sqrt() + noise * (1 - a).sqrt()
        if extra_noise > 0:
            p.extra_generation_params["Extra noise"] = extra_noise
            xi = xi + _extra_noise(noise, x, xi) * extra_noise * a.sqrt()
        return sd_samplers.sample(sampler_name, EpsFromDenoiser(denoiser, inner), xi, timesteps[:t_enc],
                                  callback=callback, randn_like=randn_like, seeds=seeds, alphas_cumprod=ac,
                                  eta=extra["eta"], is_img2img=True, unipc_options=_unipc_options(p))
    sigmas = sd_samplers.build_sigmas(sampler_name, scheduler, total, inner, model.is_sdxl, device=device,
                                      **_sigma_kwargs(p))
    if is_hr_pass:
        label, first = _resolved_schedule_label(sampler_name, scheduler), _resolved_schedule_label(
            p.sampler_name, p.scheduler)
        if label is not None and label != first:
            p.extra_generation_params["Hires schedule type"] = label
    sigma_sched = sigmas[total - t_enc - 1:]
    xi = x + noise * sigma_sched[0]
    if extra_noise > 0:
        p.extra_generation_params["Extra noise"] = extra_noise
        xi = xi + _extra_noise(noise, x, xi) * extra_noise
    noise_sampler = None
    brownian_seeds = seeds if p.opt("enable_batch_seeds", True) else [seeds[0]]
    if cfg.brownian_noise:  # A1111 spans the tree over the whole schedule, not just the part that runs
        from modules.sampling.noise import BrownianTreeNoiseSampler

        positive = sigmas[sigmas > 0]
        noise_sampler = BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=list(brownian_seeds))
    return sd_samplers.sample(sampler_name, denoiser, xi, sigma_sched, callback=callback, eta=extra["eta"],
                              s_churn=extra["s_churn"], s_tmin=extra["s_tmin"], s_tmax=extra["s_tmax"],
                              s_noise=extra["s_noise"], randn_like=randn_like, seeds=brownian_seeds,
                              noise_sampler=noise_sampler, alphas_cumprod=ac, is_img2img=True)


def _extra_noise(noise: torch.Tensor, x: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """The noise added by the extra-noise setting, after on_extra_noise callbacks had the chance to replace it."""
    from modules import script_callbacks

    params = script_callbacks.ExtraNoiseParams(noise, x, xi)
    script_callbacks.extra_noise_callback(params)
    return params.noise


def img2img_steps(
    denoising_strength: float, steps: int, requested: int | None = None, fix_steps: bool = False
) -> tuple[int, int]:
    """A1111's setup_img2img_steps -> (schedule length, t_enc); the run takes t_enc + 1 steps.

    With explicit steps (the hires pass always passes them) or `img2img_fix_steps`, exactly the requested steps run
    over a schedule stretched to requested / strength; otherwise strength * steps of the normal schedule run.
    """
    if fix_steps or requested is not None:
        want = requested or steps
        total = int(want / min(denoising_strength, 0.999)) if denoising_strength > 0 else 0
        return total, want - 1
    return steps, int(min(denoising_strength, 0.999) * steps)


def _img2img_steps(p: Any, requested: int | None) -> tuple[int, int]:
    return img2img_steps(float(p.denoising_strength), p.steps, requested, bool(p.opt("img2img_fix_steps", False)))


class EpsFromDenoiser:
    """Timestep samplers want eps(x_t, t); derive it from the CFG denoiser's x0 (CFG is linear, so identical)."""

    def __init__(self, denoiser: CFGDenoiser, inner: Any) -> None:
        self.denoiser, self.inner = denoiser, inner

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **_: Any) -> torch.Tensor:
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        sigma = self.inner.t_to_sigma(t.float()).to(x_t.device)
        scale = (sigma**2 + 1).sqrt().view(-1, 1, 1, 1)
        x = x_t * scale
        x0 = self.denoiser(x, sigma)
        return (x - x0) / sigma.view(-1, 1, 1, 1)


def _unipc_options(p: Any) -> dict:
    return {"variant": p.opt("uni_pc_variant", "bh1"), "skip_type": p.opt("uni_pc_skip_type", "time_uniform"),
            "order": p.opt("uni_pc_order", 3), "lower_order_final": p.opt("uni_pc_lower_order_final", True)}


def record_sampler_params(p: Any, cfg: Any, extra: dict) -> None:
    """Non-default sampler settings go into infotext as A1111 writes them."""
    if cfg.takes_eta:
        default = 0.0 if cfg.kind == "timestep" else 1.0
        if extra["eta"] != default:
            p.extra_generation_params["Eta DDIM" if cfg.kind == "timestep" else "Eta"] = extra["eta"]
    names = {"s_churn": ("Sigma churn", 0.0), "s_tmin": ("Sigma tmin", 0.0), "s_noise": ("Sigma noise", 1.0)}
    for key, (label, default) in names.items():
        if key in cfg.extra_params and extra[key] != default:
            p.extra_generation_params[label] = extra[key]
