"""txt2img in a real browser: type a prompt, Generate, see the image, its infotext, and the saved PNG."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def set_number(page, elem_id: str, value: int | float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_generate_shows_image_and_infotext(page, tmp_path: Path) -> None:
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny", seed=3)
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.locator("#sd_model_status").filter(has_text="Loaded").wait_for(timeout=60000)
        page.locator("#txt2img_prompt textarea").fill("a photo of a cat")
        page.locator("#txt2img_neg_prompt textarea").fill("blurry")
        set_number(page, "txt2img_width", 64)
        set_number(page, "txt2img_height", 64)
        set_number(page, "txt2img_steps", 3)
        set_number(page, "txt2img_seed", 1234)
        page.locator("#txt2img_generate").click()
        page.locator("#txt2img_gallery img").first.wait_for(timeout=120000)
        info = page.locator("#html_info_txt2img")
        info.filter(has_text="Steps: 3").wait_for(timeout=30000)
        text = info.inner_text()
        assert "a photo of a cat" in text and "Negative prompt: blurry" in text
        assert "Seed: 1234" in text and "Size: 64x64" in text and "Model: tiny" in text
        assert "Sampler: DPM++ 2M" in text and "Schedule type: Karras" in text
        assert "Time taken" in page.locator("#html_log_txt2img").inner_text()
        # A sampler we do not have is named as missing, never silently replaced.
        assert "Not available yet: DDIM CFG++" in page.locator("#txt2img_sampling").inner_text()
        # The image the gallery shows keeps its infotext (PNG parameters chunk).
        src = page.locator("#txt2img_gallery img").first.get_attribute("src")
        data = page.evaluate("async (u) => { const r = await fetch(u); const b = new Uint8Array(await r.arrayBuffer());"
                             " let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s); }", src)
        shown = Image.open(io.BytesIO(base64.b64decode(data)))
        assert "Seed: 1234" in shown.info.get("parameters", "")
        saved = list((tmp_path / "outputs" / "txt2img-images").rglob("*.png"))
        assert len(saved) == 1 and re.match(r"00000-1234", saved[0].name)
        assert "Seed: 1234" in Image.open(saved[0]).info["parameters"]

        # 💾 Save copies the image (with its infotext) to log/images and writes a log.csv row.
        page.locator("#save_txt2img").click()
        page.locator("#html_log_txt2img").filter(has_text="Saved:").wait_for(timeout=30000)
        logged = list((tmp_path / "log" / "images").rglob("*.png"))
        assert len(logged) == 1 and "Seed: 1234" in Image.open(logged[0]).info["parameters"]
        assert "a photo of a cat,1234,64,64" in (tmp_path / "log" / "log.csv").read_text()

        # Bad input: a width that is not a multiple of 8 gets a clear message and starts no job.
        set_number(page, "txt2img_width", 100)
        page.locator("#txt2img_generate").click()
        page.locator("#html_log_txt2img").filter(has_text="width").wait_for(timeout=30000)
        assert "multiple of 8" in page.locator("#html_log_txt2img").inner_text()
        assert len(list((tmp_path / "outputs" / "txt2img-images").rglob("*.png"))) == 1
        assert not page.js_errors


def test_png_info_send_to_txt2img_fills_fields(page, tmp_path: Path) -> None:
    from modules.image_metadata import write_image_with_infotext

    img = tmp_path / "in.png"
    text = ("a castle on a hill\nNegative prompt: fog\nSteps: 17, Sampler: Euler a, Schedule type: Automatic, "
            "CFG scale: 5.5, Seed: 777, Size: 320x192, Model: x")
    write_image_with_infotext(Image.new("RGB", (8, 8)), str(img), text, "png")
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.get_by_role("tab", name="PNG Info").click()
        page.locator("#pnginfo_image input[type=file]").set_input_files(str(img))
        page.locator("#pnginfo_html").filter(has_text="Steps: 17").wait_for(timeout=30000)
        page.locator("#txt2img_tab").click()
        page.locator("#tab_txt2img").wait_for(state="visible", timeout=30000)
        prompt = page.locator("#txt2img_prompt textarea")
        page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value.includes('castle')",
                               timeout=30000)
        assert prompt.input_value() == "a castle on a hill"
        assert page.locator("#txt2img_neg_prompt textarea").input_value() == "fog"
        assert page.locator("#txt2img_steps input[type=number]").input_value() == "17"
        assert page.locator("#txt2img_seed input").input_value() == "777"
        assert page.locator("#txt2img_width input[type=number]").input_value() == "320"
        assert page.locator("#txt2img_height input[type=number]").input_value() == "192"
        assert page.locator("#txt2img_sampling input").input_value() == "Euler a"
