"""Hires. fix: A1111's second txt2img pass (upscale the first pass, then img2img it at the larger size)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from modules import images, refiner, sampling_run, upscalers, vae
from modules.errors import ValidationError
from modules.image_resize import upscale_to
from modules.processed import create_infotext
from modules.upscalers import IMAGE_UPSCALERS, LATENT_UPSCALE_DEFAULT, LATENT_UPSCALE_MODES

__all__ = ["IMAGE_UPSCALERS", "LATENT_UPSCALE_DEFAULT", "LATENT_UPSCALE_MODES", "hires_pass", "prepare",
           "target_size", "upscaler_names", "validate_hires"]

log = logging.getLogger(__name__)

OPT_F = 8  # image pixels per latent pixel
MAX_HIRES_SIDE = 4096
SAME_CHECKPOINT = "Use same checkpoint"
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"


def upscaler_names(runtime: Any = None) -> list[str]:
    """The Hires. fix Upscaler dropdown: latent modes first, then the image upscalers (model ones from the
    Extras registry when a runtime is given), as A1111 orders them."""
    if runtime is None:
        return upscalers.hires_upscaler_names()
    from modules import upscaler

    return upscaler.hires_upscaler_names(runtime, list(LATENT_UPSCALE_MODES))


def model_upscaler(p: Any) -> Any:
    """The job's model-upscaler call for image_resize (None without a runtime): tiled, with progress on p.state."""
    runtime = getattr(p, "runtime", None)
    if runtime is None:
        return None
    from modules import upscaler

    return lambda image, name, size: upscaler.upscale_image(runtime, name, image, size, p.state, "hr_upscaler")


def _known_upscaler(p: Any, name: str) -> bool:
    if upscalers.is_known(name):
        return True
    runtime = getattr(p, "runtime", None)
    return runtime is not None and name in upscaler_names(runtime)


