"""The Extras tab in a real browser: upload an image, pick a model upscaler, Generate, get the upscale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import upscaler_files as uf
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("extras-ui")
    uf.write_esrgan_old(data / "models" / "ESRGAN", "2x-Tiny", 2, seed=1)
    with LiveServer(data, "--no-half", "--skip-load-model-at-start") as url:
        yield url, data


def test_upscale_an_upload(page, server, tmp_path: Path) -> None:
    url, data = server
    src = tmp_path / "in.png"
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 255, size=(20, 28, 3)).astype(np.uint8)).save(src)
    page.goto(url)
    page.get_by_role("tab", name="Extras").click()
    page.set_input_files("#extras_image input[type=file]", str(src))
    page.locator("#extras_image img").first.wait_for(timeout=30000)
    page.locator("#extras_upscaling_resize input[type=number]").fill("2")
    page.locator("#extras_upscaling_resize input[type=number]").press("Enter")
    page.locator("#extras_upscaler_1 input").click()
    page.get_by_role("option", name="2x-Tiny").click()
    page.locator("#extras_generate").click()
    page.locator("#html_info_extras", has_text="Postprocess upscaler: 2x-Tiny").wait_for(timeout=60000)
    assert "Postprocess upscale by: 2" in page.locator("#html_info_extras").inner_text()
    page.locator("#extras_gallery img").first.wait_for(timeout=30000)
    saved = sorted((data / "outputs" / "extras-images").glob("*.png"))
    assert len(saved) == 1
    with Image.open(saved[0]) as im:
        assert im.size == (56, 40)
        assert "Postprocess upscaler: 2x-Tiny" in im.text["postprocessing"]
    assert not page.js_errors


def test_send_to_extras_from_png_info(page, server, tmp_path: Path) -> None:
    url, data = server
    src = tmp_path / "sent.png"
    from modules.image_metadata import write_image_with_infotext

    write_image_with_infotext(Image.new("RGB", (16, 12), (200, 10, 10)), src, "a prompt\nSteps: 5", "png")
    page.goto(url)
    page.get_by_role("tab", name="PNG Info").click()
    page.set_input_files("#pnginfo_image input[type=file]", str(src))
    page.locator("#pnginfo_html", has_text="Steps: 5").wait_for(timeout=30000)
    page.locator("#extras_tab").click()
    page.locator("#extras_image img").first.wait_for(timeout=30000)
    page.locator("#extras_upscaler_1 input").click()
    page.get_by_role("option", name="Nearest").click()
    before = set((data / "outputs" / "extras-images").glob("*.png"))
    page.locator("#extras_generate").click()
    page.locator("#html_info_extras", has_text="Postprocess upscaler: Nearest").wait_for(timeout=60000)
    (new,) = set((data / "outputs" / "extras-images").glob("*.png")) - before
    with Image.open(new) as im:
        assert im.size == (64, 48)  # the slider's default: scale by 4
        assert im.text["parameters"] == "a prompt\nSteps: 5"  # the sent file kept its metadata
    assert not page.js_errors
