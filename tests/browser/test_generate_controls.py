"""Generate, Interrupt and Skip in a real browser: the keyboard shortcuts, and a second Generate during a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("generate")
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion", "tiny", seed=3)
    with LiveServer(data, "--no-half") as url:
        yield url, data


def saved(data: Path) -> int:
    return len(list((data / "outputs" / "txt2img-images").rglob("*.png")))


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def prepare(page, url: str, steps: int, count: int) -> None:
    page.goto(url)
    page.locator("#sd_model_status").filter(has_text="Loaded").wait_for(timeout=60000)
    page.locator("#txt2img_prompt textarea").fill("a red cube")
    for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", steps),
                           ("txt2img_batch_count", count)):
        set_number(page, elem_id, value)


def test_keyboard_shortcuts_generate_skip_interrupt(page, server) -> None:
    url, data = server
    before = saved(data)
    prepare(page, url, steps=3, count=1)
    # Ctrl+Enter in the prompt box generates.
    page.locator("#txt2img_prompt textarea").press("Control+Enter")
    page.locator("#html_log_txt2img").filter(has_text="Time taken").wait_for(timeout=120000)
    assert saved(data) == before + 1

    # A long run: Alt+Enter presses Skip, Esc presses Interrupt and the run stops early.
    set_number(page, "txt2img_steps", 150)
    set_number(page, "txt2img_batch_count", 40)
    page.evaluate("window.skips = 0; document.querySelector('#txt2img_skip')"
                  ".addEventListener('click', () => window.skips++)")
    before = saved(data)
    page.locator("#txt2img_prompt textarea").press("Control+Enter")
    page.locator("#txt2img_progress .progressDiv").wait_for(timeout=60000)
    page.keyboard.press("Alt+Enter")
    page.wait_for_function("window.skips === 1", timeout=10000)
    page.keyboard.press("Escape")
    page.locator("#txt2img_progress .progressDiv").wait_for(state="detached", timeout=120000)
    assert saved(data) - before < 40  # interrupted long before 40 images
    # Esc with nothing running does nothing (and never reaches a job started elsewhere).
    page.keyboard.press("Escape")
    assert not page.js_errors


def test_second_generate_during_a_run_is_queued(page, server) -> None:
    from PIL import Image

    url, data = server
    prepare(page, url, steps=150, count=40)  # far too long to end by itself during the test
    page.locator("#txt2img_generate").click()
    page.locator("#txt2img_progress .progressDiv").wait_for(timeout=60000)
    page.locator("#txt2img_prompt textarea").fill("a blue sphere")
    set_number(page, "txt2img_steps", 2)
    set_number(page, "txt2img_batch_count", 1)
    page.locator("#txt2img_generate").click()
    # The page says so: a toast, then the running job's progress line counts the queued one.
    page.get_by_text("Generate queued").first.wait_for(timeout=30000)
    page.locator("#txt2img_progress").filter(has_text="1 more queued").wait_for(timeout=30000)
    page.locator("#txt2img_interrupt").click()  # ends the first run; the queued one runs next
    page.locator("#html_info_txt2img").filter(has_text="a blue sphere").wait_for(timeout=120000)
    spheres = [f for f in (data / "outputs" / "txt2img-images").rglob("*.png")
               if "a blue sphere" in Image.open(f).info.get("parameters", "")]
    assert len(spheres) == 1
    assert "Steps: 2," in Image.open(spheres[0]).info["parameters"]
    assert not page.js_errors


def test_notification_sound_footer_and_copy_infotext(browser, tmp_path: Path) -> None:
    """notification.mp3 in the data folder plays once per finished job, at notification_volume; footer versions;
    Copy infotext puts the infotext on the clipboard."""
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny", seed=3)
    (tmp_path / "notification.mp3").write_bytes(b"ID3" + b"\x00" * 64)  # played is what counts, not the sound
    (tmp_path / "config.json").write_text('{"notification_volume": 40}')
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    # Count play() calls and the volume they were made at (headless chromium has no audio output).
    page.add_init_script("window.plays = []; HTMLMediaElement.prototype.play = function () {"
                         " window.plays.push(this.volume); return Promise.resolve(); };")
    try:
        with LiveServer(tmp_path, "--no-half") as url:
            prepare(page, url, steps=2, count=1)
            footer = page.locator("#footer")
            assert "python:" in footer.inner_text() and "torch:" in footer.inner_text()
            assert footer.get_by_text("Reload UI").count() == 1 and footer.get_by_text("API").count() == 1
            page.wait_for_function("document.querySelector('#footer').innerText.includes('checkpoint: decc563b2d')",
                                   timeout=30000)
            assert page.evaluate("window.plays.length") == 0
            page.locator("#txt2img_generate").click()
            page.locator("#html_log_txt2img").filter(has_text="Time taken").wait_for(timeout=120000)
            page.wait_for_function("window.plays.length === 1", timeout=10000)
            assert page.evaluate("window.plays") == [0.4]
            page.locator("#txt2img_copy_infotext").click()
            page.wait_for_function("navigator.clipboard.readText().then(t => window.copied = t), "
                                   "(window.copied || '').includes('Steps: 2')", timeout=30000)
            assert page.evaluate("window.copied").startswith("a red cube\nSteps: 2, Sampler:")
    finally:
        context.close()


def test_generate_forever_until_cancelled(page, server) -> None:
    url, data = server
    prepare(page, url, steps=2, count=1)
    before = saved(data)
    page.evaluate("window.clicks = 0; document.querySelector('#txt2img_generate')"
                  ".addEventListener('click', () => window.clicks++)")
    page.locator("#txt2img_generate").click(button="right")
    page.get_by_text("Generate forever", exact=True).click()
    for _ in range(600):  # two finished runs, the second started by the page itself
        if saved(data) >= before + 2:
            break
        page.wait_for_timeout(200)
    assert saved(data) >= before + 2
    page.locator("#txt2img_generate").click(button="right")
    page.get_by_text("Cancel generate forever", exact=True).click()
    clicks = page.evaluate("window.clicks")
    for _ in range(600):  # every run the page started ends (one image each)...
        if saved(data) >= before + clicks:
            break
        page.wait_for_timeout(200)
    assert saved(data) == before + clicks
    page.wait_for_timeout(2000)  # ... and no new one is started (the page checks twice a second)
    assert page.evaluate("window.clicks") == clicks and saved(data) == before + clicks
    assert not page.js_errors
