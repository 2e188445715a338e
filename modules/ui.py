"""Builds the whole Gradio page: quicksettings row above the tabs, one module per tab."""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from modules.paths import SCRIPT_PATH
from modules.runtime import Runtime
from modules.ui_png_info import PngInfoTab, create_png_info_tab
from modules.ui_quicksettings import create_quicksettings
from modules.ui_settings import create_settings_tab
from modules.ui_txt2img import create_txt2img_tab, paste_values

CSS = """
#quicksettings { gap: 0.4em; align-items: flex-end; }
#quicksettings .tool { max-width: 2.8em; min-width: 2.8em !important; height: 2.4em; }
.sd-status-warning { padding: 0.6em; border-left: 4px solid #e0a000; }
.sd-status-error { padding: 0.6em; border-left: 4px solid #d00; }
.progressDiv { position: relative; height: 1.6em; background: #ddd3; border-radius: 4px; overflow: hidden; }
.progressDiv .progress { height: 100%; background: #e67e22; transition: width 0.3s; white-space: nowrap; }
.progressDiv .progress-text { padding-left: 0.5em; }
#txt2img_toprow textarea { min-height: 4.5em; }
.error { color: #c00; padding: 0.4em 0; }
"""


def javascript_files() -> list[Path]:
    """Our page scripts first (they define gradioApp/onUiLoaded), then extensions' (issue: extensions)."""
    return sorted((SCRIPT_PATH / "javascript").glob("*.js"))


def head_html() -> str:
    parts = []
    for path in javascript_files():
        parts.append(f"<script>\n{path.read_text(encoding='utf-8')}\n</script>")
    return "\n".join(parts)


def create_ui(runtime: Runtime) -> gr.Blocks:
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        quick = create_quicksettings(runtime)
        for warning in runtime.warnings:
            gr.HTML(f'<div class="sd-status sd-status-warning">{html.escape(warning)}</div>',
                    elem_classes=["startup-warning"])
        with gr.Tabs(elem_id="tabs") as tabs:
            t2i = create_txt2img_tab(runtime)

            def send_buttons(tab: PngInfoTab) -> None:
                # A1111's "Send to txt2img": fill every field from the image's infotext and switch tabs.
                button = gr.Button("Send to txt2img", elem_id="txt2img_tab")
                button.click(paste_values, inputs=[tab.generation_info], outputs=t2i["paste_outputs"],
                             api_visibility="private").then(lambda: gr.Tabs(selected="txt2img"), outputs=[tabs],
                                                            api_visibility="private")

            create_png_info_tab(runtime, send_buttons)
            create_settings_tab(runtime)
        demo.load(quick["on_load"], outputs=[quick["checkpoint"], quick["status"]], api_visibility="private")
    return demo
