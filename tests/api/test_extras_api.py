"""/sdapi/v1 Extras routes over HTTP (TestClient): A1111's fields and answers, the lists, and bad input."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import build_runtime, output_files
from tests.fixtures import upscaler_files as uf


@pytest.fixture(scope="module")
def extras_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("extras-api")
    models = d / "models"
    uf.write_esrgan_old(models / "ESRGAN", "4x-Tiny", 4, seed=1)
    uf.write_compact(models / "RealESRGAN", "realesr-tiny-x2", 2, seed=2)
    (models / "ESRGAN" / "broken.pth").write_bytes(b"\x80\x02garbage")
    return d


@pytest.fixture(scope="module")
def client(extras_dir: Path):
    from fastapi.testclient import TestClient

    from webui import create_app

    rt = build_runtime(extras_dir, "--api", "--nowebui", "--skip-load-model-at-start")
    with TestClient(create_app(rt)) as c:
        yield c


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def unb64(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def picture(w: int = 24, h: int = 16, seed: int = 0) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 255, size=(h, w, 3)).astype(np.uint8), "RGB")


def test_lists(client) -> None:
    ups = client.get("/sdapi/v1/upscalers").json()
    by_name = {u["name"]: u for u in ups}
    assert [u["name"] for u in ups[:3]] == ["None", "Lanczos", "Nearest"]
    assert by_name["4x-Tiny"]["scale"] == 4 and by_name["4x-Tiny"]["model_path"].endswith("4x-Tiny.pth")
    assert by_name["4x-Tiny"]["model_name"] == "ESRGAN"
    assert "broken" in by_name  # listed; refused when picked
    assert client.get("/sdapi/v1/realesrgan-models").json() == [
        {"name": "realesr-tiny-x2", "path": by_name["realesr-tiny-x2"]["model_path"], "scale": 2}]
    faces = client.get("/sdapi/v1/face-restorers").json()
    assert [f["name"] for f in faces] == ["CodeFormer", "GFPGAN"]
    assert faces[1]["cmd_dir"].endswith("models/GFPGAN")


def test_single_image(client, extras_dir: Path) -> None:
    before = output_files(extras_dir)
    r = client.post("/sdapi/v1/extra-single-image", json={
        "image": b64(picture()), "upscaler_1": "4x-Tiny", "upscaling_resize": 2, "upscale_first": True})
    assert r.status_code == 200, r.text
    body = r.json()
    out = unb64(body["image"])
    assert out.size == (48, 32)
    assert "Postprocess upscale by: 2.0" in body["html_info"] and "Postprocess upscaler: 4x-Tiny" in body["html_info"]
    assert out.info.get("parameters") == "Postprocess upscale by: 2.0, Postprocess upscaler: 4x-Tiny"
    assert output_files(extras_dir) == before  # the API never saves, as A1111


def test_batch_images_scale_to(client) -> None:
    r = client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": b64(picture(seed=1)), "name": "a.png"}, {"data": b64(picture(seed=2)), "name": "b"}],
        "resize_mode": 1, "upscaling_resize_w": 30, "upscaling_resize_h": 30, "upscaling_crop": True,
        "upscaler_1": "realesr-tiny-x2"})
    assert r.status_code == 200, r.text
    sizes = [unb64(i).size for i in r.json()["images"]]
    assert sizes == [(30, 30), (30, 30)]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"image": base64.b64encode(b"hello, not an image").decode(), "upscaler_1": "Lanczos"}, 422, "not an image"),
    ({"image": "@@@", "upscaler_1": "Lanczos"}, 422, "base64"),
    ({"upscaler_1": "Lanczos", "image": "SET", "upscaling_resize_w": 20000, "resize_mode": 1}, 422,
     "upscaling_resize_w"),
    ({"upscaler_1": "nope", "image": "SET"}, 422, "no upscaler called 'nope'"),
    ({"upscaler_1": "broken", "image": "SET"}, 400, "cannot be used"),
    ({"upscaler_1": "R-ESRGAN 4x+", "image": "SET"}, 400, "RealESRGAN_x4plus.pth"),
    ({"image": "SET", "gfpgan_visibility": 1}, 400, "GFPGANv1.4.pth"),
    ({"image": "SET", "upscaling_resize": 8, "upscaler_1": "Lanczos", "unknown": 1}, 422, "unknown field"),
])
def test_bad_input_is_a_clear_error_and_the_server_stays_up(client, body, status, needle) -> None:
    if body.get("image") == "SET":
        body = {**body, "image": b64(picture())}
    r = client.post("/sdapi/v1/extra-single-image", json=body)
    assert r.status_code == status, r.text
    text = r.text
    assert needle in text and "Traceback" not in text
    assert client.get("/sdapi/v1/upscalers").status_code == 200


def test_a_huge_scale_is_refused(client) -> None:
    big = Image.new("RGB", (2600, 2600), (10, 20, 30))
    r = client.post("/sdapi/v1/extra-single-image", json={
        "image": b64(big), "upscaler_1": "Lanczos", "upscaling_resize": 8})
    assert r.status_code == 422 and "20800x20800" in r.text
