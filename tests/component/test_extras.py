"""The Extras service on real files: saving with infotext, batch folders, crop, blends, extra copies, face
restoration plumbing with facexlib weights on disk, and the bad inputs of the issue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from modules.errors import ValidationError, WebUIError
from modules.params_extras import EXTRAS_BATCH, EXTRAS_DIRECTORY, EXTRAS_SINGLE, ExtrasJob, ExtrasOptions
from modules.state import JobState
from tests.fixtures import upscaler_files as uf


def picture(width: int = 32, height: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 255, size=(height, width, 3)).astype(np.uint8), "RGB")


@pytest.fixture
def rt(make_runtime, data_dir: Path):
    uf.write_esrgan_old(data_dir / "models" / "ESRGAN", "4x-Tiny", 4, seed=1)
    uf.write_compact(data_dir / "models" / "RealESRGAN", "compact-2x", 2, seed=2)
    return make_runtime("--no-half")


def run(rt, options: ExtrasOptions, images=(), mode=EXTRAS_SINGLE, **kw):
    from modules.extras import run_extras

    job = ExtrasJob(options=options, extras_mode=mode, images=list(images), **kw)
    return run_extras(rt, job, JobState())


def test_single_image_is_saved_with_its_infotext_and_the_source_parameters(rt, data_dir: Path):
    source = picture()
    source.info["parameters"] = "a cat\nSteps: 20, Seed: 1"
    res = run(rt, ExtrasOptions(upscaler_1="4x-Tiny", upscaling_resize=2), [(source, None)])
    assert res.infotext == "Postprocess upscale by: 2.0, Postprocess upscaler: 4x-Tiny"
    assert [im.size for im in res.images] == [(64, 48)]
    (saved,) = res.saved
    assert Path(saved).parent == data_dir / "outputs" / "extras-images"
    with Image.open(saved) as im:
        assert im.size == (64, 48)
        assert im.text["parameters"] == "a cat\nSteps: 20, Seed: 1"  # the source's parameters are kept
        assert im.text["extras"] == res.infotext
        assert im.text["postprocessing"] == res.infotext


def test_scale_to_with_crop_and_a_second_upscaler_blended(rt):
    res = run(rt, ExtrasOptions(resize_mode=1, upscaling_resize_w=40, upscaling_resize_h=40, upscaling_crop=True,
                                upscaler_1="4x-Tiny", upscaler_2="Nearest", extras_upscaler_2_visibility=0.5),
              [(picture(), None)], save_output=False)
    (image,) = res.images
    assert image.size == (40, 40)
    assert "Postprocess upscale to: 40x40" in res.infotext and "Postprocess crop to: 40x40" in res.infotext
    assert "Postprocess upscaler 2: Nearest" in res.infotext
    alone = run(rt, ExtrasOptions(resize_mode=1, upscaling_resize_w=40, upscaling_resize_h=40, upscaler_1="4x-Tiny"),
                [(picture(), None)], save_output=False).images[0]
    assert not np.array_equal(np.asarray(alone), np.asarray(image))  # the blend changed it


def test_batch_keeps_original_names_and_flipped_copies_get_saved(rt, data_dir: Path):
    res = run(rt, ExtrasOptions(upscaler_1="compact-2x", upscaling_resize=2),
              [(picture(seed=1), "one.png"), (picture(seed=2), "two.jpg")], mode=EXTRAS_BATCH,
              scripts_args={"Create flipped copies": {"enable": True, "option": ["Horizontal"]}})
    names = sorted(Path(p).name for p in res.saved)
    assert names == ["one-1.png", "one.png", "two-1.png", "two.png"]
    first, mirrored = res.images[0], res.images[1]
    assert np.array_equal(np.asarray(first)[:, ::-1], np.asarray(mirrored))


def test_split_oversized_cuts_a_tall_image_into_target_sized_pieces(rt):
    res = run(rt, ExtrasOptions(resize_mode=1, upscaling_resize_w=32, upscaling_resize_h=32, upscaler_1="Lanczos",
                                upscaling_crop=False),
              [(picture(16, 64), None)], save_output=False,
              scripts_args={"Split oversized images": {"enable": True, "split_threshold": 0.5, "overlap_ratio": 0.2}})
    assert len(res.images) > 1 and all(im.size == (32, 32) for im in res.images)


def test_batch_from_directory_reads_only_allowed_existing_folders(rt, data_dir: Path, tmp_path: Path):
    inbox = data_dir / "inbox"
    inbox.mkdir()
    picture().save(inbox / "a.png")
    (inbox / "b.png").write_bytes(b"not an image at all")
    res = run(rt, ExtrasOptions(upscaler_1="Lanczos", upscaling_resize=2, show_extras_results=False),
              mode=EXTRAS_DIRECTORY, input_dir=str(inbox), output_dir=str(data_dir / "outbox"))
    assert [Path(p).name for p in res.saved] == ["a.png"] and res.images == []
    assert any("b.png is not a readable image" in e for e in res.errors)
    with pytest.raises(ValidationError, match="does not exist"):
        run(rt, ExtrasOptions(), mode=EXTRAS_DIRECTORY, input_dir=str(data_dir / "missing"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ValidationError, match="outside the folders"):
        run(rt, ExtrasOptions(), mode=EXTRAS_DIRECTORY, input_dir=str(outside))
    with pytest.raises(ValidationError, match="outside the folders"):
        run(rt, ExtrasOptions(), mode=EXTRAS_DIRECTORY, input_dir=str(inbox), output_dir=str(inbox / ".." / ".."))


def test_hidden_dir_config_refuses_batch_from_directory(make_runtime, data_dir: Path):
    rt = make_runtime("--no-half", "--hide-ui-dir-config")
    with pytest.raises(ValidationError, match="hide-ui-dir-config"):
        run(rt, ExtrasOptions(), mode=EXTRAS_DIRECTORY, input_dir=str(data_dir))


def test_interrupted_batch_keeps_what_was_saved(rt):
    state = JobState()
    from modules.extras import run_extras

    job = ExtrasJob(options=ExtrasOptions(upscaler_1="Lanczos"), extras_mode=EXTRAS_BATCH,
                    images=[(picture(), "x.png")])
    state.interrupt()
    res = run_extras(rt, job, state)
    assert res.interrupted and res.saved == []


def test_face_restoration_without_its_files_names_the_file_and_folder(rt, data_dir: Path):
    with pytest.raises(WebUIError) as e:
        run(rt, ExtrasOptions(gfpgan_visibility=1.0), [(picture(), None)], save_output=False)
    assert "GFPGANv1.4.pth" in str(e.value) and str(data_dir / "models" / "GFPGAN") in str(e.value)
    assert "Nothing is downloaded" in str(e.value)
    with pytest.raises(WebUIError) as e:
        run(rt, ExtrasOptions(codeformer_visibility=1.0), [(picture(), None)], save_output=False)
    assert "codeformer-v0.1.0.pth" in str(e.value) and str(data_dir / "models" / "Codeformer") in str(e.value)


def test_gfpgan_runs_through_facexlib_with_weights_from_the_models_folder(rt, data_dir: Path):
    from modules.face_restoration import find_restorer

    models = data_dir / "models"
    uf.write_gfpgan(models / "GFPGAN", suffix=".safetensors")
    restorer = find_restorer(rt, "GFPGAN")
    assert "detection_Resnet50_Final.pth" in (restorer.status() or "")
    with pytest.raises(WebUIError, match="detection_Resnet50_Final.pth"):
        run(rt, ExtrasOptions(gfpgan_visibility=1.0), [(picture(), None)], save_output=False)
    uf.write_facexlib_weights(models / "facexlib")
    assert restorer.status() is None
    source = picture(96, 80)
    res = run(rt, ExtrasOptions(gfpgan_visibility=1.0), [(source, None)], save_output=False)
    assert res.infotext == "GFPGAN visibility: 1.0"
    # The detector (random, biased to background) finds no face, so the picture comes back as it was.
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(source))
    assert restorer.net().__class__.__name__ == "GFPGANv1Clean"


def test_a_malicious_facexlib_file_is_refused(rt, data_dir: Path):
    import pickle

    from modules.face_restoration_models import create_face_helper

    folder = data_dir / "models" / "facexlib"
    folder.mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (eval, ("1",))

    (folder / "detection_Resnet50_Final.pth").write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    (folder / "parsing_parsenet.pth").write_bytes(b"")
    with pytest.raises(WebUIError, match="refused"):
        create_face_helper(folder, "cpu")


def test_existing_png_chunks_survive(rt):
    src = picture()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "p")
    import io

    buf = io.BytesIO()
    src.save(buf, "PNG", pnginfo=info)
    loaded = Image.open(io.BytesIO(buf.getvalue()))
    loaded.load()
    res = run(rt, ExtrasOptions(upscaler_1="Nearest"), [(loaded, None)])
    with Image.open(res.saved[0]) as im:
        assert im.text["parameters"] == "p"


def test_upscale_cache_reuses_the_result_for_the_same_picture(rt):
    from modules.extras import run_extras

    rt.opts.set("ESRGAN_tile", 16)
    rt.opts.set("ESRGAN_tile_overlap", 0)
    job = ExtrasJob(options=ExtrasOptions(upscaler_1="4x-Tiny", upscaling_resize=2), images=[(picture(), None)],
                    save_output=False)
    first, second, other = JobState(), JobState(), JobState()
    a = run_extras(rt, job, first).images[0]
    b = run_extras(rt, job, second).images[0]
    assert first.sampling_steps == 4 and second.sampling_steps == 0  # no tile ran the second time
    assert np.array_equal(np.asarray(a), np.asarray(b))
    rt.opts.set("upscaling_max_images_in_cache", 0)
    job2 = ExtrasJob(options=ExtrasOptions(upscaler_1="4x-Tiny", upscaling_resize=2), images=[(picture(seed=5), None)],
                     save_output=False)
    run_extras(rt, job2, JobState())
    run_extras(rt, job2, other)
    assert other.sampling_steps == 4  # with the cache off, it runs again


def test_focal_point_and_auto_sized_crops_from_the_tab(rt, tmp_path: Path):
    """The Extras tab's own handler (given a Path, as gradio hands it a file path): "Scale to" without crop,
    then the focal crop keeps the detailed half; the auto-sized crop alone picks the size that fits the picture."""
    import gradio as gr

    from modules.ui_extras import create_extras_tab
    from tests.fixtures.ui_handlers import run_click

    arr = np.full((64, 128, 3), 128, dtype=np.uint8)
    arr[:, 96:] = np.random.RandomState(3).randint(0, 255, size=(64, 32, 3))
    source = tmp_path / "wide.png"
    Image.fromarray(arr, "RGB").save(source)
    with gr.Blocks() as demo:
        c = create_extras_tab(rt)
    out = run_click(demo, c["generate"], c, {
        "image": source, "upscale_mode": "Scale to", "upscaling_resize_w": 64, "upscaling_resize_h": 64,
        "upscaling_crop": False, "upscaler_1": "Lanczos", "focal_enabled": True, "focal_debug": True})
    crop, debug = (Image.open(x) if isinstance(x, str) else x for x in out[0])
    assert np.array_equal(np.asarray(crop.convert("RGB")), arr[:, 64:])
    assert debug.size == (128, 64)
    big = tmp_path / "big.png"
    Image.new("RGB", (1600, 900), (10, 20, 30)).save(big)
    out = run_click(demo, c["generate"], c, {"image": big, "upscale_enabled": False, "multicrop_enabled": True})
    (sized,) = (Image.open(x) if isinstance(x, str) else x for x in out[0])
    assert sized.size == (768, 448)
