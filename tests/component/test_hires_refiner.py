"""Hires fix, the refiner switch and tiling through the real runtime on tiny models, against A1111's rules."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules import hires, processing, sampling_run, sd_samplers, tiling, txt2img
from modules.denoiser import DenoiserHooks
from modules.errors import ValidationError
from modules.infotext import parse_generation_parameters
from modules.initialize import create_runtime
from modules.params import Txt2ImgParams
from modules.state import JobState
from tests.fixtures.tiny_models import write_tiny_checkpoint


def _runtime(root: Path, models: dict[str, str], main: str) -> object:
    data = root / "data"
    for name, variant in models.items():
        write_tiny_checkpoint(variant, data / "models" / "Stable-diffusion", name, seed=len(name))
    rt = create_runtime(["--data-dir", str(data), "--no-half"], environ={})
    rt.opts.set("sd_checkpoints_limit", 2)
    rt.switch_checkpoint(f"{main}.safetensors")
    return rt


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return _runtime(tmp_path_factory.mktemp("sd1"), {"a": "sd1", "bb": "sd1"}, "a")


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    return _runtime(tmp_path_factory.mktemp("xl"), {"base": "sdxl-base", "refiner": "sdxl-refiner"}, "base")


@pytest.fixture(autouse=True)
def _main_model_current(request):
    """Each test starts, and must end, with the runtime's own model current."""
    rt = (
        request.getfixturevalue("sd1")
        if "sd1" in request.fixturenames
        else (request.getfixturevalue("xl") if "xl" in request.fixturenames else None)
    )
    before = rt.models.current if rt is not None else None
    yield
    if rt is not None:
        assert rt.models.current is before, "the job left another model current"


class UNetCalls:
    """Counts UNet evaluations per model and pass via the denoiser's before-UNet hook."""

    def __init__(self, rt) -> None:
        self.rt = rt
        self.calls: list[tuple[str, bool, float]] = []  # (model name, is hires pass, max sigma)
        self.p = None

    def hook(self, params) -> None:
        unet = params.denoiser.inner.inner_model.unet
        names = {id(m.pipe.unet): n for n, m in self.models().items()}
        self.calls.append((names.get(id(unet), "?"), self.p.is_hr_pass, float(params.sigma.max())))

    def models(self) -> dict[str, object]:
        out = {}
        for filename in self.rt.models.loaded_filenames():
            out[Path(filename).stem] = self.rt.models.get_cached(filename)
        return out

    def count(self, hr: bool) -> Counter:
        return Counter(name for name, is_hr, _ in self.calls if is_hr == hr)


def build(rt, **kw) -> processing.StableDiffusionProcessingTxt2Img:
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    kw.setdefault("steps", 4)
    kw.setdefault("seed", 1)
    kw.setdefault("sampler_name", "Euler")
    return txt2img.build_processing(rt, Txt2ImgParams(**kw), JobState())


def run(rt, counter: UNetCalls | None = None, **kw) -> processing.Processed:
    p = build(rt, **kw)
    if counter is not None:
        counter.p = p
        p.hooks = DenoiserHooks(before_unet=[counter.hook])
    return processing.process_images(p)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


# --- target size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "hr", "expected"),
    [
        ((512, 768), (2.0, 0, 0), (1024, 1536, 0, 0)),  # scale
        ((512, 768), (1.5, 0, 0), (768, 1152, 0, 0)),
        ((512, 768), (2.0, 1024, 0), (1024, 1536, 0, 0)),  # width given: height keeps the aspect
        ((512, 768), (2.0, 0, 1000), (666, 1000, 0, 0)),  # height given: width keeps the aspect (floor)
        ((512, 768), (2.0, 1024, 1024), (1024, 1536, 0, 64)),  # both: cover the box, crop 64 latent rows
        ((768, 512), (2.0, 1024, 1024), (1536, 1024, 64, 0)),
        ((512, 512), (2.0, 800, 600), (800, 800, 0, 25)),
    ],
)
def test_target_size_rules(size, hr, expected) -> None:
    got = hires.target_size(*size, *hr)
    assert (got.upscale_to_x, got.upscale_to_y, got.truncate_x, got.truncate_y) == expected
    if hr[1] and hr[2]:
        assert (got.width, got.height) == (hr[1], hr[2])


