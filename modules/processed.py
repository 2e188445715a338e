"""L3 processing: what a job returns (A1111's Processed and its js()), infotext of one image, seed fixing."""

from __future__ import annotations

import json
import random
from typing import Any

from modules import infotext as infotext_mod
from modules import sd_samplers

VERSION = "v1.10.1-diffusers"  # reported in infotext `Version`; A1111 readers key their back-compat on it


def _randint() -> int:
    return int(random.randrange(4294967294))


class Processed:
    """The result of process_images, with A1111's fields and its `js()` JSON (the API's `info`)."""

    def __init__(self, p: Any, images: list[Any], seed: int = -1, info: str = "",
                 subseed: int | None = None, infotexts: list[str] | None = None, comments: str = "",
                 index_of_first_image: int = 0) -> None:
        self.images = images
        self.prompt = p.prompt if isinstance(p.prompt, str) else (p.prompt[0] if p.prompt else "")
        self.negative_prompt = (p.negative_prompt if isinstance(p.negative_prompt, str)
                                else (p.negative_prompt[0] if p.negative_prompt else ""))
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = comments
        self.width, self.height = p.width, p.height
        self.sampler_name, self.scheduler = p.sampler_name, p.scheduler
        self.cfg_scale, self.steps, self.batch_size = p.cfg_scale, p.steps, p.batch_size
        self.restore_faces, self.styles = p.restore_faces, p.styles
        self.face_restoration_model = p.opt("face_restoration_model", None) if p.restore_faces else None
        self.sd_model_name, self.sd_model_hash = p.sd_model_name, p.sd_model_hash
        self.sd_vae_name, self.sd_vae_hash = p.sd_vae_name, p.sd_vae_hash
        self.seed_resize_from_w, self.seed_resize_from_h = p.seed_resize_from_w, p.seed_resize_from_h
        self.denoising_strength = p.denoising_strength
        self.extra_generation_params = dict(p.extra_generation_params)
        self.index_of_first_image = index_of_first_image
        self.clip_skip = p.opt("CLIP_stop_at_last_layers", 1)
        self.eta = p.eta
        self.job_timestamp = p.job_timestamp
        self.all_prompts = list(p.all_prompts)
        self.all_negative_prompts = list(p.all_negative_prompts)
        self.all_seeds = list(p.all_seeds)
        self.all_subseeds = list(p.all_subseeds)
        self.infotexts = infotexts or [info]
        self.version = VERSION
        self.is_using_inpainting_conditioning = False
        self.saved_files: list[str] = []
        self.errors: list[str] = []

    def js(self) -> str:
        return json.dumps({
            "prompt": self.prompt, "all_prompts": self.all_prompts, "negative_prompt": self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts, "seed": self.seed, "all_seeds": self.all_seeds,
            "subseed": self.subseed, "all_subseeds": self.all_subseeds, "subseed_strength": self.subseed_strength,
            "width": self.width, "height": self.height, "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale, "steps": self.steps, "batch_size": self.batch_size,
            "restore_faces": self.restore_faces,
            "face_restoration_model": self.face_restoration_model or None,
            "sd_model_name": self.sd_model_name, "sd_model_hash": self.sd_model_hash,
            "sd_vae_name": self.sd_vae_name, "sd_vae_hash": self.sd_vae_hash,
            "seed_resize_from_w": self.seed_resize_from_w, "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength, "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts,
            "styles": self.styles, "job_timestamp": self.job_timestamp, "clip_skip": self.clip_skip,
            "is_using_inpainting_conditioning": self.is_using_inpainting_conditioning, "version": self.version,
            # Not in A1111's info: what went wrong without failing the job (a LoRA that does not fit, a file that
            # could not be saved), so API clients see what the UI log shows.
            "comments": self.comments, "errors": list(self.errors),
        }, default=lambda _o: None)  # as A1111: callables in extra_generation_params (hires prompts) become null


def _fixed(seed: Any) -> int:
    return _randint() if seed is None or int(seed) == -1 else int(seed)


def fix_seed(p: Any) -> None:
    """Replace -1 seeds with random ones (A1111's fix_seed); scripts may give one seed per image as a list."""
    p.seed = [_fixed(s) for s in p.seed] if isinstance(p.seed, list) else _fixed(p.seed)
    p.subseed = [_fixed(s) for s in p.subseed] if isinstance(p.subseed, list) else _fixed(p.subseed)


def create_infotext(p: Any, all_prompts: list[str], all_seeds: list[int],
                    all_subseeds: list[int], comments: Any = None, iteration: int = 0, position_in_batch: int = 0,
                    use_main_prompt: bool = False, index: int | None = None,
                    all_negative_prompts: list[str] | None = None) -> str:
    """A1111's infotext for one image, keys in A1111's emission order."""
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    negs = all_negative_prompts if all_negative_prompts is not None else p.all_negative_prompts
    clip_skip = p.opt("CLIP_stop_at_last_layers", 1)
    cfg = sd_samplers.find_sampler_config(p.sampler_name)
    sched = sd_samplers.find_scheduler(p.scheduler)
    if sched.function is None and cfg.scheduler:  # Automatic resolved to the sampler's own schedule
        sched = sd_samplers.find_scheduler(cfg.scheduler)
    sched_label = sched.label
    uses_ensd = p.opt("eta_noise_seed_delta", 0) != 0 and cfg.uses_ensd
    # Named as in A1111: callables in extra_generation_params (e.g. Hires prompt) receive these locals.
    prompt_text = p.main_prompt if use_main_prompt else (all_prompts[index] if index < len(all_prompts) else "")
    negative_prompt = p.main_negative_prompt if use_main_prompt else (negs[index] if index < len(negs) else "")
    params: dict[str, Any] = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": sched_label,
        "CFG scale": p.cfg_scale,
        "Seed": all_seeds[index] if index < len(all_seeds) else p.seed,
        "Face restoration": p.opt("face_restoration_model", "CodeFormer") if p.restore_faces else None,
        "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if p.opt("add_model_hash_to_info", True) else None,
        "Model": p.sd_model_name if p.opt("add_model_name_to_info", True) else None,
        "VAE hash": p.sd_vae_hash if p.opt("add_vae_hash_to_info", True) else None,
        "VAE": p.sd_vae_name if p.opt("add_vae_name_to_info", True) else None,
        "Variation seed": (None if p.subseed_strength == 0 else
                           (all_subseeds[index] if index < len(all_subseeds) else p.subseed)),
        "Variation seed strength": None if p.subseed_strength == 0 else p.subseed_strength,
        "Seed resize from": (None if p.seed_resize_from_w <= 0 or p.seed_resize_from_h <= 0
                             else f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"),
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        "Clip skip": None if clip_skip <= 1 else clip_skip,
        "ENSD": p.opt("eta_noise_seed_delta", 0) if uses_ensd else None,
        "RNG": p.opt("randn_source", "GPU") if p.opt("randn_source", "GPU") != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
    }
    for key, value in p.extra_generation_params.items():
        if key == "Denoising strength":
            continue
        params[key] = value(**locals()) if callable(value) else value
    if p.opt("add_version_to_infotext", True):
        params["Version"] = VERSION
    return infotext_mod.create_infotext(prompt_text, negative_prompt, params)
