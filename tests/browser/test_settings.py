"""The Settings tab in a real browser: controls show the current values, Apply writes only what was changed."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def post_options(url: str, body: dict) -> None:
    req = urllib.request.Request(url + "/sdapi/v1/options", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def open_settings(page, *sections: str) -> None:
    page.get_by_role("tab", name="Settings").click()
    page.locator("#settings_submit").wait_for()
    for first_key in sections:
        section = page.locator(f"#settings_section_{first_key}")
        section.wait_for()
        if not section.locator("[data-testid=accordion-content]").first.is_visible():
            section.locator(".label-wrap").first.click()


def number(page, key: str):
    return page.locator(f"#setting_{key} input[type=number]")


def set_number(page, key: str, value: int) -> None:
    box = number(page, key)
    box.fill(str(value))
    box.press("Enter")


def apply(page) -> str:
    """Click Apply and return the new result line (every call in the tests below expects a different one)."""
    result = page.locator("#settings_result .prose")
    before = result.inner_text()
    page.locator("#settings_submit").click()
    page.wait_for_function("(b) => { const t = document.querySelector('#settings_result .prose').innerText;"
                           " return t !== b && t.includes('settings changed'); }", arg=before, timeout=30000)
    return result.inner_text().strip()


def test_settings_show_current_values_and_apply_only_changes(page, tmp_path: Path) -> None:
    with LiveServer(tmp_path, "--no-half", "--api") as url:
        page.goto(url)
        open_settings(page, "sd_checkpoints_limit", "samples_save")
        set_number(page, "CLIP_stop_at_last_layers", 2)
        assert apply(page) == "1 settings changed: CLIP_stop_at_last_layers."

        # A newly loaded page shows the stored value, not the one the server started with.
        page.reload()
        open_settings(page, "sd_checkpoints_limit", "samples_save")
        page.wait_for_function("document.querySelector('#setting_CLIP_stop_at_last_layers input[type=number]')"
                               ".value === '2'", timeout=30000)

        # Changed elsewhere while this page stays open: applying an unrelated change does not put it back.
        post_options(url, {"eta_noise_seed_delta": 31337, "CLIP_stop_at_last_layers": 3})
        set_number(page, "jpeg_quality", 91)
        assert apply(page) == "1 settings changed: jpeg_quality."
        saved = json.loads((tmp_path / "config.json").read_text())
        assert saved["CLIP_stop_at_last_layers"] == 3 and saved["eta_noise_seed_delta"] == 31337
        assert saved["jpeg_quality"] == 91
        # ... and after Apply the page shows what is stored now.
        assert number(page, "CLIP_stop_at_last_layers").input_value() == "3"

        # Back on the tab after a change through the API: the control shows it.
        post_options(url, {"CLIP_stop_at_last_layers": 4})
        page.get_by_role("tab", name="txt2img").click()
        open_settings(page)
        page.wait_for_function("document.querySelector('#setting_CLIP_stop_at_last_layers input[type=number]')"
                               ".value === '4'", timeout=30000)
        assert apply(page) == "0 settings changed."
        assert json.loads((tmp_path / "config.json").read_text())["CLIP_stop_at_last_layers"] == 4
        assert not page.js_errors