@pytest.mark.parametrize(
    ("requested", "strength", "expected"), [(10, 0.5, (20, 9)), (10, 1.0, (10, 9)), (7, 0.3, (23, 6)), (4, 0.0, (0, 3))]
)
def test_hires_steps_follow_a1111_fixed_step_rule(requested, strength, expected) -> None:
    assert sampling_run.img2img_steps(strength, 99, requested) == expected
    # without explicit steps (img2img tab, img2img_fix_steps off) strength scales the normal schedule
    assert sampling_run.img2img_steps(0.5, 20) == (20, 10)
    assert sampling_run.img2img_steps(0.5, 20, fix_steps=True) == (40, 19)


# --- upscalers, sizes, infotext ---------------------------------------------------------------------------


@pytest.mark.parametrize("upscaler", [*hires.LATENT_UPSCALE_MODES, "Lanczos", "Nearest", "None"])
def test_each_upscaler_gives_hires_size_and_a1111_infotext(sd1, upscaler: str) -> None:
    r = run(sd1, enable_hr=True, hr_upscaler=upscaler, hr_scale=1.5, denoising_strength=0.5, hr_second_pass_steps=2)
    assert r.images[0].size == (96, 96)
    text = r.infotexts[0]
    tail = text.split("\n")[-1]
    assert "Size: 64x64," in tail  # the first-pass size, as A1111 writes it
    assert (
        f"Denoising strength: 0.5, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: {upscaler}, Version:" in tail
    ), tail
    res = parse_generation_parameters(text)
    assert res["Hires upscaler"] == upscaler and res["Hires upscale"] == "1.5"


def test_upscale_modes_really_differ(sd1) -> None:
    out = {}
    for upscaler in ("Latent", "Latent (nearest)", "Lanczos", "Nearest"):
        r = run(sd1, enable_hr=True, hr_upscaler=upscaler, hr_scale=2.0, denoising_strength=0.3)
        out[upscaler] = pixels(r.images[0])
    names = list(out)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.array_equal(out[a], out[b]), (a, b)


def test_latent_upscale_is_torch_interpolate_of_first_pass(sd1) -> None:
    p = build(sd1, enable_hr=True, hr_upscaler="Latent (bicubic antialiased)", hr_resize_x=96, hr_resize_y=80)
    processing.validate(p)
    hires.prepare(p)
    first = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = hires.upscale_first_pass(p, first, None, [1])
    ref = torch.nn.functional.interpolate(first, size=(12, 12), mode="bicubic", antialias=True)
    assert torch.equal(out, ref[:, :, 1:11, :])  # 96x96 covers 96x80: two latent rows cropped, one each side


@pytest.mark.parametrize(
    ("size", "resize", "final", "key"),
    [
        ((64, 64), (96, 80), (96, 80), "Hires resize: 96x80"),  # both: fill then crop
        ((64, 96), (96, 0), (96, 144), "Hires resize: 96x0"),  # one zero: keep the aspect
        ((64, 96), (0, 128), (80, 128), "Hires resize: 0x128"),  # 128 * 64 // 96 = 85, floored to the latent grid
        ((64, 64), (0, 0), (128, 128), "Hires upscale: 2.0"),  # zero: scale
    ],
)
def test_resize_to_rules_end_to_end(sd1, size, resize, final, key) -> None:
    r = run(
        sd1,
        enable_hr=True,
        width=size[0],
        height=size[1],
        hr_resize_x=resize[0],
        hr_resize_y=resize[1],
        hr_upscaler="Lanczos",
        steps=2,
        denoising_strength=0.4,
    )
    assert r.images[0].size == final
    assert key in r.infotexts[0]
    assert ("Hires upscale:" in r.infotexts[0]) == (resize == (0, 0))


def test_denoising_strength_sets_start_of_second_pass_not_its_length(sd1) -> None:
    starts = {}
    for strength in (0.3, 0.8):
        calls = UNetCalls(sd1)
        run(
            sd1,
            calls,
            enable_hr=True,
            hr_upscaler="Latent",
            denoising_strength=strength,
            hr_second_pass_steps=5,
            steps=3,
        )
        assert calls.count(False) == Counter({"a": 3})
        assert calls.count(True) == Counter({"a": 5})  # Euler: one UNet call per step, exactly the hires steps
        first_hr_sigma = next(s for _, is_hr, s in calls.calls if is_hr)
        # A1111: the schedule for int(5 / strength) steps, entered at index total - t_enc - 1 with t_enc = 4
        total = int(5 / strength)
        sigmas = sd_samplers.build_sigmas("Euler", "Automatic", total, sd1.models.current.pipe.scheduler.alphas_cumprod)
        assert first_hr_sigma == pytest.approx(float(sigmas[total - 5]), rel=1e-5)
        starts[strength] = first_hr_sigma
    assert starts[0.8] > starts[0.3]
    calls = UNetCalls(sd1)
    r = run(sd1, calls, enable_hr=True, denoising_strength=0.0, steps=2)
    assert calls.count(True) == Counter() and r.images[0].size == (128, 128)


