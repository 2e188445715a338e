"""L3 processing: A1111's process_images_inner, the one loop every processing kind runs through.

The loop never branches on the kind: it calls `p.init()` once and `p.sample()` per batch (txt2img draws noise and
runs hires fix there; img2img starts from its encoded init images), and `p.finish_image()` for each decoded
image (img2img pastes inpainting results back onto the original there). Everything the job changes on the model
(LoRA/hypernetwork hooks, extension patches, tiling, hires/refiner checkpoints) is undone or handed back when the
job ends; see `job_model_scope`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image

from modules import extra_networks, images, refiner, sampling_run, script_callbacks, vae
from modules.errors import WebUIError
from modules.extra_networks_syntax import extract_extra_networks, parse_prompts
from modules.model_patcher import JobPatches
from modules.processed import Processed, create_infotext, fix_seed
from modules.scripts import PostprocessBatchListArgs, PostprocessImageArgs

log = logging.getLogger(__name__)


@contextlib.contextmanager
def job_model_scope(p: Any) -> Iterator[refiner.JobModels]:
    """The model-level changes of one job, all undone when it ends (exceptions included).

    Extension weight deltas and forward hooks (`p.model_patches`) and extra-network hooks (hypernetworks) are
    removed; tiling is undone; the job's own checkpoint is current again after hires/refiner switches. LoRA weights
    deliberately stay merged (A1111 does the same) so the next job with the same LoRAs costs nothing: the next
    activation restores them bit-exactly, and `model_patcher.clean_model` gives the original weights on demand.
    """
    with refiner.JobModels(p) as models:
        p.job_models = models
        p.model_patches = JobPatches(p.sd_model)
        try:
            yield models
        finally:
            try:
                registry = getattr(p, "extra_networks", None)
                if registry is not None:
                    registry.deactivate(p)
            finally:
                p.model_patches.close()
                p.job_models = None


def run(p: Any) -> Processed:
    """The whole job for a validated p (settings overrides already active)."""
    if p.tiling is None:
        p.tiling = bool(p.opt("tiling", False))
    with job_model_scope(p) as models:
        return _run(p, models)


def _restore_faces(p: Any, image: Image.Image, index: int, errors: list[str]) -> Image.Image:
    """`restore_faces` for one image (A1111: after decoding, before the postprocess_image scripts)."""
    from modules import face_restoration

    runtime = getattr(p, "runtime", None)
    if runtime is None:
        return image
    if p.opt("save_images_before_face_restoration", False) and p.opt("samples_save", True) \
            and not p.do_not_save_samples and p.outpath_samples:
        text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, None, p.iteration, index)
        try:
            images.save_image(image, p.outpath_samples, "", p.seeds[index], p.prompts[index],
                              p.opt("samples_format", "png"), info=text, p=p, suffix="-before-face-restoration",
                              opts=p.opts)
        except OSError as e:
            _save_error(errors, e)
    try:
        return face_restoration.restore_image(runtime, image)
    except WebUIError as e:  # e.g. the model file is missing: the image is kept as it is, and the user told why
        if str(e) not in errors:
            errors.append(str(e))
        return image


def _infotext_with_steps(p: Any, infotext: Any, index: int, steps: int) -> str:
    """The infotext of an interrupted image: its Steps are those that ran."""
    requested = p.steps
    p.steps = steps
    try:
        return infotext(index)
    finally:
        p.steps = requested


def _save_error(errors: list[str], e: OSError) -> None:
    log.error("%s", e)  # one failed save must not lose the others
    errors.append(str(e))


def _run(p: Any, models: Any) -> Processed:
    state = p.state
    scripts = p.scripts
    p.hooks = script_callbacks.denoiser_hooks(p.hooks)  # A1111's cfg_* callbacks fire from the hook points
    if scripts is not None:
        scripts.setup_scripts(p)
        scripts.before_process(p)
    fix_seed(p)
    if p.restore_faces is None:
        p.restore_faces = bool(p.opt("face_restoration", False))
    sampling_run.setup_prompts(p)
    sampling_run.setup_seeds(p)
    if scripts is not None:
        before = (p.prompt, p.negative_prompt, list(p.all_prompts), list(p.all_negative_prompts))
        scripts.process(p)
        if (p.prompt, p.negative_prompt) != before[:2] and (p.all_prompts, p.all_negative_prompts) == before[2:]:
            sampling_run.setup_prompts(p)  # a script edited p.prompt in process(): honour it as extensions expect
    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    state.job_count = p.n_iter * p.passes_per_batch()
    state.sampling_steps = p.steps
    output_images: list[Image.Image] = []
    infotexts: list[str] = []
    errors: list[str] = []
    saved: list[str] = []
    extra_images: list[Image.Image] = []
    any_incomplete = False

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
        # Extra networks (LoRA...) come from the batch's first prompt, activated before its conds are built.
        stripped, network_data = parse_prompts(p.prompts)
        errors += [m for m in extra_networks.activate_for_batch(p, network_data) if m not in errors]
        stripped_neg = [extract_extra_networks(x)[0] for x in p.negative_prompts]
        c, uc = sampling_run.cached_conds(p, stripped, stripped_neg, p.steps)
        if scripts is not None:
            scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            scripts.process_before_every_sampling(p, batch_number=n)
        samples = p.sample(conditioning=c, unconditional_conditioning=uc, seeds=p.seeds, subseeds=p.subseeds,
                           subseed_strength=p.subseed_strength, prompts=p.prompts)
        if state.skipped:
            models.restore_main()
            state.nextjob()
            continue
        # Interrupted mid-run: the picture is shown, but saved only with save_incomplete_images (as A1111), and
        # then its infotext gives the steps that really ran.
        incomplete = state.interrupted
        any_incomplete = any_incomplete or incomplete
        steps_done = state.sampling_step if incomplete else p.steps
        # Decoded by the model that finished sampling (hires checkpoint, refiner), as A1111 does.
        decoded = vae.decode_latents(p.sd_model, samples, p.opt("auto_vae_precision", True))
        models.restore_main()
        if scripts is not None:
            scripts.postprocess_batch(p, decoded, batch_number=n)
            batch_list = PostprocessBatchListArgs(list(decoded))
            scripts.postprocess_batch_list(p, batch_list, batch_number=n)
            decoded = batch_list.images
        for i, x in enumerate(decoded):
            p.batch_index = i
            image = vae.to_pil(x) if isinstance(x, torch.Tensor) else x
            if p.restore_faces:
                image = _restore_faces(p, image, i, errors)
            if scripts is not None:
                pp = PostprocessImageArgs(image)
                scripts.postprocess_image(p, pp)
                image = pp.image
            image = p.finish_image(i, image)
            text = infotext(i) if not incomplete else _infotext_with_steps(p, infotext, i, steps_done)
            infotexts.append(text)
            image.info["parameters"] = text
            save = not incomplete or bool(p.opt("save_incomplete_images", False))
            if save and p.opt("samples_save", True) and not p.do_not_save_samples and p.outpath_samples:
                try:
                    path, _txt = images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i],
                                                   p.opt("samples_format", "png"), info=text, p=p, opts=p.opts)
                    saved.append(path)
                except OSError as e:
                    _save_error(errors, e)
            output_images.append(image)
            extra_images += p.extra_result_images(i, image)  # masks etc.: shown, not in the grid
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
        save_grid = not any_incomplete or bool(p.opt("save_incomplete_images", False))
        if save_grid and p.opt("grid_save", True) and not p.do_not_save_grid and p.outpath_grids:
            try:
                images.save_image(grid, p.outpath_grids, "grid", p.all_seeds[0], p.all_prompts[0],
                                  p.opt("grid_format", "png"), info=text, short_filename=True, p=p, grid=True,
                                  opts=p.opts)
            except OSError as e:
                _save_error(errors, e)
    output_images += extra_images
    processed = Processed(p, output_images, p.all_seeds[0] if p.all_seeds else p.seed,
                          infotexts[0] if infotexts else "", p.all_subseeds[0] if p.all_subseeds else None,
                          infotexts, comments="\n".join(errors), index_of_first_image=index_of_first_image)
    processed.saved_files = saved
    processed.errors = errors
    if scripts is not None:
        scripts.postprocess(p, processed)
    return processed
