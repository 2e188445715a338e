"""The generation loop under process_images: prompts, seeds, conds, noise, sampling, decoding, saving."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from PIL import Image

from modules import images, prompt_parser, rng, sd_samplers
from modules.denoiser import CFGDenoiser, DenoiserHooks, UNetModel
from modules.extra_networks_syntax import extract_extra_networks
from modules.scripts import PostprocessBatchListArgs, PostprocessImageArgs

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
    styles_db = getattr(p, "styles_db", None)
    if styles_db is not None and p.styles:
        prompts = [styles_db.apply_styles_to_prompt(x, p.styles) for x in prompts]
        negatives = [styles_db.apply_negative_styles_to_prompt(x, p.styles) for x in negatives]
    if p.opt("enable_prompt_comments", True):
        prompts = [prompt_parser.strip_comments(x) for x in prompts]
        negatives = [prompt_parser.strip_comments(x) for x in negatives]
    p.all_prompts, p.all_negative_prompts = prompts, negatives
    p.main_prompt, p.main_negative_prompt = prompts[0], negatives[0]


def setup_seeds(p: Any) -> None:
    n = p.n_iter * p.batch_size
    p.all_seeds, p.all_subseeds = rng.image_seeds(p.seed, p.subseed, p.subseed_strength, n)


def _time_ids(p: Any, batch: int, aesthetic: float | None, device: Any) -> torch.Tensor:
    """SDXL size/crop conditioning (A1111: original size = target size = image size, crops from settings)."""
    h, w = p.height, p.width
    crop = (p.opt("sdxl_crop_top", 0), p.opt("sdxl_crop_left", 0))
    tail = [aesthetic] if aesthetic is not None else [h, w]
    return torch.tensor([[h, w, *crop, *tail]] * batch, dtype=torch.float32, device=device)


def cached_conds(p: Any, prompts: list[str], negatives: list[str], steps: int) -> tuple[Any, Any]:
    """Conditioning for a batch, reused while the prompts and settings that shape it are unchanged."""
    from modules.conditioning import ConditioningOptions

    # Settings are read now, inside the job, so per-job overrides (override_settings) apply.
    options = ConditioningOptions.from_settings(p.opt)
    if hasattr(p.conditioner, "set_options") and p.conditioner.options != options:
        p.conditioner.set_options(options)
    key_extra = (steps, p.opt("CLIP_stop_at_last_layers", 1), p.opt("emphasis", "Original"),
                 p.opt("comma_padding_backtrack", 20), id(p.sd_model))
    ukey = (tuple(negatives), *key_extra)
    ckey = (tuple(prompts), *key_extra)
    if p.cached_uc.get("key") != ukey:
        # Marked as negative: SDXL encodes an empty negative prompt as zeros, as A1111 does.
        negative_texts = prompt_parser.SdConditioning(negatives, is_negative_prompt=True)
        p.cached_uc = {"key": ukey, "value": prompt_parser.get_learned_conditioning(
            p.conditioner, negative_texts, steps)}
    if p.cached_c.get("key") != ckey:
        p.cached_c = {"key": ckey, "value": prompt_parser.get_multicond_learned_conditioning(
            p.conditioner, prompts, steps)}
    if hasattr(p.conditioner, "pop_extra_generation_params"):
        p.extra_generation_params.update(p.conditioner.pop_extra_generation_params())  # TI hashes, Emphasis
    return p.cached_c["value"], p.cached_uc["value"]


def decode_latents(model: Any, latents: torch.Tensor, auto_upcast: bool = True) -> torch.Tensor:
    """VAE decode to [B, 3, H, W] in 0..1; retries in fp32 on NaNs (A1111's auto VAE precision)."""
    vae = model.pipe.vae
    param = next(vae.parameters())
    scaled = latents / vae.config.scaling_factor
    if getattr(vae.config, "shift_factor", None):
        scaled = scaled + vae.config.shift_factor
    with torch.no_grad():
        out = vae.decode(scaled.to(param.device, param.dtype), return_dict=False)[0]
        if torch.isnan(out).any() and auto_upcast and param.dtype != torch.float32:
            log.warning("VAE produced NaNs in %s; decoding again in float32", param.dtype)
            vae.to(torch.float32)
            out = vae.decode(scaled.to(param.device, torch.float32), return_dict=False)[0]
    return ((out.float() + 1) / 2).clamp(0, 1)


def to_pil(x: torch.Tensor) -> Image.Image:
    arr = (x.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype("uint8")
    return Image.fromarray(arr)


def sample_batch(p: Any, c: Any, uc: Any, seeds: list[int], subseeds: list[int]) -> torch.Tensor:
    """Noise for this batch, then one sampler run with the CFG denoiser; returns the final latents."""
    model = p.sd_model
    unet = model.pipe.unet
    device = next(unet.parameters()).device
    latent_ch = unet.config.out_channels
    shape = (latent_ch, p.height // 8, p.width // 8)
    cfg = sd_samplers.find_sampler_config(p.sampler_name)
    ensd = p.opt("eta_noise_seed_delta", 0) if cfg.uses_ensd else 0
    image_rng = rng.ImageRNG(shape, seeds, subseeds=subseeds, subseed_strength=p.subseed_strength,
                             seed_resize_from_h=max(p.seed_resize_from_h, 0),
                             seed_resize_from_w=max(p.seed_resize_from_w, 0),
                             source=p.opt("randn_source", "GPU"), device=device, eta_noise_seed_delta=ensd)
    noise = image_rng.first().to(device, torch.float32)
    ac = model.pipe.scheduler.alphas_cumprod.to(torch.float32)

    time_ids = uncond_time_ids = None
    if model.is_sdxl:
        if model.is_sdxl_refiner:
            time_ids = _time_ids(p, len(seeds), p.opt("sdxl_refiner_high_aesthetic_score", 6.0), device)
            uncond_time_ids = _time_ids(p, len(seeds), p.opt("sdxl_refiner_low_aesthetic_score", 2.5), device)
        else:
            time_ids = uncond_time_ids = _time_ids(p, len(seeds), None, device)
    inner = sd_samplers.create_denoiser(p.sampler_name, UNetModel(unet), ac, model.prediction_type)
    hooks = p.hooks or DenoiserHooks()
    steps = p.steps
    denoiser = CFGDenoiser(inner, c, uc, p.cfg_scale, state=p.state, hooks=hooks, total_steps=steps,
                           time_ids=time_ids, uncond_time_ids=uncond_time_ids)
    preview_every = p.opt("show_progress_every_n_steps", 10)

    def callback(d: dict) -> None:
        step = d["i"] + 1
        denoiser.step = step
        p.state.set_step(step, steps)
        p.state.current_latent = d["denoised"]
        if p.opt("live_previews_enable", True) and preview_every > 0 and step % preview_every == 0:
            from modules.sd_vae_approx import cheap_approximation

            p.state.current_image = cheap_approximation(d["denoised"][0].float(), model.is_sdxl)
            p.state.current_image_sampling_step = step
            p.state.id_live_preview += 1
        for hook in hooks.after_step:
            hook(d)

    extra = {
        "eta": p.eta if p.eta is not None else (
            p.opt("eta_ddim", 0.0) if cfg.kind == "timestep" else p.opt("eta_ancestral", 1.0)),
        "s_churn": p.s_churn if p.s_churn is not None else p.opt("s_churn", 0.0),
        "s_tmin": p.s_tmin if p.s_tmin is not None else p.opt("s_tmin", 0.0),
        "s_tmax": (p.s_tmax if p.s_tmax is not None else p.opt("s_tmax", 0.0)) or math.inf,
        "s_noise": p.s_noise if p.s_noise is not None else p.opt("s_noise", 1.0),
    }
    record_sampler_params(p, cfg, extra)
    randn_like = lambda x: image_rng.next().to(x.device, x.dtype)  # noqa: E731
    if cfg.kind == "timestep":
        timesteps = sd_samplers.build_timesteps(p.sampler_name, steps, p.opt("always_discard_next_to_last_sigma",
                                                                              False), device=device)
        eps_model = EpsFromDenoiser(denoiser, inner)
        return sd_samplers.sample(p.sampler_name, eps_model, noise, timesteps, callback=callback,
                                  randn_like=randn_like, seeds=seeds, alphas_cumprod=ac, eta=extra["eta"],
                                  unipc_options=_unipc_options(p))
    sigmas = sd_samplers.build_sigmas(
        p.sampler_name, p.scheduler, steps, inner, model.is_sdxl, sigma_min=p.opt("sigma_min", 0.0) or None,
        sigma_max=p.opt("sigma_max", 0.0) or None, rho=p.opt("rho", 0.0) or None,
        always_discard_next_to_last_sigma=p.opt("always_discard_next_to_last_sigma", False),
        beta_alpha=p.opt("beta_dist_alpha", 0.6), beta_beta=p.opt("beta_dist_beta", 0.6), device=device)
    x = noise * sigmas[0]
    if p.opt("sgm_noise_multiplier", False):
        x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    brownian_seeds = seeds if p.opt("enable_batch_seeds", True) else [seeds[0]]
    return sd_samplers.sample(p.sampler_name, denoiser, x, sigmas, callback=callback, eta=extra["eta"],
                              s_churn=extra["s_churn"], s_tmin=extra["s_tmin"], s_tmax=extra["s_tmax"],
                              s_noise=extra["s_noise"], randn_like=randn_like, seeds=brownian_seeds,
                              alphas_cumprod=ac, model_sigma_range=(float(inner.sigma_min), float(inner.sigma_max)))


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


def run_generation(p: Any) -> Any:
    from modules.processing import Processed, create_infotext, fix_seed

    state = p.state
    scripts = p.scripts
    if scripts is not None:
        scripts.before_process(p)
    fix_seed(p)
    setup_prompts(p)
    setup_seeds(p)
    if scripts is not None:
        scripts.process(p)
    state.job_count = p.n_iter
    state.sampling_steps = p.steps
    output_images: list[Image.Image] = []
    infotexts: list[str] = []
    errors: list[str] = []
    saved: list[str] = []

    def infotext(index_in_batch: int = 0, use_main_prompt: bool = False) -> str:
        return create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, None, p.iteration, index_in_batch,
                               use_main_prompt=use_main_prompt)

    for n in range(p.n_iter):
        p.iteration = n
        if state.interrupted or state.stopping_generation:
            break
        lo, hi = n * p.batch_size, (n + 1) * p.batch_size
        p.prompts, p.negative_prompts = p.all_prompts[lo:hi], p.all_negative_prompts[lo:hi]
        p.seeds, p.subseeds = p.all_seeds[lo:hi], p.all_subseeds[lo:hi]
        if scripts is not None:
            scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        stripped = [extract_extra_networks(x)[0] for x in p.prompts]
        stripped_neg = [extract_extra_networks(x)[0] for x in p.negative_prompts]
        c, uc = cached_conds(p, stripped, stripped_neg, p.steps)
        if scripts is not None:
            scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            scripts.process_before_every_sampling(p, batch_number=n)
        samples = sample_batch(p, c, uc, p.seeds, p.subseeds)
        if state.skipped:
            state.nextjob()
            continue
        decoded = decode_latents(p.sd_model, samples, p.opt("auto_vae_precision", True))
        if scripts is not None:
            scripts.postprocess_batch(p, decoded, batch_number=n)
            batch_list = PostprocessBatchListArgs(list(decoded))
            scripts.postprocess_batch_list(p, batch_list, batch_number=n)
            decoded = batch_list.images
        for i, x in enumerate(decoded):
            p.batch_index = i
            image = to_pil(x) if isinstance(x, torch.Tensor) else x
            if scripts is not None:
                pp = PostprocessImageArgs(image)
                scripts.postprocess_image(p, pp)
                image = pp.image
            text = infotext(i)
            infotexts.append(text)
            image.info["parameters"] = text
            if p.opt("samples_save", True) and not p.do_not_save_samples and p.outpath_samples:
                try:
                    path, _txt = images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i],
                                                   p.opt("samples_format", "png"), info=text, p=p, opts=p.opts)
                    saved.append(path)
                except OSError as e:  # one failed save must not lose the others
                    log.error("%s", e)
                    errors.append(str(e))
            output_images.append(image)
        state.nextjob()

    index_of_first_image = 0
    if len(output_images) > 1 and (p.opt("return_grid", True) or p.opt("grid_save", True)):
        grid = images.image_grid(output_images, p.batch_size, opts=p.opts)
        text = infotext(use_main_prompt=True)
        grid.info["parameters"] = text
        if p.opt("return_grid", True):
            output_images.insert(0, grid)
            infotexts.insert(0, text)
            index_of_first_image = 1
        if p.opt("grid_save", True) and not p.do_not_save_grid and p.outpath_grids:
            try:
                images.save_image(grid, p.outpath_grids, "grid", p.all_seeds[0], p.all_prompts[0],
                                  p.opt("grid_format", "png"), info=text, short_filename=True, p=p, grid=True,
                                  opts=p.opts)
            except OSError as e:
                log.error("%s", e)
                errors.append(str(e))
    processed = Processed(p, output_images, p.all_seeds[0] if p.all_seeds else p.seed,
                          infotexts[0] if infotexts else "", p.all_subseeds[0] if p.all_subseeds else None,
                          infotexts, comments="\n".join(errors), index_of_first_image=index_of_first_image)
    processed.saved_files = saved
    processed.errors = errors
    if scripts is not None:
        scripts.postprocess(p, processed)
    return processed