def test_same_seed_same_image_and_per_image_rng(sd1) -> None:
    kw = {"enable_hr": True, "hr_upscaler": "Latent", "denoising_strength": 0.6, "sampler_name": "Euler a"}
    one = run(sd1, seed=11, **kw)
    again = run(sd1, seed=11, **kw)
    assert np.array_equal(pixels(one.images[0]), pixels(again.images[0]))
    batch = run(sd1, seed=10, batch_size=2, **kw)
    # the hires noise of image 2 comes from its own seed's fresh generator, not from the batch
    assert np.abs(pixels(batch.images[2]) - pixels(one.images[0])).max() <= 2


def test_hires_prompt_sampler_schedule_and_key_order(sd1) -> None:
    base = run(sd1, prompt="a cat", enable_hr=True, denoising_strength=0.7)
    other = run(
        sd1,
        prompt="a cat",
        enable_hr=True,
        denoising_strength=0.7,
        hr_prompt="a dog, red",
        hr_negative_prompt="blurry",
        hr_sampler_name="DPM++ 2M",
        hr_scheduler="Use same scheduler",
        hr_second_pass_steps=3,
        hr_upscaler="Latent (antialiased)",
    )
    assert not np.array_equal(pixels(base.images[0]), pixels(other.images[0]))
    assert "Hires prompt" not in base.infotexts[0] and "Hires sampler" not in base.infotexts[0]
    tail = other.infotexts[0].split("\n")[-1]
    keys = [
        "Denoising strength: 0.7",
        "Hires sampler: DPM++ 2M",
        'Hires prompt: "a dog, red"',
        "Hires negative prompt: blurry",
        "Hires schedule type: Karras",
        "Hires upscale: 2.0",
        "Hires steps: 3",
        "Hires upscaler: Latent (antialiased)",
    ]
    positions = [tail.index(k) for k in keys]
    assert positions == sorted(positions), tail
    res = parse_generation_parameters(other.infotexts[0])
    assert res["Hires prompt"] == "a dog, red" and res["Hires negative prompt"] == "blurry"
    # "Use same sampler" means the first pass's sampler: no Hires sampler key, same image as leaving it empty
    same = run(sd1, prompt="a cat", enable_hr=True, denoising_strength=0.7, hr_sampler_name="Use same sampler")
    assert np.array_equal(pixels(same.images[0]), pixels(base.images[0]))


def test_save_images_before_highres_fix(sd1, tmp_path: Path) -> None:
    p = build(
        sd1,
        enable_hr=True,
        hr_upscaler="Lanczos",
        denoising_strength=0.5,
        save_images=True,
        override_settings={"save_images_before_highres_fix": True},
    )
    p.outpath_samples = str(tmp_path)
    processing.process_images(p)
    before = list(tmp_path.rglob("*-before-highres-fix.png"))
    after = [f for f in tmp_path.rglob("*.png") if f not in before]
    assert len(before) == 1 and len(after) == 1
    assert Image.open(before[0]).size == (64, 64) and Image.open(after[0]).size == (128, 128)
    assert "Hires upscale: 2.0" in Image.open(before[0]).info["parameters"]


# --- checkpoints: hires checkpoint and refiner ------------------------------------------------------------


def test_hires_checkpoint_switches_for_second_pass_and_back(sd1) -> None:
    calls = UNetCalls(sd1)
    r = run(
        sd1,
        calls,
        enable_hr=True,
        hr_checkpoint_name="bb",
        denoising_strength=0.5,
        steps=3,
        hr_second_pass_steps=2,
        n_iter=2,
    )
    assert calls.count(False) == Counter({"a": 6}) and calls.count(True) == Counter({"bb": 4})
    info = sd1.registry.closest("bb")
    assert f"Hires checkpoint: bb [{info.shorthash}]" in r.infotexts[1] and "Model: a," in r.infotexts[1]
    assert sd1.models.current_info.name == "a.safetensors"


