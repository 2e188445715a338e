"""--theme forces Gradio's light or dark colour scheme; the gradio_theme setting picks one of Gradio's themes."""

from __future__ import annotations

import gradio as gr
import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser


def test_theme_flag_forces_dark_mode(page, tmp_path) -> None:
    with LiveServer(tmp_path, "--no-half", "--theme", "dark") as url:
        page.goto(url)
        page.wait_for_url("**__theme=dark**", timeout=30000)
        page.locator("#tabs").wait_for(timeout=60000)
        page.wait_for_function("() => document.body.classList.contains('dark')", timeout=15000)
        assert not page.js_errors


def test_gradio_theme_setting_maps_to_gradios_themes(make_runtime) -> None:
    from modules.ui import gradio_theme

    rt = make_runtime()
    assert type(gradio_theme(rt)) is gr.themes.Default
    rt.opts.set("gradio_theme", "Soft")
    assert type(gradio_theme(rt)) is gr.themes.Soft
    rt.opts.data["gradio_theme"] = "someone/hub-theme"  # a hub theme from an A1111 config.json
    assert type(gradio_theme(rt)) is gr.themes.Default
