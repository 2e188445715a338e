"""img2img in a real browser: upload an image and generate, then inpaint it with a mask and check the result."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.test_txt2img import set_number
from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def _fetch_png(page, src: str) -> Image.Image:
    data = page.evaluate("async (u) => { const r = await fetch(u); const b = new Uint8Array(await r.arrayBuffer());"
                         " let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s); }", src)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def _settings(page) -> None:
    page.locator("#img2img_prompt textarea").fill("a cat")
    set_number(page, "img2img_width", 64)
    set_number(page, "img2img_height", 64)
    set_number(page, "img2img_steps", 2)
    set_number(page, "img2img_seed", 7)


def test_upload_generate_then_inpaint_with_a_mask(page, tmp_path: Path) -> None:
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny", seed=3)
    picture = tmp_path / "input.png"
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    arr[..., 2] = 90
    Image.fromarray(arr).save(picture)
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.locator("#sd_model_status").filter(has_text="Loaded").wait_for(timeout=60000)
        # txt2img's result goes to img2img with its prompt ("Send to img2img", as A1111).
        page.locator("#txt2img_prompt textarea").fill("a dog")
        for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", 2)):
            set_number(page, elem_id, value)
        page.locator("#txt2img_generate").click()
        page.locator("#html_info_txt2img").filter(has_text="Steps: 2").wait_for(timeout=120000)
        page.locator("#txt2img_send_to_img2img").click()
        page.locator("#img2img_image img").first.wait_for(timeout=30000)
        assert page.locator("#img2img_prompt textarea").input_value() == "a dog"
        page.locator("#img2img_image input[type=file]").set_input_files(str(picture))
        _settings(page)
        page.locator("#img2img_generate").click()
        page.locator("#img2img_gallery img").first.wait_for(timeout=120000)
        page.locator("#html_info_img2img").filter(has_text="Denoising strength").wait_for(timeout=30000)
        assert not page.js_errors
        # Inpaint upload: the picture and a mask file (painting in Gradio 6's editor does not take synthetic
        # mouse strokes in headless chromium; the painted-mask path is covered by tests/component/test_img2img_tab).
        mask_file = tmp_path / "mask.png"
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (16, 24, 48, 40))
        mask.save(mask_file)
        page.locator("#img2img_inpaint_upload_tab-button").click()
        page.locator("#img_inpaint_base input[type=file]").set_input_files(str(picture))
        page.locator("#img_inpaint_mask input[type=file]").set_input_files(str(mask_file))
        page.locator("#img_inpaint_mask img").first.wait_for(timeout=30000)
        page.locator("#img2img_generate").click()
        try:
            page.locator("#html_info_img2img").filter(has_text="Masked content").wait_for(timeout=120000)
        except Exception:
            raise AssertionError(page.locator("#html_log_img2img").inner_text()) from None
        src = page.locator("#img2img_gallery img").first.get_attribute("src")
        result = np.asarray(_fetch_png(page, src).convert("RGB"), dtype=np.int16)
        # The top rows are far from the stroke: the input's own pixels.
        assert np.abs(result[:8] - arr[:8].astype(np.int16)).max() == 0
        assert not page.js_errors
