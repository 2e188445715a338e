"""A Gradio 3 extension in a real browser: its tab (#tab_<id>), _js= handlers, and A1111's writable JS globals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

EXT = Path(__file__).resolve().parent.parent / "fixtures" / "gradio3_extension"


def test_gradio3_extension_tab_runs_its_js_and_python(page, tmp_path: Path) -> None:
    shutil.copytree(EXT, tmp_path / "extensions" / "gradio3-extension")
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.get_by_role("tab", name="Gradio 3 tab").click(timeout=60000)
        page.wait_for_selector("#tab_gradio3_tab", state="attached", timeout=30000)  # A1111's id for its tab
        assert page.evaluate("typeof requestProgress === 'function' && typeof modalSaveImage === 'function'")
        page.locator("#g3_text textarea, #g3_text input").first.fill("hello")
        page.locator("#g3_go").click()
        page.wait_for_function("window.g3SubmitCalled === 'task(from-extension)'", timeout=30000)
        result = page.locator("#g3_result textarea, #g3_result input").first
        page.wait_for_function("(el) => el.value === 'task(from-extension):HELLO'", arg=result.element_handle(),
                               timeout=30000)
        assert page.js_errors == []
