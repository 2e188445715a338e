"""The PNG Info tab in a real browser: A1111 parameters, ComfyUI JSON shown escaped, unreadable uploads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from modules.image_metadata import write_image_with_infotext
from modules.infotext import create_infotext
from modules.ui_png_info import pnginfo_params
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

PROMPT = "a <b>red</b> fox, (forest:1.2)\nsecond line"
INFOTEXT = create_infotext(
    PROMPT,
    "blurry, lowres",
    {
        "Steps": 20,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7,
        "Seed": 1234,
        "Size": "64x48",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Version": "v1.10.1",
    },
)
# Strings that would do something if the metadata reached the page as HTML or as a template.
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> ${window.__pwned=3} {{value}}'
COMFY_PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "note": HOSTILE}}}
COMFY_WORKFLOW = {"nodes": [{"id": 3, "type": "KSampler", "title": "</pre><i>not italic</i>"}], "version": 0.4}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with LiveServer(tmp_path_factory.mktemp("pnginfo"), "--no-half") as url:
        yield url


def image() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 40, 40))


def upload(page, url: str, path: Path) -> None:
    page.goto(url)
    page.get_by_role("tab", name="PNG Info").click()
    page.set_input_files("#pnginfo_image input[type=file]", str(path))


def result(page, text: str) -> str:
    html_box = page.locator("#pnginfo_html")
    html_box.filter(has_text=text).wait_for(timeout=30000)
    return html_box.inner_text()


def test_a1111_parameters_are_listed(page, server: str, tmp_path: Path) -> None:
    path = tmp_path / "a1111.png"
    write_image_with_infotext(image(), path, INFOTEXT, "png", extra_pnginfo={"extras": "Postprocess upscale by: 2"})
    upload(page, server, path)
    text = result(page, "Steps: 20")
    assert "parameters" in text
    assert "a <b>red</b> fox, (forest:1.2)" in text  # the tags shown as text, not applied
    assert page.locator("#pnginfo_html b", has_text="red").count() == 0
    assert "Negative prompt: blurry, lowres" in text
    assert "Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 64x48" in text
    assert "extras" in text and "Postprocess upscale by: 2" in text
    # The raw infotext is in the hidden textbox, for "Send to" and extensions' JS.
    assert page.locator("#pnginfo_generation_info textarea").input_value() == INFOTEXT
    assert not page.js_errors
    # The function the txt2img paste reuses parses the same file.
    params = pnginfo_params(path)
    assert params["Prompt"] == PROMPT and params["Steps"] == "20" and params["Size-1"] == "64"


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_exif_user_comment_of_jpeg_and_webp(page, server: str, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"a1111.{fmt}"
    write_image_with_infotext(image(), path, INFOTEXT, fmt)
    upload(page, server, path)
    assert "Seed: 1234" in result(page, "Steps: 20")
    assert page.locator("#pnginfo_generation_info textarea").input_value() == INFOTEXT
    # Removing the image empties the result.
    page.locator("#pnginfo_image").get_by_role("button", name="Remove Image").click()
    page.locator("#pnginfo_html").filter(has_text="Steps").wait_for(state="detached", timeout=30000)
    assert page.locator("#pnginfo_generation_info textarea").input_value() == ""


def test_comfyui_json_is_shown_raw_and_escaped(page, server: str, tmp_path: Path) -> None:
    path = tmp_path / "comfy.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(COMFY_PROMPT))
    info.add_text("workflow", json.dumps(COMFY_WORKFLOW))
    image().save(path, pnginfo=info)
    upload(page, server, path)
    text = result(page, "KSampler")
    assert json.dumps(COMFY_PROMPT) in text
    assert json.dumps(COMFY_WORKFLOW) in text
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("#pnginfo_html img, #pnginfo_html script, #pnginfo_html i").count() == 0
    assert page.locator("#pnginfo_generation_info textarea").input_value() == ""
    assert not page.js_errors


def test_image_without_metadata(page, server: str, tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    image().save(path)
    upload(page, server, path)
    assert "Nothing found in the image." in result(page, "Nothing found")


def test_text_file_named_png_gives_a_readable_error(page, server: str, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("just some text, not an image\n")
    upload(page, server, path)
    text = result(page, "not an image")
    assert "Traceback" not in page.content()
    assert "Error" not in text
    assert page.locator("#pnginfo_generation_info textarea").input_value() == ""


def test_truncated_png_shows_metadata_and_a_warning(page, server: str, tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    noisy = Image.effect_noise((256, 256), 64).convert("RGB")  # noise: the pixel data is large
    write_image_with_infotext(noisy, full, INFOTEXT, "png")
    path = tmp_path / "truncated.png"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    upload(page, server, path)
    text = result(page, "truncated")
    assert "Steps: 20" in text
    assert "Traceback" not in page.content()


def test_send_to_img2img_and_the_img2img_paste_button(page, server: str, tmp_path: Path) -> None:
    path = tmp_path / "send.png"
    write_image_with_infotext(image(), path, INFOTEXT, "png")
    upload(page, server, path)
    result(page, "Steps: 20")
    page.locator("#img2img_tab").click()
    prompt = page.locator("#img2img_prompt textarea")
    prompt.wait_for()
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value.startsWith('a <b>red')",
                           timeout=15000)
    assert prompt.input_value() == PROMPT
    assert page.locator("#img2img_neg_prompt textarea").input_value() == "blurry, lowres"
    assert page.locator("#img2img_steps input[type=number]").input_value() == "20"
    page.locator("#img2img_image img").first.wait_for(timeout=15000)  # the picture came along
    # ↙️ on the img2img tab reads an infotext typed into its prompt box.
    prompt.fill("a cat\nSteps: 7, Sampler: Euler, CFG scale: 4, Seed: 99, Size: 64x48, Denoising strength: 0.3")
    page.locator("#img2img_paste").click()
    page.wait_for_function("() => document.querySelector('#img2img_prompt textarea').value === 'a cat'",
                           timeout=15000)
    assert page.locator("#img2img_steps input[type=number]").input_value() == "7"
    assert page.locator("#img2img_seed input").first.input_value() == "99"
    assert page.locator("#img2img_denoising_strength input[type=number]").input_value() == "0.3"
    assert not page.js_errors