def test_hires_checkpoint_reloads_main_when_cache_holds_one(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, {"a": "sd1", "bb": "sd1"}, "a")
    rt.opts.set("sd_checkpoints_limit", 1)
    main = rt.models.current
    p = build(rt, enable_hr=True, hr_checkpoint_name="bb", steps=2, denoising_strength=0.5)
    r = processing.process_images(p)
    assert rt.models.current_info.name == "a.safetensors" and p.sd_model is rt.models.current
    assert rt.models.current is not main  # it really was evicted and loaded again
    assert rt.models.loaded_filenames() == [rt.models.current_info.filename]
    assert r.images[0].size == (128, 128)


def _expected_switch_step(rt, steps: int, at: float) -> int:
    """A1111's apply_refiner on Euler's schedule: the first step whose sigma's timestep t has (999 - t) / 1000 >= at."""
    ac = rt.models.current.pipe.scheduler.alphas_cumprod.float()
    model_sigmas = ((1 - ac) / ac) ** 0.5
    sigmas = sd_samplers.build_sigmas("Euler", "Automatic", steps, ac)
    for i, s in enumerate(sigmas[:-1]):
        t = int(torch.argmin(torch.abs(model_sigmas - s)))
        if (999 - t) / 1000 >= at:
            return i
    return steps


@pytest.mark.parametrize("at", [0.3, 0.8])
def test_refiner_switches_at_timestep_fraction(xl, at: float) -> None:
    steps = 10
    calls = UNetCalls(xl)
    r = run(
        xl, calls, prompt="a cat", negative_prompt="", steps=steps, refiner_checkpoint="refiner", refiner_switch_at=at
    )
    k = _expected_switch_step(xl, steps, at)
    assert 0 < k < steps
    assert [name for name, _, _ in calls.calls] == ["base"] * k + ["refiner"] * (steps - k)
    info = xl.registry.closest("refiner")
    assert f"Refiner: refiner [{info.shorthash}], Refiner switch at: {at}, Version" in r.infotexts[0]
    assert "Refiner switch by sampling steps" not in r.infotexts[0]
    assert xl.models.current_info.name == "base.safetensors"


def test_refiner_switch_by_sampling_steps(xl) -> None:
    calls = UNetCalls(xl)
    r = run(
        xl,
        calls,
        steps=8,
        refiner_checkpoint="refiner",
        refiner_switch_at=0.25,
        override_settings={"refiner_switch_by_sample_steps": True},
    )
    assert [name for name, _, _ in calls.calls] == ["base"] * 2 + ["refiner"] * 6
    assert "Refiner switch by sampling steps: True" in r.infotexts[0]


def test_refiner_not_reached_writes_nothing(xl) -> None:
    calls = UNetCalls(xl)
    r = run(xl, calls, steps=4, refiner_checkpoint="refiner", refiner_switch_at=1.0)
    assert calls.count(False) == Counter({"base": 4})
    assert "Refiner" not in r.infotexts[0]
    plain = run(xl, steps=4)
    assert np.array_equal(pixels(plain.images[0]), pixels(r.images[0]))


@pytest.mark.parametrize(
    ("which", "first", "second", "key"),
    [
        ("second pass", {"base": 4}, {"base", "refiner"}, None),
        ("first pass", {"base", "refiner"}, {"base"}, "Hires refiner: first pass"),
        ("both passes", {"base", "refiner"}, {"base", "refiner"}, "Hires refiner: both passes"),
    ],
)
def test_refiner_pass_with_hires_fix(xl, which, first, second, key) -> None:
    calls = UNetCalls(xl)
    r = run(
        xl,
        calls,
        steps=4,
        enable_hr=True,
        hr_scale=1.5,
        denoising_strength=0.9,
        hr_second_pass_steps=4,
        refiner_checkpoint="refiner",
        refiner_switch_at=0.5,
        override_settings={"hires_fix_refiner_pass": which},
    )
    got_first, got_second = calls.count(False), calls.count(True)
    assert (dict(got_first) if isinstance(first, dict) else set(got_first)) == first
    assert set(got_second) == second
    assert sum(got_second.values()) == 4
    # each pass starts with the job's model, the refiner takes over from the switch on
    assert [n for n, hr, _ in calls.calls if hr][0] == "base"
    assert (key in r.infotexts[0]) if key else ("Hires refiner" not in r.infotexts[0])
    assert r.images[0].size == (96, 96)


