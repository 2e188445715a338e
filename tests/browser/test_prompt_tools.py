"""Token counters, the bracket check and styles in the browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def test_token_counter_brackets_and_styles(page, tmp_path: Path) -> None:
    (tmp_path / "styles.csv").write_text('name,prompt,negative_prompt\n"Cinematic","{prompt}, film grain, 35mm",'
                                         '"cartoon"\n', encoding="utf-8")
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        counter = page.locator("#txt2img_token_counter")
        counter.filter(has_text="0/75").wait_for(timeout=30000)
        prompt = page.locator("#txt2img_prompt textarea")
        prompt.fill("a photo of")
        counter.filter(has_text="3/75").wait_for(timeout=30000)
        prompt.fill(", ".join(["cat"] * 40))  # 79 tokens: the limit grows to the next multiple of 75
        counter.filter(has_text="/150").wait_for(timeout=30000)
        prompt.fill("a (cat")
        page.locator("#txt2img_token_counter .token-counter.error").wait_for(timeout=30000)
        assert "round brackets" in page.locator("#txt2img_token_counter .token-counter").get_attribute("title")
        prompt.fill("a (cat)")
        page.locator("#txt2img_token_counter .token-counter:not(.error)").wait_for(timeout=30000)

        # A style from styles.csv is offered; choosing it adds its tokens to the count.
        prompt.fill("a photo of")
        counter.filter(has_text="3/75").wait_for(timeout=30000)
        page.locator("#txt2img_styles input").click()
        page.get_by_role("option", name="Cinematic").click()
        counter.filter(has_text="10/75").wait_for(timeout=30000)
        page.locator("#txt2img_negative_token_counter").filter(has_text="1/75").wait_for(timeout=30000)

        # Save a new style from the editor; it lands in styles.csv.
        page.locator("#txt2img_edit_style_accordion").get_by_text("Edit styles").click()
        page.locator("#txt2img_edit_style_name input").fill("Moody")
        page.locator("#txt2img_edit_style_prompt textarea").fill("dark, moody")
        page.locator("#txt2img_edit_style_save").click()
        page.locator("#txt2img_edit_style_status").filter(has_text="Saved style Moody").wait_for(timeout=30000)
        assert "Moody" in (tmp_path / "styles.csv").read_text(encoding="utf-8")
