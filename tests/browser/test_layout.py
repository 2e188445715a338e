"""The txt2img page's layout in a real browser at 1280 px and 390 px, with screenshots for a person to look at."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.test_extra_networks import write_lora
from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).parent / "screenshots"


def box(page, selector: str) -> dict:
    b = page.locator(selector).first.bounding_box()
    assert b is not None, f"{selector} is not shown"
    return b


def has_emoji_font() -> bool | None:
    """From fontconfig, independently of the page: is there a font with 🔄 (U+1F504) in colour?"""
    if not shutil.which("fc-list"):
        return None
    out = subprocess.run(["fc-list", ":charset=1f504", "color"], capture_output=True, text=True).stdout
    return any("True" in line for line in out.splitlines())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("layout")
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion", "tiny", seed=3)
    write_lora(data / "models" / "Lora", "inkstyle")
    with LiveServer(data, "--no-half") as url:
        yield url


@pytest.mark.parametrize("width", [1280, 390])
def test_txt2img_layout(browser, server, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server)
        page.locator("#sd_model_status").filter(has_text="Loaded").wait_for(timeout=60000)
        page.wait_for_timeout(500)
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"txt2img_{width}.png"), full_page=True)

        # Nothing scrolls sideways.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        # The output gallery is not an upload drop zone.
        gallery = page.locator("#txt2img_gallery")
        assert gallery.locator("input[type=file]").count() == 0
        assert "Drop Media Here" not in gallery.inner_text()
        # The infotext is shown once (the HTML under the gallery), not again in a textbox.
        assert not page.locator("#txt2img_info").is_visible()
        # Token counters sit in the top right corner of their prompt box.
        for prompt, counter in (("#txt2img_prompt", "#txt2img_token_counter"),
                                ("#txt2img_neg_prompt", "#txt2img_negative_token_counter")):
            p, c = box(page, prompt), box(page, counter)
            assert p["x"] <= c["x"] and c["x"] + c["width"] <= p["x"] + p["width"] + 1
            assert p["y"] <= c["y"] and c["y"] + c["height"] <= p["y"] + p["height"] / 2
            assert c["x"] + c["width"] > p["x"] + p["width"] * 0.75
        # ↙️ and 🗑️ are small buttons side by side, not full-width bars.
        paste, clear = box(page, "#paste"), box(page, "#txt2img_clear_prompt")
        assert paste["width"] < 90 and clear["width"] < 90 and abs(paste["y"] - clear["y"]) < 2
        # Hires fix and Refiner are stacked, each the column's full width.
        hr, ref = box(page, "#txt2img_hr"), box(page, "#txt2img_refiner")
        assert ref["y"] >= hr["y"] + hr["height"] - 1 and abs(hr["width"] - ref["width"]) < 2
        # Every icon button says what it does on mouse-over.
        untitled = page.evaluate("""() => [...document.querySelectorAll('button.tool')]
            .filter(b => b.offsetParent !== null && !b.title).map(b => b.id || b.textContent)""")
        assert untitled == []
        assert "generation parameters" in page.locator("#paste").get_attribute("title")
        # Without a colour emoji font the icons become words instead of empty boxes.
        fallback = page.evaluate("getComputedStyle(document.querySelector('#txt2img_clear_prompt'), '::after')"
                                 ".content")
        if has_emoji_font() is False:
            assert page.evaluate("document.body.classList.contains('no-emoji')")
            assert fallback == '"Clear"'
            assert page.locator("#txt2img_edit_style_accordion .label-wrap").first.inner_text().strip() \
                .startswith("Edit styles")
        # The extra-network pages are a tab row under the prompts, not an accordion at the bottom.
        assert page.locator("#txt2img_extra_networks").count() == 0
        tabs = box(page, "#txt2img_extra_tabs")
        assert tabs["y"] > box(page, "#txt2img_neg_prompt")["y"]
        assert tabs["y"] < box(page, "#txt2img_sampling")["y"]
        if width >= 1000:  # (narrow pages fold late tabs into Gradio's overflow menu: issue 18 part B)
            page.locator("#txt2img_lora_tab-button").click()
            name = page.locator("#txt2img_lora_cards .card .name").first
            name.wait_for(timeout=30000)
            page.screenshot(path=str(SCREENSHOTS / f"txt2img_lora_{width}.png"), full_page=True)
            # Card names are light on the card's dark band.
            assert page.evaluate("getComputedStyle(document.querySelector('#txt2img_lora_cards .card .name'))"
                                 ".color") == "rgb(255, 255, 255)"
        assert not errors
    finally:
        context.close()


def test_extension_js_sees_opts_without_the_api(page, server) -> None:
    """A1111's `opts` and `onOptionsAvailable` come from the page's settings JSON, so they work without --api
    (this server has no API: /sdapi/v1/options is not there)."""
    page.goto(server)
    page.locator("#sd_model_status").filter(has_text="Loaded").wait_for(timeout=60000)
    assert page.request.get(f"{server}/sdapi/v1/options").status == 404
    page.wait_for_function("() => typeof opts === 'object' && opts.samples_format === 'png'", timeout=10000)
    fired = page.evaluate("() => new Promise(resolve => onOptionsAvailable(() => resolve(opts.grid_format)))")
    assert fired == "png"
