"""The Checkpoint Merger tab in a real browser: pick A and B, merge, see the result and the new checkpoint listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def pick(page, elem_id: str, title: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=title).click()


def test_merge_in_the_tab(page, tmp_path: Path) -> None:
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1", ckpts, "alpha", seed=1)
    write_tiny_checkpoint("sd1", ckpts, "beta", seed=2)
    with LiveServer(tmp_path, "--no-half", "--skip-load-model-at-start") as url:
        page.goto(url)
        page.get_by_role("tab", name="Checkpoint Merger").click()
        page.locator("#modelmerger_primary_model_name").wait_for()
        # Add difference without C is refused at once, and says which model is missing.
        page.locator("#modelmerger_interp_method").get_by_label("Add difference").check()
        page.locator("#modelmerger_interp_description").filter(has_text="A + (B - C) * M").wait_for(timeout=30000)
        pick(page, "modelmerger_primary_model_name", "alpha.safetensors")
        pick(page, "modelmerger_secondary_model_name", "beta.safetensors")
        page.locator("#modelmerger_merge").click()
        result = page.locator("#modelmerger_result")
        result.filter(has_text="tertiary model (C) is required").wait_for(timeout=30000)
        assert not (ckpts / "alpha + 0.3(beta - ).safetensors").exists()

        page.locator("#modelmerger_interp_method").get_by_label("Weighted sum").check()
        page.locator("#modelmerger_custom_name textarea, #modelmerger_custom_name input").first.fill("browser-merge")
        page.locator("#modelmerger_merge").click()
        result.filter(has_text="Checkpoint saved to").wait_for(timeout=60000)
        assert (ckpts / "browser-merge.safetensors").is_file()
        assert str(ckpts / "browser-merge.safetensors") in result.inner_text()
        # The new checkpoint is offered at once, with its hash.
        page.locator("#modelmerger_primary_model_name input").click()
        options = page.locator("#modelmerger_primary_model_name").get_by_role("option")
        options.first.wait_for()
        assert any(t.startswith("browser-merge.safetensors [") for t in options.all_inner_texts())
        page.keyboard.press("Escape")
        # And by the quicksettings checkpoint list at the top of the page, without a reload or 🔄.
        page.locator("#setting_sd_model_checkpoint input").click()
        quick = page.locator("#setting_sd_model_checkpoint").get_by_role("option")
        quick.filter(has_text="browser-merge.safetensors").first.wait_for(timeout=10000)
        page.keyboard.press("Escape")
        assert not page.js_errors
