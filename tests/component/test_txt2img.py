"""txt2img through the real runtime on tiny models: parity with diffusers, infotext round trip, hooks, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules import images, job_runner, txt2img
from modules.errors import ValidationError, WebUIError
from modules.infotext import parse_generation_parameters
from modules.params import Txt2ImgParams
from modules.scripts import Script
from modules.state import JobState
from tests.fixtures.tiny_models import write_tiny_checkpoint


def run(rt, **kw):
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    kw.setdefault("steps", 4)
    params = Txt2ImgParams(**kw)
    return job_runner.run_now(rt, job_runner.JobRequest(params))


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


def test_matches_diffusers_pipeline_euler_karras_cpu_rng(runtime) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    runtime.opts.set("randn_source", "CPU")
    ours = run(runtime, prompt="a photo of a cat", negative_prompt="", sampler_name="Euler", scheduler="Karras",
               steps=8, cfg_scale=7.0, seed=1)
    pipe = runtime.models.current.pipe
    # linspace spacing makes diffusers start from sigma_max like k-diffusion (its default "leading" scales by
    # sqrt(sigma_max^2 + 1)); the sigmas themselves are the same Karras schedule from the model's alphas.
    sched = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                               timestep_spacing="linspace")
    ref = StableDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                  unet=pipe.unet, scheduler=sched, safety_checker=None, feature_extractor=None,
                                  requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    out = ref("a photo of a cat", num_inference_steps=8, guidance_scale=7.0, height=64, width=64,
              generator=torch.Generator("cpu").manual_seed(1), output_type="pil").images[0]
    diff = np.abs(pixels(ours.images[0]) - pixels(out))
    assert diff.max() <= 1, diff.max()  # rounding of the last bit only
    assert diff.mean() < 0.01


def test_infotext_regenerates_identical_image(runtime) -> None:
    first = run(runtime, prompt="a (red:1.2) [cat:dog:2] AND a hat :0.5", negative_prompt="blurry",
                sampler_name="DPM++ 2M", scheduler="Karras", steps=5, seed=42, cfg_scale=6.5, save_images=True)
    saved = Path(first.saved_files[0])
    text = Image.open(saved).info["parameters"]
    res = parse_generation_parameters(text)
    again = run(runtime, prompt=res["Prompt"], negative_prompt=res["Negative prompt"], sampler_name=res["Sampler"],
                scheduler=res["Schedule type"], steps=int(res["Steps"]), seed=int(res["Seed"]),
                cfg_scale=float(res["CFG scale"]), width=int(res["Size-1"]), height=int(res["Size-2"]))
    assert np.array_equal(pixels(Image.open(saved)), pixels(again.images[0]))
    assert again.infotexts[0] == text
    assert "Model hash: " in text and "Model: tiny" in text and "Version: " in text


def test_batch_seeds_and_grid(runtime, data_dir: Path) -> None:
    r = run(runtime, prompt="x", seed=10, batch_size=2, n_iter=2, save_images=True)
    assert r.all_seeds == [10, 11, 12, 13] and r.index_of_first_image == 1
    assert len(r.images) == 5 and r.images[0].size == (128, 128)
    assert [f"Seed: {s}," in t for s, t in zip([10, 11, 12, 13], r.infotexts[1:], strict=True)] == [True] * 4
    # an image depends on its seed, not on the batch it was made in (batched float maths may differ in the
    # last bit, so compare with a one-level tolerance)
    single = run(runtime, prompt="x", seed=11)
    assert np.abs(pixels(single.images[0]) - pixels(r.images[2])).max() <= 2
    assert len(list((data_dir / "outputs" / "txt2img-grids").rglob("*.png"))) == 1


def test_variation_seed_changes_image(runtime) -> None:
    base = run(runtime, prompt="x", seed=3)
    var = run(runtime, prompt="x", seed=3, subseed=99, subseed_strength=0.5)
    assert not np.array_equal(pixels(base.images[0]), pixels(var.images[0]))
    assert "Variation seed: 99, Variation seed strength: 0.5" in var.infotexts[0]


@pytest.mark.parametrize("sampler", [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler",
    "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "PLMS", "UniPC", "LCM"])
def test_every_sampler_generates(runtime, sampler: str) -> None:
    r = run(runtime, prompt="a cat", sampler_name=sampler, steps=3, seed=1)
    arr = pixels(r.images[0])
    assert arr.shape == (64, 64, 3) and np.isfinite(arr).all()
    assert f"Sampler: {sampler}," in r.infotexts[0]


def test_missing_sampler_is_named_not_substituted(runtime) -> None:
    with pytest.raises(WebUIError, match="DDIM CFG\\+\\+.*not implemented"):
        run(runtime, prompt="x", sampler_name="DDIM CFG++")


@pytest.mark.parametrize(("variant", "name"), [("sdxl-base", "xl"), ("sd2-768-v", "v2")])
def test_sdxl_and_sd2_v_paths(make_runtime, data_dir: Path, variant: str, name: str) -> None:
    write_tiny_checkpoint(variant, data_dir / "models" / "Stable-diffusion", name)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint(f"{name}.safetensors")
    assert rt.models.current.variant == variant
    r = run(rt, prompt="a cat", negative_prompt="dog", seed=1)
    assert r.images[0].size == (64, 64)


@pytest.mark.parametrize(("field", "value"), [
    ("width", 513), ("height", 32), ("steps", 0), ("steps", 100000), ("cfg_scale", float("nan")),
    ("seed", 2**40), ("batch_size", 10**4), ("n_iter", 10**4)])
def test_bad_params_rejected_by_schema(field: str, value) -> None:
    from pydantic import ValidationError as PydanticError

    with pytest.raises(PydanticError) as e:
        Txt2ImgParams(**{field: value})
    assert field in str(e.value)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("width", 513, "multiple of 8"), ("steps", 0, "steps"), ("cfg_scale", float("nan"), "cfg_scale"),
    ("seed", 2**40, "seed"), ("batch_size", 10**4, "batch_size"), ("sampler_name", "Nope", "Nope")])
def test_processing_validates_before_work(runtime, data_dir: Path, field: str, value, words: str) -> None:
    state = JobState()
    p = txt2img.build_processing(runtime, Txt2ImgParams(width=64, height=64, steps=2, save_images=True), state,
                                 is_api=True) if field != "sampler_name" else None
    if p is None:
        with pytest.raises(ValidationError, match=words):
            txt2img.build_processing(runtime, Txt2ImgParams(sampler_name=value), state)
        return
    setattr(p, field, value)
    from modules.processing import process_images

    with pytest.raises(ValidationError, match=words) as e:
        process_images(p)
    assert e.value.field in (field, "n_iter")
    assert not list((data_dir / "outputs").rglob("*.png"))


class RecordingScript(Script):
    alwayson = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    def title(self) -> str:
        return "recorder"

    def before_process(self, p, *a):
        self.calls.append("before_process")

    def process(self, p, *a):
        self.calls.append("process")
        p.all_prompts = [x + ", wearing a hat" for x in p.all_prompts]

    def before_process_batch(self, p, *a, **kw):
        self.calls.append(f"before_process_batch:{kw['batch_number']}")

    def process_batch(self, p, *a, **kw):
        self.calls.append("process_batch")

    def postprocess_batch(self, p, *a, **kw):
        self.calls.append("postprocess_batch")

    def postprocess_image(self, p, pp, *a):
        self.calls.append("postprocess_image")

    def postprocess(self, p, processed, *a):
        self.calls.append("postprocess")


class BrokenScript(Script):
    alwayson = True

    def title(self) -> str:
        return "broken"

    def process(self, p, *a):
        raise RuntimeError("bug in an extension")


def test_script_hooks_order_and_prompt_edit(runtime) -> None:
    plain = run(runtime, prompt="a cat", seed=5)
    rec = RecordingScript()
    runtime.scripts_txt2img.scripts[:] = [BrokenScript(), rec]
    edited = run(runtime, prompt="a cat", seed=5, n_iter=2)
    assert rec.calls == ["before_process", "process", "before_process_batch:0", "process_batch", "postprocess_batch",
                         "postprocess_image", "before_process_batch:1", "process_batch", "postprocess_batch",
                         "postprocess_image", "postprocess"]
    assert "a cat, wearing a hat" in edited.infotexts[1]
    assert not np.array_equal(pixels(plain.images[0]), pixels(edited.images[1]))
    assert any("bug in an extension" in e for e in runtime.scripts_txt2img.errors)


def test_failed_save_loses_no_other_image(runtime, data_dir: Path, monkeypatch) -> None:
    real = images.save_image
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise images.ImageWriteError(args[1], "disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "save_image", flaky)
    r = run(runtime, prompt="x", seed=1, batch_size=3, save_images=True)
    assert len(r.saved_files) == 2 and all(Path(f).exists() for f in r.saved_files)
    assert r.errors and "disk full" in r.errors[0]
    assert len(r.images) == 4  # grid + 3, the unsaved one still returned


def test_interrupt_stops_one_job_not_the_next(runtime) -> None:
    def on_step(d):
        if d["i"] == 1:
            raise_interrupt["job"].state.interrupt()

    raise_interrupt: dict = {}
    from modules.denoiser import DenoiserHooks

    hooks = DenoiserHooks(after_step=[on_step])
    params = Txt2ImgParams(prompt="x", width=64, height=64, steps=10, n_iter=3, seed=1)

    def job_fn(state):
        p = txt2img.build_processing(runtime, params, state)
        p.hooks = hooks
        from modules.processing import process_images

        return process_images(p)

    job = runtime.jobs.submit("interrupted", job_fn)
    raise_interrupt["job"] = job
    r = runtime.jobs.wait(job, 120)
    assert len(r.images) == 1  # stopped during the first of three images
    after = run(runtime, prompt="x", seed=1, n_iter=2)
    assert len(after.images) == 3


def test_embedding_from_embeddings_folder_used_and_hashed(runtime, data_dir: Path) -> None:
    import hashlib

    width = runtime.models.current.pipe.text_encoder.config.hidden_size
    emb = data_dir / "embeddings" / "sub" / "myemb.pt"
    emb.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_param": {"*": torch.randn(2, width, generator=torch.Generator().manual_seed(0))},
                "name": "myemb", "step": 100}, emb)
    with_emb = run(runtime, prompt="a photo of myemb", seed=1)
    without = run(runtime, prompt="a photo of", seed=1)
    short = hashlib.sha256(emb.read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "myemb: {short}"' in with_emb.infotexts[0]
    assert not np.array_equal(pixels(with_emb.images[0]), pixels(without.images[0]))


def test_empty_sdxl_negative_and_clip_skip_override(make_runtime, data_dir: Path) -> None:
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "t1")
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("t1.safetensors")
    base = run(rt, prompt="a cat", seed=2)
    skip2 = run(rt, prompt="a cat", seed=2, override_settings={"CLIP_stop_at_last_layers": 2})
    assert "Clip skip: 2" in skip2.infotexts[0] and "Clip skip" not in base.infotexts[0]
    assert not np.array_equal(pixels(base.images[0]), pixels(skip2.images[0]))
    assert rt.opts.CLIP_stop_at_last_layers == 1  # the override was for that job only


def test_styles_applied_and_recorded(make_runtime, data_dir: Path) -> None:
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "t1")
    (data_dir / "styles.csv").write_text('name,prompt,negative_prompt\nGrain,"{prompt}, film grain",lowres\n',
                                         encoding="utf-8")
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("t1.safetensors")
    r = run(rt, prompt="a cat # a comment", negative_prompt="", styles=["Grain"], seed=1)
    assert r.infotexts[0].startswith("a cat, film grain\nNegative prompt: lowres\n")
    assert r.all_prompts == ["a cat, film grain"]


def test_live_preview_uses_taesd_when_present_else_cheap(runtime, data_dir: Path) -> None:
    from diffusers import AutoencoderTiny

    runtime.opts.set("show_progress_every_n_steps", 1)
    previews: list = []

    def run_capturing() -> None:
        from modules.denoiser import DenoiserHooks

        params = Txt2ImgParams(prompt="x", width=64, height=64, steps=2, seed=1)

        def job(state):
            p = txt2img.build_processing(runtime, params, state)
            p.hooks = DenoiserHooks(after_step=[lambda d: previews.append(state.current_image)])
            from modules.processing import process_images

            return process_images(p)

        runtime.jobs.run("preview", job)

    run_capturing()
    assert previews[-1].size == (8, 8)  # cheap approximation: one pixel per latent cell
    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1),
                    num_decoder_blocks=(1, 1)).save_pretrained(data_dir / "models" / "VAE-approx" / "taesd")
    previews.clear()
    run_capturing()
    assert previews[-1].size == (16, 16)  # the TAESD decoder upsampled the latent
