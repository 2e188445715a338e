"""Prompt editing keys in a real browser: Ctrl+Up/Down weights (keyedit_* settings) and Alt+Left/Right order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def select(page, start: int, end: int) -> None:
    page.evaluate("([s, e]) => { const t = document.querySelector('#txt2img_prompt textarea'); t.focus();"
                  " t.setSelectionRange(s, e); }", [start, end])


def value(page) -> str:
    return page.locator("#txt2img_prompt textarea").input_value()


def test_ctrl_up_down_weights_and_alt_left_right_order(page, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"keyedit_precision_extra": 0.25}))
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        box = page.locator("#txt2img_prompt textarea")
        box.fill("a cat, a dog")
        select(page, 2, 5)  # "cat"
        box.press("Control+ArrowUp")
        assert value(page) == "a (cat:1.1), a dog"
        box.press("Control+ArrowUp")
        assert value(page) == "a (cat:1.2), a dog"
        box.press("Control+ArrowDown")
        box.press("Control+ArrowDown")
        assert value(page) == "a cat, a dog"  # weight 1: the brackets go
        # Nothing selected: the word at the caret.
        select(page, 9, 9)  # in "dog"
        box.press("Control+ArrowDown")
        assert value(page) == "a cat, a (dog:0.9)"

        # Alt+Right / Alt+Left move the element at the caret.
        select(page, 1, 1)  # in "a cat"
        box.press("Alt+ArrowRight")
        assert value(page) == "a (dog:0.9), a cat"
        box.press("Alt+ArrowLeft")
        assert value(page) == "a cat, a (dog:0.9)"

        # An extra network's weight moves by keyedit_precision_extra (0.25 here, from config.json).
        box.fill("<lora:ink:1> a cat")
        select(page, 4, 4)
        box.press("Control+ArrowUp")
        assert value(page) == "<lora:ink:1.25> a cat"

        # The server sees the edited prompt: the style editor's "copy main prompt" reads it back.
        page.locator("#txt2img_edit_style_accordion .label-wrap").first.click()
        page.locator("#txt2img_style_copy").click()
        page.wait_for_function("document.querySelector('#txt2img_edit_style_prompt textarea').value"
                               " === '<lora:ink:1.25> a cat'", timeout=30000)
        assert page.url.startswith(url)  # Alt+Left did not go back in history
        assert not page.js_errors
