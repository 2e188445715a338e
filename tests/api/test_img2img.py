"""POST /sdapi/v1/img2img: A1111's fields, the same queue and job function, and bad input refused by name."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.api.test_routes import API, assert_clean_error, b64_png, decode, output_files, png_with_size


def gradient(w: int = 64, h: int = 64) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    arr = np.stack([np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)), np.full((h, w), 90.0)], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


BODY = {"prompt": "a cat", "seed": 4, "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler",
        "denoising_strength": 0.5}


def square_mask(size: int = 64) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return mask


def test_img2img_generates_and_reports_denoising(client, api_data_dir) -> None:
    before = output_files(api_data_dir)
    r = client.post(f"{API}/img2img", json={**BODY, "init_images": [b64_png(gradient())]})
    assert r.status_code == 200, r.text
    out = r.json()
    image = decode(out["images"][0])
    assert image.size == (64, 64)
    info = json.loads(out["info"])
    assert "Denoising strength: 0.5" in info["infotexts"][0]
    assert out["parameters"]["init_images"] is None  # not echoed back
    again = client.post(f"{API}/img2img", json={**BODY, "init_images": [b64_png(gradient())]}).json()
    assert again["images"][0] == out["images"][0]
    assert output_files(api_data_dir) == before  # save_images defaults to false on the API


def test_inpaint_keeps_every_unmasked_pixel(client) -> None:
    init = gradient()
    r = client.post(f"{API}/img2img", json={**BODY, "init_images": [b64_png(init)], "mask": b64_png(square_mask()),
                                            "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res": False,
                                            "denoising_strength": 0.9, "include_init_images": True})
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    result = np.asarray(decode(images[0]).convert("RGB"))
    outside = np.asarray(square_mask()) == 0
    assert np.array_equal(result[outside], np.asarray(init)[outside])
    assert not np.array_equal(result[~outside], np.asarray(init)[~outside])
    assert len(images) == 2  # include_init_images appends the input


def test_mask_of_another_size_is_resized(client) -> None:
    r = client.post(f"{API}/img2img", json={**BODY, "init_images": [b64_png(gradient())],
                                            "mask": b64_png(square_mask(32)), "mask_blur": 0})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("mode", ["I;16", "P", "CMYK", "LA", "exif"])
def test_unusual_image_modes_are_converted(client, mode: str) -> None:
    base = gradient()
    buf = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(buf, format="PNG")
    elif mode == "CMYK":
        base.convert("CMYK").save(buf, format="JPEG")
    elif mode == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated: the picture is shown turned by 90 degrees
        base.resize((64, 32)).save(buf, format="JPEG", exif=exif.tobytes())
    else:
        base.convert(mode).save(buf, format="PNG")
    text = base64.b64encode(buf.getvalue()).decode()
    r = client.post(f"{API}/img2img", json={**BODY, "init_images": [text], "steps": 1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"init_images": []}, ["init_images"]),
        ({"init_images": ["bm90IGFuIGltYWdl"]}, ["init_images.0"]),
        ({"init_images": [base64.b64encode(png_with_size(9000, 9000)).decode()]}, ["init_images.0", "9000x9000"]),
        ({"mask": "bm90IGFuIGltYWdl"}, ["mask"]),
        ({"mask": "BLACK"}, ["mask", "empty"]),
        ({"denoising_strength": 1.5}, ["denoising_strength"]),
        ({"resize_mode": 7}, ["resize_mode"]),
        ({"inpainting_fill": 9}, ["inpainting_fill"]),
        ({"mask_blur_x": -1}, ["mask_blur_x"]),
        ({"unknown_field": 1}, ["unknown_field"]),
    ],
)
def test_bad_input_is_422_naming_the_field(client, api_data_dir, change: dict, words: list[str]) -> None:
    body = {**BODY, "init_images": [b64_png(gradient())], **change}
    if body.get("mask") == "BLACK":
        body["mask"] = b64_png(Image.new("L", (64, 64), 0))
    before = output_files(api_data_dir)
    r = client.post(f"{API}/img2img", json=body)
    assert_clean_error(r, 422, *words)
    assert output_files(api_data_dir) == before
    assert client.get(f"{API}/progress").status_code == 200  # the server is fine
