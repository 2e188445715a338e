"""The one job function: the UI handler and the API route give the same image; jobs wait for the start-up load;
per-job checkpoints and settings; the img2img kind runs through the same loop."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules import job_runner
from modules.errors import ValidationError
from modules.params import Img2ImgParams, Txt2ImgParams
from tests.fixtures.tiny_models import write_tiny_checkpoint

REQUEST = {"prompt": "a red (cat:1.2) [on:in:2] a box", "negative_prompt": "blurry", "seed": 123, "steps": 3,
           "width": 64, "height": 64, "sampler_name": "Euler a", "scheduler": "Karras", "cfg_scale": 6.0}


def _ui_generate(runtime, values: dict):
    """Run the txt2img tab's own Generate handler (what the browser calls) with these control values."""
    import gradio as gr

    from modules.ui_txt2img import create_txt2img_tab
    from tests.fixtures.ui_handlers import run_click

    with gr.Blocks() as demo:
        tab = create_txt2img_tab(runtime)
    return run_click(demo, tab["generate"], tab, values)


def test_ui_and_api_give_the_same_image_and_infotext(runtime) -> None:
    from fastapi.testclient import TestClient

    from webui import create_app

    runtime.cmd_opts.api = True
    with TestClient(create_app(runtime)) as client:
        r = client.post("/sdapi/v1/txt2img", json=REQUEST)
    assert r.status_code == 200, r.text
    api_image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    api_info = json.loads(r.json()["info"])["infotexts"][0]
    out = _ui_generate(runtime, {k: v for k, v in REQUEST.items()})
    gallery, _js, _task, _progress, log_html, _html, ui_infotext = out
    assert "error" not in log_html, log_html
    ui_image = gallery[0] if isinstance(gallery[0], Image.Image) else Image.open(gallery[0])
    assert ui_infotext == api_info
    assert np.array_equal(np.asarray(ui_image.convert("RGB")), np.asarray(api_image.convert("RGB")))


def test_generation_waits_for_the_start_up_load(make_runtime, data_dir: Path) -> None:
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "tiny", seed=7)
    rt = make_runtime("--no-half")
    assert rt.models.current is None
    load = rt.start_initial_load()
    job = job_runner.submit(rt, job_runner.JobRequest(Txt2ImgParams(**{**REQUEST, "steps": 1})))
    result = rt.jobs.wait(job)
    assert len(result.images) == 1
    assert load.status == "done" and load.finished <= job.started


def test_per_job_checkpoint_is_restored_and_settings_saved_once(runtime, data_dir: Path, monkeypatch) -> None:
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "other", seed=9)
    runtime.refresh_checkpoints()
    before = runtime.current_title()
    saves = []
    real_save = runtime.save_settings
    monkeypatch.setattr(runtime, "save_settings", lambda: (saves.append(1), real_save()))
    params = Txt2ImgParams(**{**REQUEST, "steps": 1}, override_settings={"sd_model_checkpoint": "other",
                                                                            "CLIP_stop_at_last_layers": 2})
    result = job_runner.run_now(runtime, job_runner.JobRequest(params))
    assert "Model: other" in result.infotexts[0] and "Clip skip: 2" in result.infotexts[0]
    assert runtime.current_title() == before and runtime.opts.CLIP_stop_at_last_layers == 1
    assert saves == []  # restored afterwards: nothing written
    keep = params.model_copy(update={"override_settings_restore_afterwards": False})
    job_runner.run_now(runtime, job_runner.JobRequest(keep))
    assert runtime.current_title().startswith("other") and runtime.opts.CLIP_stop_at_last_layers == 2
    assert saves == [1]  # kept: the checkpoint and the setting written in one save


def test_bad_request_is_refused_before_queueing(runtime) -> None:
    queued = len(runtime.jobs.pending())
    with pytest.raises(ValidationError, match="styles"):
        job_runner.submit(runtime, job_runner.JobRequest(Txt2ImgParams(styles=["no such style"])))
    with pytest.raises(ValidationError, match="override_settings.nope"):
        job_runner.submit(runtime, job_runner.JobRequest(Txt2ImgParams(override_settings={"nope": 1})))
    assert len(runtime.jobs.pending()) == queued


