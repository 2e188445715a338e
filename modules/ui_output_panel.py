"""Buttons under a gallery: open the output folder, Save, Zip (A1111's output panel) and Copy infotext."""

from __future__ import annotations

import html
import subprocess
import sys
from typing import Any

import gradio as gr

from modules.errors import WebUIError
from modules.output_actions import save_selected
from modules.runtime import Runtime


def open_folder(runtime: Runtime, key: str) -> str:
    """Open the output folder in the desktop's file manager (only for a local, unlocked UI, as A1111)."""
    opts = runtime.cmd_opts
    if opts.hide_ui_dir_config or opts.webui_is_non_local:
        return "<p class='error'>Opening folders is disabled for this server.</p>"
    folder = runtime.output_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    try:
        subprocess.Popen([opener, str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        return f"<p class='error'>Could not open {html.escape(str(folder))}: {html.escape(str(e))}</p>"
    return f"<p>Opened {html.escape(str(folder))}</p>"


def create_output_buttons(runtime: Runtime, tab: str, c: dict[str, Any]) -> None:
    with gr.Row(elem_id=f"image_buttons_{tab}", elem_classes=["image-buttons"]):
        open_btn = gr.Button("📂", elem_id=f"{tab}_open_folder", elem_classes=["tool"], min_width=40,
                             visible=not runtime.cmd_opts.hide_ui_dir_config)
        save_btn = gr.Button("💾", elem_id=f"save_{tab}", elem_classes=["tool"], min_width=40)
        zip_btn = gr.Button("🗃️", elem_id=f"save_zip_{tab}", elem_classes=["tool"], min_width=40)
        copy_btn = gr.Button("Copy infotext", elem_id=f"{tab}_copy_infotext", size="sm", scale=0, min_width=110)
    files = gr.File(None, file_count="multiple", interactive=False, visible=False, elem_id=f"download_files_{tab}")
    selected = gr.State(None)

    def on_select(evt: gr.SelectData) -> int:
        return evt.index

    def paths_of(gallery: Any) -> list[str]:
        out = []
        for item in gallery or []:
            value = item[0] if isinstance(item, (list, tuple)) else item
            out.append(value if isinstance(value, str) else getattr(value, "path", None) or value["image"]["path"])
        return out

    def do_save(gallery: Any, info: str, index: int | None, make_zip: bool) -> tuple[Any, str]:
        try:
            written = save_selected(runtime.output_dir("outdir_save"), paths_of(gallery), info, index, runtime.opts,
                                    make_zip=make_zip)
        except (WebUIError, OSError) as e:
            return gr.update(visible=False), f"<p class='error'>{html.escape(str(e))}</p>"
        return gr.update(value=written, visible=True), f"<p>Saved: {html.escape(', '.join(written))}</p>"

    private = {"api_visibility": "private"}
    c["gallery"].select(on_select, outputs=[selected], **private)
    save_btn.click(lambda g, i, s: do_save(g, i, s, False), inputs=[c["gallery"], c["generation_info"], selected],
                   outputs=[files, c["html_log"]], **private)
    zip_btn.click(lambda g, i, s: do_save(g, i, s, True), inputs=[c["gallery"], c["generation_info"], selected],
                  outputs=[files, c["html_log"]], **private)
    open_btn.click(lambda: open_folder(runtime, "outdir_txt2img_samples"), outputs=[c["html_log"]], **private)
    # In the browser only: the plain infotext shown under the gallery to the clipboard.
    copy_btn.click(None, inputs=[c["infotext"]], js=_COPY_JS, **private)


_COPY_JS = """(text) => {
  if (text && navigator.clipboard) {
    navigator.clipboard.writeText(text).catch((e) => console.warn('copy infotext:', e.message));
  }
  return [];
}"""
