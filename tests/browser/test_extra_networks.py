"""Extra-network cards in a real browser: previews, search, card click inserts the tag, metadata editor, escaping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"


def write_lora(folder: Path, name: str, meta: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({f"{KEY}.lora_up.weight": torch.zeros(32, 2), f"{KEY}.lora_down.weight": torch.zeros(2, 32)},
              str(path), metadata=meta)
    return path


def test_lora_cards_search_insert_edit_and_escape(page, tmp_path: Path) -> None:
    write_tiny_checkpoint("sd1", tmp_path / "models" / "Stable-diffusion", "tiny", seed=3)
    lora_dir = tmp_path / "models" / "Lora"
    first = write_lora(lora_dir / "styles", "inkstyle", {"ss_output_name": "ink"})
    Image.new("RGB", (32, 32), "red").save(first.with_suffix(".png"))
    evil = write_lora(lora_dir, "other")
    evil.with_suffix(".json").write_text(json.dumps(
        {"description": '<img src=x onerror="window.pwned=1"><b id="injected">bold</b>'}), encoding="utf-8")
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.locator("#txt2img_lora_tab-button").click()
        cards = page.locator("#txt2img_lora_cards .card")
        cards.first.wait_for(timeout=30000)
        assert cards.count() == 2
        # Preview image from name.png, rendered as a thumbnail.
        assert page.locator("#txt2img_lora_cards .card[data-name='inkstyle'] img.preview").count() == 1
        # The description from file metadata is text, not markup.
        other = page.locator("#txt2img_lora_cards .card[data-name='other'] .description")
        assert "<b id=\"injected\">" in other.inner_text()
        assert page.locator("#injected").count() == 0 and not page.evaluate("window.pwned === 1")

        # Search filters the cards.
        page.locator("#txt2img_lora_search textarea, #txt2img_lora_search input").first.fill("ink")
        page.wait_for_function("document.querySelectorAll('#txt2img_lora_cards .card').length === 1",
                               timeout=15000)

        # A click appends the tag (alias from ss_output_name), a second click removes it.
        prompt = page.locator("#txt2img_prompt textarea")
        prompt.fill("a cat")
        page.locator("#txt2img_lora_cards .card[data-name='inkstyle'] .name").click()
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value.includes('<lora:ink:1>')",
                               timeout=15000)
        assert prompt.input_value() == "a cat <lora:ink:1>"
        page.locator("#txt2img_lora_cards .card[data-name='inkstyle'] .name").click()
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value === 'a cat'",
                               timeout=15000)

        # Metadata editor saves inkstyle.json beside the file; the next click uses the preferred weight.
        page.locator("#txt2img_lora_cards .card[data-name='inkstyle']").hover()
        page.locator("#txt2img_lora_cards .card[data-name='inkstyle'] .card-edit").click()
        description = page.locator("#txt2img_lora_editor_description textarea")
        description.wait_for(timeout=15000)
        description.fill("Inky lines")
        page.locator("#txt2img_lora_editor_activation textarea, #txt2img_lora_editor_activation input").first \
            .fill("ink style")
        weight = page.locator("#txt2img_lora_editor_weight input")
        weight.fill("0.7")
        weight.press("Tab")
        page.locator("#txt2img_lora_editor_save").click()
        page.locator("#txt2img_lora_status").filter(has_text="Saved").wait_for(timeout=15000)
        saved = json.loads(first.with_suffix(".json").read_text(encoding="utf-8"))
        assert saved["description"] == "Inky lines" and saved["activation text"] == "ink style"
        assert saved["preferred weight"] == 0.7
        page.locator("#txt2img_lora_cards .card[data-name='inkstyle'] .name").click()
        page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value"
                               ".includes('<lora:ink:0.7> ink style')", timeout=15000)
        assert not page.js_errors
