"""instruct-pix2pix (8-channel) checkpoints load from a single file and use the image CFG scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from modules import image_conditioning, job_runner
from modules.params import Img2ImgParams, Txt2ImgParams
from tests.fixtures.tiny_models import write_tiny_checkpoint


def test_pix2pix_checkpoint_loads_and_edits_with_image_cfg(make_runtime, data_dir: Path) -> None:
    write_tiny_checkpoint("sd1-instruct-pix2pix", data_dir / "models" / "Stable-diffusion", "ip2p", seed=4)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("ip2p.safetensors")
    model = rt.models.current
    assert image_conditioning.kind(model) == "instruct-pix2pix"
    assert "instruct-pix2pix" in rt.model_status
    init = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB")
    calls = []
    handle = model.pipe.unet.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))

    def edit(scale: float):
        return job_runner.run_now(rt, job_runner.JobRequest(Img2ImgParams(
            prompt="make it blue", width=64, height=64, steps=2, seed=3, sampler_name="Euler", init_images=[init],
            image_cfg_scale=scale, denoising_strength=1.0)))

    try:
        low, high = edit(1.0), edit(2.0)
    finally:
        handle.remove()
    assert calls and all(shape[1] == 8 for shape in calls)
    assert calls[0][0] == 3  # cond with the image, uncond with it, uncond without it
    assert "Image CFG scale: 2.0" in high.infotexts[0]
    assert not np.array_equal(np.asarray(low.images[0]), np.asarray(high.images[0]))
    txt = job_runner.run_now(rt, job_runner.JobRequest(Txt2ImgParams(prompt="x", width=64, height=64, steps=1)))
    assert txt.images[0].size == (64, 64)


def test_image_cfg_slider_follows_the_loaded_checkpoint(make_runtime, data_dir: Path) -> None:
    import gradio as gr

    from modules.ui_img2img import create_img2img_tab

    ckpts = data_dir / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1-instruct-pix2pix", ckpts, "ip2p", seed=4)
    write_tiny_checkpoint("sd1", ckpts, "plain", seed=5)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("plain.safetensors")
    with gr.Blocks() as demo:
        c = create_img2img_tab(rt)
    assert c["image_cfg_scale"].visible is False
    tick = next(f for f in demo.fns.values() if c["image_cfg_scale"] in f.outputs and "tick" in
                [t[1] for t in f.targets])
    update, seen = tick.fn(None)
    assert update["visible"] is False and seen is False
    rt.switch_checkpoint("ip2p.safetensors")  # as quicksettings or the API would
    update, seen = tick.fn(seen)
    assert update["visible"] is True and seen is True
    assert isinstance(tick.fn(seen)[0], type(gr.skip()))  # no update while nothing changed
