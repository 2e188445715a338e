"""Pasting an infotext in a real browser: hires fix is visibly on, settings it names show as "Override settings"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

INFOTEXT = ("a lighthouse\nNegative prompt: rain\nSteps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, "
            "Seed: 42, Size: 64x64, Model: tiny, Denoising strength: 0.5, Clip skip: 2, ENSD: 31337, "
            "Hires upscale: 1, Hires steps: 1, Hires upscaler: Latent, RNG: CPU")


def test_paste_shows_hires_enabled_and_override_settings(page, tmp_path: Path) -> None:
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny", seed=3)
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.locator("#sd_model_status").filter(has_text="Loaded").wait_for(timeout=60000)
        override = page.locator("#txt2img_override_settings")
        assert not override.is_visible()  # nothing to override before a paste
        page.locator("#txt2img_prompt textarea").fill(INFOTEXT)
        page.locator("#paste").click()
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value === 'a lighthouse'",
                               timeout=30000)
        # Hires fix was turned on: the header says so and the accordion is open with Enable ticked.
        header = page.locator("#txt2img_hr .label-wrap").first
        page.locator("#txt2img_hr .label-wrap").filter(has_text="(enabled)").wait_for(timeout=30000)
        assert page.locator("#txt2img_enable_hr input").is_checked()
        assert page.locator("#txt2img_enable_hr").is_visible()
        assert "(enabled)" not in page.locator("#txt2img_refiner .label-wrap").first.inner_text()
        # The settings the infotext names, with values other than the current ones, are listed.
        override.wait_for(state="visible", timeout=30000)
        assert "Clip skip: 2" in override.inner_text() and "ENSD: 31337" in override.inner_text()
        # ... and used for this generation.
        page.locator("#txt2img_generate").click()
        info = page.locator("#html_info_txt2img")
        info.filter(has_text="a lighthouse").wait_for(timeout=120000)
        assert "Clip skip: 2" in info.inner_text() and "ENSD: 31337" in info.inner_text()
        assert "Hires upscale: 1" in info.inner_text() and "RNG: CPU" in info.inner_text()
        # Only for it: the stored settings are unchanged.
        stored = json.loads((tmp_path / "config.json").read_text())
        assert stored.get("CLIP_stop_at_last_layers", 1) == 1 and stored.get("eta_noise_seed_delta", 0) == 0
        # Unticking Enable takes the mark off the header.
        page.locator("#txt2img_enable_hr input").uncheck()
        page.wait_for_function("!document.querySelector('#txt2img_hr .label-wrap').innerText.includes('enabled')",
                               timeout=30000)
        assert header.inner_text().strip().startswith("Hires. fix")
        assert not page.js_errors
