"""A1111 names waiting in modules.compat_surface for their target modules (one test each)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from modules import compat_surface as cs


def test_processing_get_fixed_seed_and_constants() -> None:
    assert cs.get_fixed_seed(12) == 12 and cs.get_fixed_seed("7") == 7
    randoms = {cs.get_fixed_seed(v) for v in (-1, None, "", "abc")}
    assert all(0 <= r < 4294967294 for r in randoms) and (cs.opt_C, cs.opt_f) == (4, 8)


def test_processing_create_binary_mask() -> None:
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 0, 200))
    rgba.putpixel((1, 0), (0, 0, 0, 100))
    assert list(cs.create_binary_mask(rgba).getdata()) == [255, 0, 0, 0]
    assert list(cs.create_binary_mask(rgba, round=False).getdata()) == [200, 100, 0, 0]
    grey = Image.new("RGB", (1, 1), (100, 100, 100))
    assert cs.create_binary_mask(grey).mode == "L" and cs.create_binary_mask(grey).getpixel((0, 0)) == 100


def test_processing_create_random_tensors_matches_the_job_noise() -> None:
    from modules.rng import ImageRNG

    got = cs.create_random_tensors((4, 8, 8), [3, 4], subseeds=[5, 6], subseed_strength=0.3)
    want = ImageRNG((4, 8, 8), [3, 4], subseeds=[5, 6], subseed_strength=0.3).next()
    assert got.shape == (2, 4, 8, 8) and torch.equal(got, want)


def test_images_flatten_read_info_grid_annotation() -> None:
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    img.putpixel((1, 0), (0, 255, 0, 255))
    flat = cs.flatten(img, "#0000ff")
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (0, 0, 255) and flat.getpixel((1, 0)) == (0, 255, 0)
    plain = Image.new("RGB", (1, 1))
    plain.info["parameters"] = "a cat\nSteps: 3"
    assert cs.read_info_from_image(plain)[0] == "a cat\nSteps: 3"
    ann = cs.GridAnnotation("x", is_active=False)
    assert (ann.text, ann.is_active) == ("x", False)


def test_txt2img_entry_points_say_what_to_use() -> None:
    from modules.errors import WebUIError

    with pytest.raises(WebUIError, match="StableDiffusionProcessingTxt2Img"):
        cs.txt2img_create_processing("task(x)", None, "a prompt")
    with pytest.raises(WebUIError, match="sdapi/v1/txt2img"):
        cs.txt2img("task(x)", None)


def test_sd_vae_names(make_runtime, data_dir) -> None:
    from safetensors.torch import save_file

    (data_dir / "models" / "VAE").mkdir(parents=True)
    save_file({"decoder.conv_in.weight": torch.zeros(1), "loss.logvar": torch.zeros(1)},
              str(data_dir / "models" / "VAE" / "my.vae.safetensors"))
    make_runtime()
    cs.refresh_vae_list()
    assert list(cs.vae_dict()) == ["my.vae.safetensors"]
    assert list(cs.load_vae_dict(cs.vae_dict()["my.vae.safetensors"])) == ["decoder.conv_in.weight"]


def test_sd_samplers_names() -> None:
    names = [s.name for s in cs.samplers]
    assert names[0] == "DPM++ 2M" and "Euler a" in names and cs.samplers_map["k_euler_a"] == "Euler a"
    assert cs.samplers_for_img2img == cs.all_samplers
    with pytest.raises(AttributeError, match="LDM"):
        cs.create_sampler("Euler a", None)


def test_masking_crop_region_and_fill() -> None:
    from modules import masking as cs  # the A1111 names live in modules.masking itself

    mask = Image.new("L", (64, 32), 0)
    mask.paste(255, (10, 8, 20, 12))
    assert cs.get_crop_region(mask, pad=4) == (6, 4, 24, 16)
    assert cs.get_crop_region(Image.new("L", (5, 5)), 2) == (0, 0, 5, 5)
    # 18x12 region grown to the 1:1 processing ratio: height grows to 18 around the centre, inside the image
    assert cs.expand_crop_region((6, 4, 24, 16), 512, 512, 64, 32) == (6, 1, 24, 19)
    assert cs.expand_crop_region((0, 0, 4, 30), 512, 256, 64, 32) == (0, 0, 60, 30)  # wide target, clamped left
    image = Image.new("RGB", (16, 16), (200, 10, 10))
    hole = Image.new("L", (16, 16), 0)
    hole.paste(255, (4, 4, 12, 12))
    filled = cs.fill(image, hole)
    assert filled.mode == "RGB" and filled.getpixel((8, 8))[0] > 150  # the hole takes the surrounding colour


def test_interrogator_says_it_is_unavailable() -> None:
    from modules.errors import WebUIError

    with pytest.raises(WebUIError, match="CLIP interrogate is not available"):
        cs.Interrogator().interrogate(Image.new("RGB", (1, 1)))