# --- tiling -----------------------------------------------------------------------------------------------


def test_tiling_is_circular_during_the_job_only(sd1) -> None:
    model = sd1.models.current
    convs = tiling.conv_layers(tiling.model_parts(model))
    assert convs and all(c.padding_mode == "zeros" for c in convs)
    seen = []

    def hook(_params) -> None:
        seen.append({c.padding_mode for c in convs})

    p = build(sd1, tiling=True, enable_hr=True, hr_checkpoint_name="bb", denoising_strength=0.5, steps=2)
    p.hooks = DenoiserHooks(before_unet=[hook])
    tiled = processing.process_images(p)
    assert seen and all(s == {"circular"} for s in seen)
    assert all(c.padding_mode == "zeros" for c in convs)
    other = sd1.models.get_cached("bb")
    assert all(c.padding_mode == "zeros" for c in tiling.conv_layers(tiling.model_parts(other)))
    assert "Tiling: True" in tiled.infotexts[0]
    plain = run(sd1, enable_hr=True, hr_checkpoint_name="bb", denoising_strength=0.5, steps=2)
    assert not np.array_equal(pixels(plain.images[0]), pixels(tiled.images[0]))
    # the setting turns it on when the request leaves it unset (A1111: tiling None -> opts.tiling)
    from_setting = run(
        sd1,
        enable_hr=True,
        hr_checkpoint_name="bb",
        denoising_strength=0.5,
        steps=2,
        override_settings={"tiling": True},
    )
    assert np.array_equal(pixels(from_setting.images[0]), pixels(tiled.images[0]))


def test_tiled_decode_wraps_around(sd1) -> None:
    """With circular padding the VAE sees the latent as a torus: rolling the latent rolls the image exactly."""
    from modules.vae import decode_latents

    model = sd1.models.current
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with tiling.circular_padding(model):
        a = decode_latents(model, lat)
        b = decode_latents(model, torch.roll(lat, shifts=3, dims=3))
    assert torch.allclose(torch.roll(a, shifts=24, dims=3), b, atol=1e-4)
    plain_a, plain_b = decode_latents(model, lat), decode_latents(model, torch.roll(lat, shifts=3, dims=3))
    assert not torch.allclose(torch.roll(plain_a, shifts=24, dims=3), plain_b, atol=1e-4)


def test_tiling_restored_after_error(sd1) -> None:
    convs = tiling.conv_layers(tiling.model_parts(sd1.models.current))
    with pytest.raises(RuntimeError), tiling.circular_padding(sd1.models.current):
        assert convs[0].padding_mode == "circular"
        raise RuntimeError("boom")
    assert all(c.padding_mode == "zeros" for c in convs)


# --- bad values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"hr_scale": 0}, "hr_scale", "1 to 4"),
        ({"hr_resize_x": 5000}, "hr_resize_x", "4096"),
        ({"hr_resize_x": 4096, "height": 128}, "hr_resize_x", "4096x8192"),  # one side given, the other follows
        ({"hr_upscaler": "ESRGAN_4x"}, "hr_upscaler", "could not find upscaler named 'ESRGAN_4x'"),
        ({"hr_sampler_name": "Nope"}, "hr_sampler_name", "Nope"),
        ({"hr_scheduler": "Wobbly"}, "hr_scheduler", "Wobbly"),
        ({"hr_checkpoint_name": "missing-model"}, "hr_checkpoint_name", "missing-model"),
        ({"denoising_strength": None}, "denoising_strength", "0 to 1"),
        ({"hr_second_pass_steps": -1}, "hr_second_pass_steps", "150"),
    ],
)
def test_bad_hires_values_fail_before_any_work(sd1, fields, field, words) -> None:
    calls = UNetCalls(sd1)
    p = build(sd1, enable_hr=True)
    for k, v in fields.items():
        setattr(p, k, v)
    calls.p = p
    p.hooks = DenoiserHooks(before_unet=[calls.hook])
    with pytest.raises(ValidationError) as e:
        processing.process_images(p)
    assert e.value.field == field and words in str(e.value)
    assert calls.calls == []
    # hires fields are only checked when hires fix is on (A1111 ignores them otherwise)
    p = build(sd1, enable_hr=False, steps=1)
    for k, v in fields.items():
        setattr(p, k, v)
    processing.process_images(p)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"refiner_checkpoint": "no-such-refiner"}, "refiner_checkpoint", "no-such-refiner"),
        ({"refiner_checkpoint": "bb", "refiner_switch_at": 1.5}, "refiner_switch_at", "0 to 1"),
    ],
)
def test_bad_refiner_values_fail_before_any_work(sd1, fields, field, words) -> None:
    p = build(sd1)
    for k, v in fields.items():
        setattr(p, k, v)
    with pytest.raises(ValidationError) as e:
        processing.process_images(p)
    assert e.value.field == field and words in str(e.value)
    assert p.all_seeds == []  # nothing started