def _gradient(w: int = 64, h: int = 64) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          np.full((h, w, 1), 128, np.float32)], axis=2)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def test_img2img_kind_runs_through_the_same_loop_and_keeps_unmasked_pixels(runtime) -> None:
    init = _gradient()
    base = dict(prompt="a cat", seed=5, steps=4, width=64, height=64, sampler_name="Euler", init_images=[init],
                denoising_strength=0.6, do_not_save_samples=True, do_not_save_grid=True)
    plain = job_runner.run_now(runtime, job_runner.JobRequest(Img2ImgParams(**base)))
    assert plain.images[0].size == (64, 64) and "Denoising strength: 0.6" in plain.infotexts[0]
    again = job_runner.run_now(runtime, job_runner.JobRequest(Img2ImgParams(**base)))
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))  # seeded, deterministic
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for full_res in (False, True):
        out = job_runner.run_now(runtime, job_runner.JobRequest(Img2ImgParams(
            **base, mask=mask, mask_blur=0, inpainting_fill=1, inpaint_full_res=full_res)))
        result = np.asarray(out.images[0].convert("RGB"))
        outside = np.asarray(mask) == 0
        assert np.array_equal(result[outside], np.asarray(init)[outside])  # every unmasked pixel is the input's
        assert not np.array_equal(result[~outside], np.asarray(init)[~outside])
        assert "Mask blur: 0" in out.infotexts[0] and "Masked content: original" in out.infotexts[0]


def test_img2img_refuses_bad_input(runtime) -> None:
    with pytest.raises(Exception, match="init_images"):
        job_runner.run_now(runtime, job_runner.JobRequest(Img2ImgParams(prompt="x", width=64, height=64)))
    black = Image.new("L", (64, 64), 0)
    with pytest.raises(Exception, match="mask"):
        job_runner.run_now(runtime, job_runner.JobRequest(Img2ImgParams(
            init_images=[_gradient()], mask=black, width=64, height=64, steps=1)))


def test_img2img_equals_diffusers_img2img_on_the_same_latents(runtime) -> None:
    """The math of item 3 against an independent implementation: diffusers' img2img pipeline, given our
    (posterior-mean) init latents. A1111 runs t_enc + 1 = int(0.6 * 10) + 1 = 7 of the 10 steps, which is what
    diffusers runs at strength 0.7 (its int(10 * 0.7) = 7 last timesteps)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline

    from modules import vae

    runtime.opts.set("randn_source", "CPU")
    init = _gradient()
    params = Img2ImgParams(prompt="a photo of a cat", negative_prompt="", sampler_name="Euler", scheduler="Karras",
                           steps=10, cfg_scale=7.0, seed=1, width=64, height=64, init_images=[init],
                           denoising_strength=0.6, do_not_save_samples=True)
    ours = job_runner.run_now(runtime, job_runner.JobRequest(params))
    pipe = runtime.models.current.pipe
    sched = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                               timestep_spacing="linspace")
    ref = StableDiffusionImg2ImgPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                         unet=pipe.unet, scheduler=sched, safety_checker=None,
                                         feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    latents = vae.encode_images(runtime.models.current, vae.images_to_tensor([init]))
    out = ref("a photo of a cat", image=latents, strength=0.7, num_inference_steps=10, guidance_scale=7.0,
              generator=torch.Generator("cpu").manual_seed(1), output_type="pil").images[0]
    diff = np.abs(np.asarray(ours.images[0], dtype=np.int16) - np.asarray(out, dtype=np.int16))
    assert diff.max() <= 1, diff.max()



class _InterruptAtStep(__import__("modules.scripts", fromlist=["Script"]).Script):
    """Interrupts its job after a given sampling step, as the Interrupt button would."""

    alwayson = True

    def __init__(self, step: int) -> None:
        self.step = step

    def title(self) -> str:
        return "interrupt"

    def show(self, is_img2img: bool):
        from modules import scripts

        return scripts.AlwaysVisible

    def process(self, p, *args) -> None:
        p.hooks.after_step.append(lambda d: p.state.interrupt() if d["i"] + 1 >= self.step else None)


def test_interrupted_images_are_not_saved_unless_asked_and_say_the_steps_run(runtime, data_dir: Path) -> None:
    runtime.scripts_txt2img.add(_InterruptAtStep(2))
    params = Txt2ImgParams(prompt="a cat", width=64, height=64, steps=6, seed=1, sampler_name="Euler")
    out_dir = data_dir / "outputs"
    before = sorted(out_dir.rglob("*.png")) if out_dir.exists() else []
    result = job_runner.run_now(runtime, job_runner.JobRequest(params))
    assert len(result.images) == 1  # shown
    assert (sorted(out_dir.rglob("*.png")) if out_dir.exists() else []) == before  # not saved
    runtime.opts.set("save_incomplete_images", True)
    result = job_runner.run_now(runtime, job_runner.JobRequest(params))
    saved = [Path(f) for f in result.saved_files]
    assert len(saved) == 1 and "Steps: 2," in Image.open(saved[0]).info["parameters"]