@dataclass(frozen=True)
class HiresSize:
    """Where the first pass is upscaled to (A1111's hr_upscale_to_x/y) and how many latent columns/rows to crop."""

    upscale_to_x: int
    upscale_to_y: int
    truncate_x: int = 0
    truncate_y: int = 0

    @property
    def width(self) -> int:
        """Final image width after the crop."""
        return (self.upscale_to_x // OPT_F - self.truncate_x) * OPT_F

    @property
    def height(self) -> int:
        return (self.upscale_to_y // OPT_F - self.truncate_y) * OPT_F


def target_size(width: int, height: int, hr_scale: float, hr_resize_x: int, hr_resize_y: int) -> HiresSize:
    """A1111's calculate_target_resolution: scale when both resize sides are 0; one side 0 keeps the aspect
    ratio; both set scales to cover the box (aspect-fill) and crops the overhang evenly in latent space."""
    if hr_resize_x == 0 and hr_resize_y == 0:
        return HiresSize(int(width * hr_scale), int(height * hr_scale))
    if hr_resize_y == 0:
        return HiresSize(hr_resize_x, hr_resize_x * height // width)
    if hr_resize_x == 0:
        return HiresSize(hr_resize_y * width // height, hr_resize_y)
    if width / height < hr_resize_x / hr_resize_y:
        x, y = hr_resize_x, hr_resize_x * height // width
    else:
        x, y = hr_resize_y * width // height, hr_resize_y
    return HiresSize(x, y, (x - hr_resize_x) // OPT_F, (y - hr_resize_y) // OPT_F)


def _same(value: Any, marker: str) -> Any:
    return None if value is None or value == "" or value == marker else value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_hires(p: Any) -> None:
    """Check the hr_* fields of an enable_hr request before any work; each error names its field.

    Also normalises the UI's "Use same ..." choices to None (what A1111's txt2img handler does).
    """
    from modules import sd_samplers

    p.hr_checkpoint_name = _same(p.hr_checkpoint_name, SAME_CHECKPOINT)
    p.hr_sampler_name = _same(p.hr_sampler_name, SAME_SAMPLER)
    p.hr_scheduler = _same(p.hr_scheduler, SAME_SCHEDULER)
    if not _number(p.hr_scale) or not 1 <= p.hr_scale <= 4:
        raise ValidationError("hr_scale", f"upscale factor must be a number from 1 to 4, got {p.hr_scale!r}")
    for name in ("hr_resize_x", "hr_resize_y"):
        value = getattr(p, name)
        if not _whole(value) or not 0 <= value <= MAX_HIRES_SIDE:
            raise ValidationError(
                name, f"must be a whole number from 0 (use the scale) to {MAX_HIRES_SIDE}, got {value!r}"
            )
    if not _whole(p.hr_second_pass_steps) or not 0 <= p.hr_second_pass_steps <= 150:
        raise ValidationError(
            "hr_second_pass_steps", f"must be from 0 (same as steps) to 150, got {p.hr_second_pass_steps!r}"
        )
    if not _number(p.denoising_strength) or not 0 <= p.denoising_strength <= 1:
        raise ValidationError("denoising_strength", f"must be a number from 0 to 1, got {p.denoising_strength!r}")
    if p.hr_upscaler is not None and not _known_upscaler(p, p.hr_upscaler):
        available = ", ".join(upscaler_names(getattr(p, "runtime", None)))
        raise ValidationError("hr_upscaler", f"could not find upscaler named {p.hr_upscaler!r}; available: {available}")
    size = target_size(p.width, p.height, p.hr_scale, p.hr_resize_x, p.hr_resize_y)
    if not OPT_F <= size.width <= MAX_HIRES_SIDE or not OPT_F <= size.height <= MAX_HIRES_SIDE:
        raise ValidationError(
            "hr_scale" if p.hr_resize_x == p.hr_resize_y == 0 else "hr_resize_x",
            f"the hires size {size.width}x{size.height} must be from {OPT_F} to {MAX_HIRES_SIDE} pixels per side",
        )
    if p.hr_sampler_name is not None or p.hr_scheduler is not None:
        try:
            sampler, scheduler = sd_samplers.split_sampler_and_scheduler(
                p.hr_sampler_name or p.sampler_name, p.hr_scheduler or p.scheduler
            )
        except ValueError as e:
            raise ValidationError("hr_sampler_name" if p.hr_sampler_name else "hr_scheduler", str(e)) from None
        if p.hr_sampler_name is not None:
            p.hr_sampler_name = sampler
        # An old combined name ("DPM++ 2M Karras") carries its schedule; else this is the one that applies anyway.
        p.hr_scheduler = scheduler
    p.hr_checkpoint_info = None
    if p.hr_checkpoint_name is not None:
        p.hr_checkpoint_info = refiner.find_checkpoint(p, "hr_checkpoint_name", p.hr_checkpoint_name)


def _hr_prompt_text(p: Any, index: int, prompt_text: str | None = None, **_: Any) -> str | None:
    hr = p.all_hr_prompts[index] if index < len(p.all_hr_prompts) else None
    return hr if hr != prompt_text else None


def _hr_negative_text(p: Any, index: int, negative_prompt: str | None = None, **_: Any) -> str | None:
    hr = p.all_hr_negative_prompts[index] if index < len(p.all_hr_negative_prompts) else None
    return hr if hr != negative_prompt else None


def setup_hires_prompts(p: Any) -> None:
    """all_hr_prompts / all_hr_negative_prompts: empty means the first-pass prompt; styles and comments as there."""
    from modules import prompt_parser

    n = p.n_iter * p.batch_size
    if p.hr_prompt == "":
        p.hr_prompt = p.prompt
    if p.hr_negative_prompt == "":
        p.hr_negative_prompt = p.negative_prompt
    prompts = list(p.hr_prompt) if isinstance(p.hr_prompt, list) else [str(p.hr_prompt or "")] * n
    negatives = (
        list(p.hr_negative_prompt) if isinstance(p.hr_negative_prompt, list) else [str(p.hr_negative_prompt or "")] * n
    )
    if len(prompts) != n or len(negatives) != n:
        raise ValidationError("hr_prompt", f"expected {n} hires prompts, got {len(prompts)} and {len(negatives)}")
    styles_db = getattr(p, "styles_db", None)
    if styles_db is not None and p.styles:
        prompts = [styles_db.apply_styles_to_prompt(x, p.styles) for x in prompts]
        negatives = [styles_db.apply_negative_styles_to_prompt(x, p.styles) for x in negatives]
    if p.opt("enable_prompt_comments", True):
        prompts = [prompt_parser.strip_comments(x) for x in prompts]
        negatives = [prompt_parser.strip_comments(x) for x in negatives]
    p.all_hr_prompts, p.all_hr_negative_prompts = prompts, negatives


def prepare(p: Any) -> None:
    """A1111's txt2img init for hires fix: infotext keys (in A1111's order), target size, upscale mode, prompts."""
    if not getattr(p, "enable_hr", False):
        return
    extra = p.extra_generation_params
    extra["Denoising strength"] = p.denoising_strength
    if getattr(p, "hr_checkpoint_info", None) is not None:
        extra["Hires checkpoint"] = refiner.short_title(p, p.hr_checkpoint_info)
    if p.hr_sampler_name is not None and p.hr_sampler_name != p.sampler_name:
        extra["Hires sampler"] = p.hr_sampler_name
    extra["Hires prompt"] = _hr_prompt_text
    extra["Hires negative prompt"] = _hr_negative_text
    extra["Hires schedule type"] = None  # filled in when the second pass resolves its schedule
    if p.hr_scheduler is None:
        p.hr_scheduler = p.scheduler
    name = p.hr_upscaler if p.hr_upscaler is not None else LATENT_UPSCALE_DEFAULT
    p.latent_scale_mode = LATENT_UPSCALE_MODES.get(name)
    size = target_size(p.width, p.height, p.hr_scale, p.hr_resize_x, p.hr_resize_y)
    if p.hr_resize_x == 0 and p.hr_resize_y == 0:
        extra["Hires upscale"] = p.hr_scale
    else:
        extra["Hires resize"] = f"{p.hr_resize_x}x{p.hr_resize_y}"
    p.hr_size = size
    # A1111's attribute names, read by extensions.
    p.hr_upscale_to_x, p.hr_upscale_to_y = size.upscale_to_x, size.upscale_to_y
    p.truncate_x, p.truncate_y = size.truncate_x, size.truncate_y
    if p.hr_second_pass_steps:
        extra["Hires steps"] = p.hr_second_pass_steps
    if p.hr_upscaler is not None:
        extra["Hires upscaler"] = p.hr_upscaler
    setup_hires_prompts(p)


def _save_before_hires(p: Any, image: Image.Image, index: int, seeds: list[int]) -> None:
    info = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, None, p.iteration, index)
    try:
        images.save_image(
            image,
            p.outpath_samples,
            "",
            seeds[index],
            p.prompts[index],
            p.opt("samples_format", "png"),
            info=info,
            p=p,
            suffix="-before-highres-fix",
            opts=p.opts,
        )
    except OSError as e:  # the main image must still be made
        log.error("%s", e)


def _wants_intermediate(p: Any) -> bool:
    return bool(
        p.opt("samples_save", True)
        and not p.do_not_save_samples
        and p.outpath_samples
        and p.opt("save_images_before_highres_fix", False)
    )


def upscale_first_pass(p: Any, samples: torch.Tensor, decoded: torch.Tensor | None, seeds: list[int]) -> torch.Tensor:
    """The first pass's latents brought to the hires size (A1111's order: save intermediate, upscale, crop)."""
    size: HiresSize = p.hr_size
    model = p.sd_model
    if p.latent_scale_mode is not None:
        if _wants_intermediate(p):
            for i in range(samples.shape[0]):
                image = vae.to_pil(vae.decode_latents(model, samples[i : i + 1], p.opt("auto_vae_precision", True))[0])
                _save_before_hires(p, image, i, seeds)
        mode, antialias = p.latent_scale_mode
        samples = torch.nn.functional.interpolate(
            samples.float(),
            size=(size.upscale_to_y // OPT_F, size.upscale_to_x // OPT_F),
            mode=mode,
            antialias=antialias,
        )
    else:
        assert decoded is not None
        batch = []
        for i, x in enumerate(decoded):
            image = vae.to_pil(x)
            if _wants_intermediate(p):
                _save_before_hires(p, image, i, seeds)
            image = upscale_to(image, size.upscale_to_x, size.upscale_to_y, p.hr_upscaler,
                               model_upscale=model_upscaler(p))
            batch.append(vae.from_pil(image))
        samples = vae.encode_images(model, torch.stack(batch))
    ty, tx = size.truncate_y, size.truncate_x
    return samples[:, :, ty // 2 : samples.shape[2] - (ty + 1) // 2, tx // 2 : samples.shape[3] - (tx + 1) // 2]


def hires_pass(
    p: Any, samples: torch.Tensor, seeds: list[int], subseeds: list[int], c_hr: Any = None, uc_hr: Any = None
) -> torch.Tensor:
    """The second pass for one batch: first-pass latents in, hires latents out (decode with p.sd_model).

    Runs with the hires checkpoint (or the job's own model, which also ends a first-pass refiner switch), new noise
    from fresh per-image generators of the same seeds, the hires prompts, sampler and schedule. Conds given in
    c_hr / uc_hr are used as they are; by default they are computed for the pass's model.
    """
    state = p.state
    if state.interrupted:
        return samples
    models = refiner.job_models(p)
    decoded = None
    if p.latent_scale_mode is None:
        decoded = vae.decode_latents(p.sd_model, samples, p.opt("auto_vae_precision", True))
    if p.hr_checkpoint_info is not None:
        models.use(p.hr_checkpoint_info)
    else:
        models.use_main()
    p.is_hr_pass = True
    try:
        x = upscale_first_pass(p, samples, decoded, seeds)
        state.nextjob()
        steps = p.hr_second_pass_steps or p.steps
        _activate_hires_networks(p)
        if c_hr is None or uc_hr is None:
            c_hr, uc_hr = hires_conds(p, p.sd_model)
        p.hr_c, p.hr_uc = c_hr, uc_hr
        if p.scripts is not None:
            p.scripts.before_hr(p)
        return sampling_run.sample_img2img(
            p,
            x,
            c_hr,
            uc_hr,
            seeds,
            subseeds,
            steps=steps,
            sampler_name=p.hr_sampler_name or p.sampler_name,
            scheduler=p.hr_scheduler,
            width=p.hr_upscale_to_x,
            height=p.hr_upscale_to_y,
            is_hr_pass=True,
            conds_for=lambda model: hires_conds(p, model),
        )
    finally:
        p.is_hr_pass = False


def _batch_hires_prompts(p: Any) -> None:
    lo, hi = p.iteration * p.batch_size, (p.iteration + 1) * p.batch_size
    p.hr_prompts = p.all_hr_prompts[lo:hi]
    p.hr_negative_prompts = p.all_hr_negative_prompts[lo:hi]


def _activate_hires_networks(p: Any) -> None:
    """A1111 activates the extra networks of the hires prompt (by default the first pass's) for the second pass,
    on the model that runs it."""
    from modules import extra_networks
    from modules.extra_networks_syntax import parse_prompts

    _batch_hires_prompts(p)
    _stripped, network_data = parse_prompts(p.hr_prompts)
    p.hr_extra_network_data = network_data
    extra_networks.activate_for_batch(p, network_data)


def hires_conds(p: Any, model: Any) -> tuple[Any, Any]:
    """Conds of this batch's hires prompts for `model`, on the hires pass's prompt-editing timeline."""
    from modules.extra_networks_syntax import extract_extra_networks

    _batch_hires_prompts(p)
    prompts = [extract_extra_networks(x)[0] for x in p.hr_prompts]
    negatives = [extract_extra_networks(x)[0] for x in p.hr_negative_prompts]
    steps = p.hr_second_pass_steps or p.steps
    return sampling_run.conds_for_model(p, model, prompts, negatives, p.steps, hires_steps=steps, cache="hr")
