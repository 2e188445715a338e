"""The img2img tab's own handler in each mode: img2img, inpaint upload, inpaint with painted strokes, batch."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from modules.image_metadata import read_info_from_image
from tests.fixtures.ui_handlers import run_click

BASE = {"prompt": "a cat", "seed": 3, "steps": 3, "width": 64, "height": 64, "denoising_strength": 0.6,
        "sampler_name": "Euler"}


def gradient() -> Image.Image:
    x = np.linspace(0, 255, 64, dtype=np.float32)
    arr = np.stack([np.broadcast_to(x[None, :], (64, 64)), np.broadcast_to(x[:, None], (64, 64)),
                    np.full((64, 64), 50.0)], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


@pytest.fixture
def tab(runtime):
    from modules.ui_img2img import create_img2img_tab

    with gr.Blocks() as demo:
        c = create_img2img_tab(runtime)
    return demo, c


def _images(out) -> list[Image.Image]:
    gallery = out[0]
    assert isinstance(gallery, list), out[4]
    return [g if isinstance(g, Image.Image) else Image.open(g) for g in gallery]


def test_img2img_mode_generates_with_its_infotext(runtime, tab) -> None:
    demo, c = tab
    out = run_click(demo, c["generate"], c, {**BASE, "mode": 0, "init_img": gradient()})
    images = _images(out)
    assert images[0].size == (64, 64)
    assert "Denoising strength: 0.6" in out[6]


def test_inpaint_upload_and_painted_strokes_keep_unmasked_pixels(runtime, tab) -> None:
    demo, c = tab
    init = gradient()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (20, 20, 44, 44))
    settings = {**BASE, "mask_blur": 0, "inpainting_fill": "original", "inpaint_full_res": "Whole picture"}
    upload = run_click(demo, c["generate"], c, {**settings, "mode": 4, "init_img_inpaint": init,
                                                "init_mask_inpaint": mask.convert("RGBA")})
    strokes = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    strokes.paste((255, 255, 255, 255), (20, 20, 44, 44))
    painted = run_click(demo, c["generate"], c, {**settings, "mode": 2, "init_img_with_mask": {
        "background": init.convert("RGBA"), "layers": [strokes], "composite": init.convert("RGBA")}})
    outside = np.asarray(mask) == 0
    for out in (upload, painted):
        result = np.asarray(_images(out)[0].convert("RGB"))
        assert np.array_equal(result[outside], np.asarray(init)[outside])
    assert np.array_equal(np.asarray(_images(upload)[0]), np.asarray(_images(painted)[0]))


def test_batch_mode_processes_a_folder_with_masks_and_png_info(runtime, tab, tmp_path: Path) -> None:
    demo, c = tab
    src, masks, dst = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    src.mkdir()
    masks.mkdir()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a dog\nSteps: 2, Sampler: Euler, Seed: 77, Size: 64x64")
    gradient().save(src / "one.png", pnginfo=info)
    gradient().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "two.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    mask.save(masks / "two.png")
    (src / "notes.txt").write_text("not an image")
    out = run_click(demo, c["generate"], c, {**BASE, "mode": 5, "batch_input_dir": str(src),
                                            "batch_output_dir": str(dst), "batch_inpaint_mask_dir": str(masks),
                                            "batch_use_png_info": True, "batch_png_info_props": ["Seed", "Prompt"],
                                            "mask_blur": 0})
    assert len(_images(out)) == 2
    saved = sorted(dst.rglob("*.png"))
    assert [p.name for p in saved] == ["one.png", "two.png"]  # named after the inputs, as A1111
    texts = [read_info_from_image(Image.open(p))[0] for p in saved]
    assert any("Seed: 77" in t and t.startswith("a dog a cat") for t in texts)  # its own infotext, typed prompt after
    assert any("Mask blur: 0" in t for t in texts)


def test_batch_mode_with_a_missing_folder_says_so(runtime, tab, tmp_path: Path) -> None:
    demo, c = tab
    out = run_click(demo, c["generate"], c, {**BASE, "mode": 5, "batch_input_dir": str(tmp_path / "nope")})
    assert "does not exist" in out[4] and "nope" in out[4]


def test_mode_without_an_image_says_so(runtime, tab) -> None:
    demo, c = tab
    out = run_click(demo, c["generate"], c, {**BASE, "mode": 0})
    assert "upload an image" in out[4]


def test_save_init_img_keeps_the_source_named_by_its_hash(runtime, tab) -> None:
    import hashlib

    demo, c = tab
    runtime.opts.set("save_init_img", True)
    init = gradient()
    out = run_click(demo, c["generate"], c, {**BASE, "mode": 0, "init_img": init})
    digest = hashlib.md5(init.tobytes()).hexdigest()
    saved = list((runtime.paths.data_dir / "outputs" / "init-images").glob("*.png"))
    assert [p.stem for p in saved] == [digest]
    assert np.array_equal(np.asarray(Image.open(saved[0]).convert("RGB")), np.asarray(init))
    assert f"Init image hash: {digest}" in out[6]