def test_schema_rejects_out_of_range_hires_fields() -> None:
    from pydantic import ValidationError as PydanticError

    for field, value in (("hr_scale", 0), ("hr_resize_x", 5000), ("refiner_switch_at", 2)):
        with pytest.raises(PydanticError, match=field):
            Txt2ImgParams(**{field: value})


def test_refiner_unset_values_mean_no_refiner(sd1) -> None:
    for value in ("", "None", None):
        p = build(sd1, refiner_checkpoint=value, refiner_switch_at=0.5, steps=1)
        processing.process_images(p)
        assert p.refiner_checkpoint is None and p.refiner_switch_at is None


# --- UI: accordions, params, paste ------------------------------------------------------------------------


def test_ui_accordions_params_and_paste_round_trip(sd1) -> None:
    import gradio as gr

    from modules import ui_txt2img

    with gr.Blocks() as demo:
        c = ui_txt2img.create_txt2img_tab(sd1)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for elem_id in (
        "txt2img_hr",
        "txt2img_enable_hr",
        "txt2img_hr_upscaler",
        "txt2img_hires_steps",
        "txt2img_denoising_strength",
        "txt2img_hr_scale",
        "txt2img_hr_resize_x",
        "txt2img_hr_resize_y",
        "hr_checkpoint",
        "hr_sampler",
        "hr_scheduler",
        "hires_prompt",
        "hires_neg_prompt",
        "txt2img_refiner",
        "txt2img_checkpoint",
        "txt2img_switch_at",
    ):
        assert elem_id in ids, elem_id
    assert len(c["paste_outputs"]) == len(ui_txt2img.PASTE_FIELDS) == len(ui_txt2img.paste_values(""))

    made = run(
        sd1,
        prompt="a cat",
        enable_hr=True,
        hr_checkpoint_name="bb",
        hr_prompt="a dog",
        hr_scale=1.5,
        hr_second_pass_steps=2,
        hr_upscaler="Lanczos",
        denoising_strength=0.45,
        refiner_checkpoint="bb",
        refiner_switch_at=0.99,
        steps=2,
    )
    pasted = dict(zip(ui_txt2img.PASTE_FIELDS, ui_txt2img.paste_values(made.infotexts[0]), strict=True))
    assert pasted["enable_hr"] is True and pasted["hr_scale"] == 1.5 and pasted["hr_second_pass_steps"] == 2
    assert pasted["hr_upscaler"] == "Lanczos" and pasted["denoising_strength"] == 0.45
    assert pasted["hr_prompt"] == "a dog" and pasted["hr_sampler_name"] == "Use same sampler"
    params = ui_txt2img.hires_refiner_params(pasted)
    assert params["hr_sampler_name"] is None and params["hr_scheduler"] is None
    assert sd1.registry.closest(params["hr_checkpoint_name"]).name == "bb.safetensors"
    # the refiner never switched (0.99 is not reached in 2 steps), so A1111 wrote no Refiner key
    assert pasted["refiner_enable"] is False and params["refiner_checkpoint"] is None
    again = run(sd1, prompt="a cat", steps=2, **params)
    assert np.array_equal(pixels(again.images[0]), pixels(made.images[0]))
    assert ui_txt2img._hr_resolution_text(512, 768, 2, 1024, 1024) == "from 512x768 to 1024x1024"


def test_combined_hires_sampler_name_keeps_its_schedule(sd1) -> None:
    p = build(sd1, enable_hr=True, hr_sampler_name="Euler a Karras")
    processing.validate(p)
    assert (p.hr_sampler_name, p.hr_scheduler) == ("Euler a", "Karras")
    p = build(sd1, enable_hr=True, hr_sampler_name="Use same sampler", hr_scheduler="Use same scheduler")
    processing.validate(p)
    assert p.hr_sampler_name is None and p.hr_scheduler is None
