"""Model upscalers through our loading code: every download format, equal to spandrel's own output, tiling,
sizes, interrupt, bad files and A1111's names for missing files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.errors import ValidationError, WebUIError
from modules.state import JobState
from tests.fixtures import upscaler_files as uf


def picture(width: int = 40, height: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.RandomState(seed)
    base = np.linspace(0, 255, width * height * 3).reshape(height, width, 3)
    noise = rng.randint(0, 60, size=(height, width, 3))
    # Channels differ on purpose: a model fed BGR instead of RGB gives a different picture.
    return Image.fromarray(((base + noise) % 256).astype(np.uint8), "RGB")


def spandrel_output(path: Path, image: Image.Image, passes: int = 1) -> np.ndarray:
    """What spandrel itself makes of the file: its loader, its descriptor, untiled, fp32, RGB in."""
    import spandrel

    from modules.upscaler_models import pil_to_tensor, tensor_to_pil

    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    descriptor.eval()
    out = image
    for _ in range(passes):
        out = tensor_to_pil(descriptor(pil_to_tensor(out)))
    return np.asarray(out)


@pytest.fixture
def models(data_dir: Path) -> Path:
    return data_dir / "models"


def make(make_runtime, *flags: str):
    return make_runtime("--no-half", *flags)


FORMATS = [
    ("ESRGAN", "4x-old-layout", lambda d: uf.write_esrgan_old(d, "4x-old-layout", 4), 4, "ESRGAN"),
    ("ESRGAN", "2x-old-safetensors", lambda d: uf.write_esrgan_old(d, "2x-old-safetensors", 2, suffix=".safetensors"),
     2, "ESRGAN"),
    ("RealESRGAN", "R-ESRGAN 4x+", lambda d: uf.write_esrgan_new(d, "RealESRGAN_x4plus", 4), 4, "ESRGAN"),
    ("RealESRGAN", "compact-x2", lambda d: uf.write_compact(d, "compact-x2", 2), 2, "RealESRGAN Compact"),
    ("SwinIR", "swinir-x2", lambda d: uf.write_swinir(d, "swinir-x2", 2), 2, "SwinIR"),
    ("DAT", "dat-x2", lambda d: uf.write_dat(d, "dat-x2", 2), 2, "DAT"),
]


@pytest.mark.parametrize(("folder", "name", "write", "scale", "arch"), FORMATS, ids=[f[1] for f in FORMATS])
def test_each_format_loads_and_equals_spandrels_output(make_runtime, models: Path, folder, name, write, scale, arch):
    from modules.upscaler import registry_for, upscale_image

    path = write(models / folder)
    rt = make(make_runtime)
    reg = registry_for(rt)
    data = reg.find(name)
    assert (data.data_path, data.scale, data.architecture, data.error) == (str(path), scale, arch, None)
    assert reg.names()[:3] == ["None", "Lanczos", "Nearest"]
    image = picture()
    ours = upscale_image(rt, name, image, float(scale), JobState())
    assert ours.size == (image.width * scale, image.height * scale)
    assert np.array_equal(np.asarray(ours), spandrel_output(path, image))  # untiled: bit-identical, RGB order


def test_tiles_blend_within_a_bound_and_report_progress(make_runtime, models: Path):
    from modules.upscaler import upscale_image

    path = uf.write_esrgan_old(models / "ESRGAN", "tiled-4x", 4, seed=3)
    rt = make(make_runtime)
    rt.opts.set("ESRGAN_tile", 32)
    rt.opts.set("ESRGAN_tile_overlap", 8)
    image = picture(80, 56, seed=1)
    state = JobState()
    ours = np.asarray(upscale_image(rt, "tiled-4x", image, 4.0, state), dtype=np.int16)
    ref = spandrel_output(path, image).astype(np.int16)
    assert (state.sampling_step, state.sampling_steps) == (6, 6)  # 3x2 tiles, each counted
    diff = np.abs(ours - ref)
    assert diff.mean() < 1.0 and diff.max() <= 24, (diff.mean(), diff.max())
    assert not np.array_equal(ours, ref)  # it really was tiled


def test_models_are_run_as_often_as_the_scale_needs(make_runtime, models: Path):
    from modules.upscaler import upscale_image

    x2 = uf.write_esrgan_old(models / "ESRGAN", "two", 2, seed=4)
    uf.write_esrgan_old(models / "ESRGAN", "four", 4, seed=5)
    uf.write_esrgan_old(models / "ESRGAN", "one", 1, seed=6)
    rt = make(make_runtime)
    image = picture(24, 20)
    twice = upscale_image(rt, "two", image, 4.0)
    assert np.array_equal(np.asarray(twice), spandrel_output(x2, image, passes=2))
    assert upscale_image(rt, "two", image, 3.0).size == (72, 60)  # two passes, then Lanczos down to 3x
    assert upscale_image(rt, "four", image, 2.0).size == (48, 40)
    assert upscale_image(rt, "one", image, 2.0).size == (48, 40)  # a 1x model, then Lanczos
    assert upscale_image(rt, "four", image, (101, 77)).size == (101, 77)  # exact size, not a multiple of 8
    assert upscale_image(rt, "Lanczos", image, 2.5).size == (60, 50)
    assert upscale_image(rt, "Nearest", image, 2.0).size == (48, 40)


def test_interrupt_stops_before_the_next_tile(make_runtime, models: Path):
    from modules.upscaler import upscale_image
    from modules.upscaler_models import UpscaleInterrupted

    uf.write_esrgan_old(models / "ESRGAN", "stop", 2)
    rt = make(make_runtime)
    rt.opts.set("ESRGAN_tile", 16)
    rt.opts.set("ESRGAN_tile_overlap", 0)
    state = JobState()
    state.interrupt()
    with pytest.raises(UpscaleInterrupted):
        upscale_image(rt, "stop", picture(64, 64), 2.0, state)
    assert state.sampling_step == 0 and state.sampling_steps == 16


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/extras-pwned-marker",))


def test_bad_files_are_listed_with_the_reason_and_refused(make_runtime, models: Path, tmp_path: Path):
    from modules.upscaler import registry_for, upscale_image

    folder = models / "ESRGAN"
    good = uf.write_esrgan_old(folder, "good", 2)
    (folder / "truncated.pth").write_bytes(good.read_bytes()[:5000])
    (folder / "empty.safetensors").write_bytes(b"")
    (folder / "junk.pth").write_bytes(b"<html>404 Not Found</html>")
    with open(folder / "evil.pth", "wb") as f:
        pickle.dump({"x": _RunsCode()}, f, protocol=2)
    torch.save({"foo.weight": torch.zeros(3, 3)}, folder / "unknown-arch.pth")
    uf.write_gfpgan  # noqa: B018 - face models are refused too, but a 340 MB file is not worth it here
    marker = Path("/tmp/extras-pwned-marker")
    marker.unlink(missing_ok=True)
    rt = make(make_runtime)
    reg = registry_for(rt)
    reasons = {d.name: d.error for d in reg.problems()}
    assert set(reasons) == {"truncated", "empty", "junk", "evil", "unknown-arch"}
    assert "corrupt or truncated" in reasons["junk"]
    assert "corrupt or truncated" in reasons["truncated"]
    assert "empty" in reasons["empty"]
    assert "refused" in reasons["evil"] and "system" in reasons["evil"]
    assert "does not recognise" in reasons["unknown-arch"]
    assert not marker.exists()
    for name in reasons:
        with pytest.raises(WebUIError, match="cannot be used"):
            upscale_image(rt, name, picture(), 2.0)
    assert upscale_image(rt, "good", picture(), 2.0).size == (80, 64)  # the good file still works


def test_a1111_names_without_their_file_say_what_to_put_where(make_runtime, models: Path):
    from modules.modelloader import ModelFileMissingError
    from modules.upscaler import upscale_image

    rt = make(make_runtime)
    with pytest.raises(ModelFileMissingError) as e:
        upscale_image(rt, "R-ESRGAN 4x+", picture(), 4.0)
    assert "RealESRGAN_x4plus.pth" in str(e.value) and str(models / "RealESRGAN") in str(e.value)
    with pytest.raises(ValidationError, match="no upscaler called 'nope'"):
        upscale_image(rt, "nope", picture(), 2.0)


def test_a_result_too_large_is_refused_before_any_work(make_runtime):
    from modules.upscaler import upscale_image

    rt = make(make_runtime)
    with pytest.raises(ValidationError, match="20000x20000"):
        upscale_image(rt, "Lanczos", picture(100, 100), 200.0)


def test_extension_upscalers_are_listed_and_used(make_runtime):
    from modules import upscaler

    class UpscalerMirror(upscaler.Upscaler):
        name = "Mirror"

        def __init__(self, dirname=None):
            super().__init__()
            self.scalers = [upscaler.UpscalerData("Mirror 2x", None, self, 2)]

        def do_upscale(self, img, selected_model):
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((img.width * 2, img.height * 2))

    def check() -> None:
        rt = make(make_runtime)
        assert "Mirror 2x" in upscaler.registry_for(rt).names()
        out = upscaler.upscale_image(rt, "Mirror 2x", picture(10, 8), 2.0)
        assert out.size == (20, 16)
        vars(rt).pop("_upscaler_registry")  # modules.shared keeps the runtime alive; drop what holds the class

    try:
        check()
    finally:  # the class must not outlive the test (the registry lists every live Upscaler subclass)
        del UpscalerMirror
        import gc

        gc.collect()
    assert all(c.__name__ != "UpscalerMirror" for c in upscaler._all_subclasses(upscaler.Upscaler))


def test_modelloader_never_downloads(tmp_path: Path):
    from modules import modelloader

    with pytest.raises(modelloader.ModelFileMissingError) as e:
        modelloader.load_file_from_url("https://example.invalid/x/GFPGANv1.4.pth", model_dir=tmp_path / "GFPGAN")
    assert "GFPGANv1.4.pth" in str(e.value) and str(tmp_path / "GFPGAN") in str(e.value)
    (tmp_path / "GFPGAN").mkdir()
    (tmp_path / "GFPGAN" / "GFPGANv1.4.pth").write_bytes(b"x")
    assert modelloader.load_file_from_url("https://example.invalid/x/GFPGANv1.4.pth",
                                          model_dir=tmp_path / "GFPGAN").endswith("GFPGANv1.4.pth")
    assert modelloader.friendly_name("/a/b/4x-UltraSharp.pth") == "4x-UltraSharp"
    assert modelloader.load_models(tmp_path / "GFPGAN", ext_filter=[".pth"]) == [
        str(tmp_path / "GFPGAN" / "GFPGANv1.4.pth")]


def test_bf16_where_the_runtime_asks_for_it(make_runtime, models: Path):
    from modules.upscaler import registry_for, upscale_image
    from modules.upscaler_models import load_descriptor

    path = uf.write_esrgan_old(models / "ESRGAN", "half", 2, seed=8)
    rt = make_runtime()  # CPU default: the "Model precision on CPU" setting is bfloat16
    assert rt.policy.dtype == torch.bfloat16
    image = picture()
    ours = np.asarray(upscale_image(rt, "half", image, 2.0), dtype=np.int16)
    data = registry_for(rt).find("half")
    assert next(load_descriptor(data.data_path, data.scaler.ctx).model.parameters()).dtype == torch.bfloat16
    diff = np.abs(ours - spandrel_output(path, image).astype(np.int16))
    assert diff.mean() < 3.0, diff.mean()


def test_the_hooks_hires_fix_and_txt2img_will_call(make_runtime, models: Path):
    """What the lead wires into hires.py (upscaler by name, exact size) and processing (restore faces)."""
    from modules import face_restoration
    from modules.hires import LATENT_UPSCALE_MODES
    from modules.upscaler import hires_upscaler_names, upscale_image

    uf.write_esrgan_new(models / "RealESRGAN", "RealESRGAN_x4plus", 4)
    rt = make(make_runtime)
    names = hires_upscaler_names(rt, list(LATENT_UPSCALE_MODES))
    assert names[: len(LATENT_UPSCALE_MODES)] == list(LATENT_UPSCALE_MODES)
    assert names[len(LATENT_UPSCALE_MODES):][:3] == ["None", "Lanczos", "Nearest"] and "R-ESRGAN 4x+" in names
    assert upscale_image(rt, "R-ESRGAN 4x+", picture(32, 24), (64, 48), JobState()).size == (64, 48)

    class Inverter(face_restoration.FaceRestoration):
        def name(self):
            return "Inverter"

        def restore(self, np_image):
            return 255 - np_image

    assert face_restoration.restorer_names(rt) == ["CodeFormer", "GFPGAN"]
    face_restoration.face_restorers.append(Inverter())
    try:
        rt.opts.set("face_restoration_model", "Inverter")
        image = picture()
        out = face_restoration.restore_image(rt, image)
        assert np.array_equal(np.asarray(out), 255 - np.asarray(image))
        assert np.array_equal(face_restoration.restore_faces(np.asarray(image)), 255 - np.asarray(image))
    finally:
        face_restoration.face_restorers[:] = [r for r in face_restoration.face_restorers
                                              if not isinstance(r, Inverter)]
