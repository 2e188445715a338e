"""The page in a real browser: quicksettings row, checkpoint refresh and switch, errors, JS helpers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def pick(page, title: str) -> None:
    page.locator("#setting_sd_model_checkpoint input").click()
    page.get_by_role("option", name=title).click()


def test_no_checkpoint_page_says_where(page, tmp_path: Path, monkeypatch) -> None:
    from tests.live_server import free_port

    monkeypatch.setenv("SD_WEBUI_DEFAULT_MODEL_URL", f"http://127.0.0.1:{free_port()}/none.safetensors")
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.wait_for_selector("#quicksettings")
        status = page.locator("#sd_model_status")
        status.wait_for()
        text = status.inner_text()
        assert "No Stable Diffusion checkpoint found" in text
        assert str(tmp_path / "models" / "Stable-diffusion") in text
        # The A1111 JS helpers extensions rely on are on the page.
        assert page.evaluate("typeof gradioApp === 'function' && typeof onUiLoaded === 'function'"
                             " && typeof onUiUpdate === 'function'")
        assert page.evaluate("!!gradioApp().querySelector('#quicksettings') && !!gradioApp().querySelector('#tabs')")
        assert page.get_by_role("tab", name="Settings").count() == 1
        # Offline, the offered download fails fast with the same plain message.
        page.locator("#sd_model_download").click()
        status.filter(has_text="Could not download").wait_for(timeout=30000)
        assert "put it into" in status.inner_text()


def test_refresh_pick_switch_and_bad_file(page, tmp_path: Path) -> None:
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1", ckpts, "first", seed=1)
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        # the first checkpoint is loaded at start, in the background
        dropdown = page.locator("#setting_sd_model_checkpoint input")
        dropdown.wait_for()
        page.wait_for_timeout(500)
        for _ in range(60):
            page.locator("#refresh_sd_model_checkpoint").click()
            page.wait_for_timeout(500)
            if dropdown.input_value().startswith("first.safetensors"):
                break
        assert dropdown.input_value().startswith("first.safetensors")

        # A new file appears after refresh, and picking it loads it.
        write_tiny_checkpoint("sdxl-base", ckpts / "xl", "second", seed=2)
        (ckpts / "broken.safetensors").write_bytes(b"\x00" * 100)
        page.locator("#refresh_sd_model_checkpoint").click()
        pick(page, "xl/second.safetensors")
        status = page.locator("#sd_model_status")
        status.filter(has_text=re.compile("Loaded xl/second")).wait_for(timeout=60000)
        assert "SDXL base" in status.inner_text()
        assert dropdown.input_value().startswith("xl/second.safetensors")

        # A broken file: the error names it, the SDXL model stays selected and loaded.
        pick(page, "broken.safetensors")
        status.filter(has_text="broken.safetensors").wait_for(timeout=30000)
        assert "corrupt" in status.inner_text() or "truncated" in status.inner_text()
        page.wait_for_timeout(500)
        assert dropdown.input_value().startswith("xl/second.safetensors")
        assert "Traceback" not in page.content()
        assert not page.js_errors


def test_corrupt_settings_file_warned_on_page(page, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"samples_format": "jpg",')
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        warning = page.locator(".startup-warning")
        warning.first.wait_for(timeout=30000)
        assert "could not be read" in warning.first.inner_text()
        assert list(tmp_path.glob("config.json.corrupt-*.bak"))
        # Settings still work: change one in the Settings tab and it is saved atomically.
        page.get_by_role("tab", name="Settings").click()
        page.locator("#settings_submit").wait_for()
        page.locator("#settings_submit").click()
        page.locator("#settings_result").filter(has_text="settings changed").wait_for(timeout=30000)


def test_first_switch_to_new_checkpoint_has_no_error(page, tmp_path: Path) -> None:
    """A new file's title gains its hash while it loads: no "not in the list of choices" error may appear."""
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1", ckpts, "first", seed=1)
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        status = page.locator("#sd_model_status")
        status.filter(has_text="Loaded first").wait_for(timeout=60000)
        write_tiny_checkpoint("sd1", ckpts, "second", seed=2)
        page.locator("#refresh_sd_model_checkpoint").click()
        pick(page, "second.safetensors")
        status.filter(has_text="Loaded second").wait_for(timeout=60000)
        dropdown = page.locator("#setting_sd_model_checkpoint input")
        page.wait_for_function("() => /second\\.safetensors \\[[0-9a-f]{10}\\]/.test("
                               "document.querySelector('#setting_sd_model_checkpoint input').value)", timeout=30000)
        # Two more ticks of the quicksettings poll, then nothing may have gone wrong on the page or the server.
        page.wait_for_timeout(2500)
        assert page.locator(".toast-body").count() == 0
        assert page.get_by_text("not in the list of choices").count() == 0
        assert "not in the list of choices" not in (tmp_path / "server.log").read_text()
        # Switching back by the hashed title works the same way.
        pick(page, "first.safetensors [")
        status.filter(has_text="Loaded first").wait_for(timeout=60000)
        assert dropdown.input_value().startswith("first.safetensors [")
        assert page.locator(".toast-body").count() == 0
        assert not page.js_errors
