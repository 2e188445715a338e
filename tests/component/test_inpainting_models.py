"""9-channel inpainting checkpoints (SD1, SD2, SDXL): txt2img works (grey, fully masked conditioning, as A1111),
and inpainting feeds the mask and masked-image latent while every unmasked pixel stays the input's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules import image_conditioning, job_runner
from modules.params import Img2ImgParams, Txt2ImgParams
from tests.fixtures.tiny_models import write_tiny_checkpoint


@pytest.fixture(params=["sd1-inpainting", "sd2-inpainting", "sdxl-inpainting"])
def inpaint_runtime(request, make_runtime, data_dir: Path):
    write_tiny_checkpoint(request.param, data_dir / "models" / "Stable-diffusion", "inpaint", seed=3)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("inpaint.safetensors")
    return rt


def test_txt2img_on_an_inpainting_checkpoint(inpaint_runtime) -> None:
    model = inpaint_runtime.models.current
    assert image_conditioning.kind(model) == "inpainting"
    cond = image_conditioning.for_txt2img(model, 2, 64, 64)
    assert cond.shape == (2, 5, 8, 8) and torch.all(cond[:, 0] == 1)  # all masked
    result = job_runner.run_now(inpaint_runtime, job_runner.JobRequest(Txt2ImgParams(
        prompt="a cat", width=64, height=64, steps=2, seed=1, sampler_name="Euler")))
    assert result.images[0].size == (64, 64)


def test_inpainting_model_keeps_unmasked_pixels_and_sees_the_mask(inpaint_runtime) -> None:
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 40, 40))
    seen = []
    unet = inpaint_runtime.models.current.pipe.unet
    handle = unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        out = job_runner.run_now(inpaint_runtime, job_runner.JobRequest(Img2ImgParams(
            prompt="a cat", width=64, height=64, steps=3, seed=2, sampler_name="Euler", init_images=[init],
            mask=mask, mask_blur=0, inpainting_fill=1, inpaint_full_res=False, denoising_strength=1.0)))
    finally:
        handle.remove()
    assert seen and set(seen) == {9}  # latents + mask + masked-image latent
    result = np.asarray(out.images[0].convert("RGB"))
    outside = np.asarray(mask) == 0
    assert np.array_equal(result[outside], np.asarray(init)[outside])
