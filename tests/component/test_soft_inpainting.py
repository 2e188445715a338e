"""Soft inpainting (the blurred mask as a per-pixel denoising strength) and mask grow/shrink; no visible seam."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from modules import job_runner, masking
from modules.denoiser import LatentBlend
from modules.params import Img2ImgParams


def smooth_image() -> Image.Image:
    x = np.linspace(40, 200, 64, dtype=np.float32)
    arr = np.stack([np.broadcast_to(x[None, :], (64, 64)), np.broadcast_to(x[:, None], (64, 64)),
                    np.full((64, 64), 120.0)], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def box_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


def seam_score(image: Image.Image) -> float:
    """Mean jump between neighbouring pixels across the mask's vertical edges, over the mean jump between
    neighbours inside the generated area: 1 means the border is no sharper than the generated texture."""
    arr = np.asarray(image.convert("L"), dtype=np.float32)
    dx = np.abs(np.diff(arr, axis=1))  # dx[:, j] is the jump between columns j and j + 1
    rows = slice(20, 44)
    border = np.concatenate([dx[rows, 14:18].ravel(), dx[rows, 46:50].ravel()])
    inside = dx[rows, 22:42].ravel()
    return float(border.mean() / max(inside.mean(), 1e-3))


def inpaint(runtime, **kw):
    params = Img2ImgParams(prompt="a cat", width=64, height=64, steps=6, seed=9, sampler_name="Euler",
                           init_images=[smooth_image()], mask=box_mask(), inpainting_fill=1,
                           inpaint_full_res=False, denoising_strength=1.0, do_not_save_samples=True, **kw)
    return job_runner.run_now(runtime, job_runner.JobRequest(params)).images[0]


def test_soft_inpainting_has_no_visible_seam(runtime) -> None:
    hard = seam_score(inpaint(runtime, mask_blur=0))
    soft_image = inpaint(runtime, mask_blur=6, soft_inpainting=True)
    soft = seam_score(soft_image)
    assert soft < hard  # the hard mask's edge is a step from the original to the new content
    assert soft < 1.5, soft  # across the border no sharper than the generated area itself
    # Wherever the blurred mask is 0 the picture is the original, pixel for pixel.
    untouched = np.asarray(masking.blur(box_mask(), 6, 6)) == 0
    assert untouched.sum() > 0
    assert np.array_equal(np.asarray(soft_image)[untouched], np.asarray(smooth_image())[untouched])


def test_soft_mask_is_a_per_pixel_denoising_strength() -> None:
    nmask = torch.tensor([[[[0.0, 0.3, 0.7, 1.0]]]])
    blend = LatentBlend(init_latent=torch.zeros(1, 1, 1, 4), mask=1 - nmask, nmask=nmask, soft=True)
    kept = [blend.keep_mask(progress)[0, 0, 0].tolist() for progress in (0.0, 0.5, 0.8, 1.0)]
    assert kept == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    hard = LatentBlend(init_latent=torch.zeros(1, 1, 1, 4), mask=1 - nmask, nmask=nmask)
    assert torch.equal(hard.keep_mask(0.5), 1 - nmask)


def test_mask_grow_and_shrink() -> None:
    mask = box_mask()
    assert masking.grow(mask, 4).getbbox() == (12, 12, 52, 52)
    assert masking.grow(mask, -4).getbbox() == (20, 20, 44, 44)
    assert masking.grow(mask, 0) is mask


def test_color_correction_moves_colours_towards_the_input(runtime) -> None:
    from modules import color_correction

    warm = Image.new("RGB", (64, 64), (200, 120, 60))
    cold = Image.new("RGB", (64, 64), (60, 120, 200))
    fixed = color_correction.apply(color_correction.to_lab(warm), cold)
    r, _g, b = np.asarray(fixed, dtype=np.int16).reshape(-1, 3).mean(axis=0)
    assert r > b  # now warm like the reference
    runtime.opts.set("img2img_color_correction", True)
    params = Img2ImgParams(prompt="a cat", width=64, height=64, steps=2, seed=1, sampler_name="Euler",
                           init_images=[warm], denoising_strength=0.5)
    out = job_runner.run_now(runtime, job_runner.JobRequest(params))
    assert "Color correction: True" in out.infotexts[0]
