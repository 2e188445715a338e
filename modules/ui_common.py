"""Shared UI helpers. (Our own row builders will be added below by the UI engineers.)"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr

# ---------------------------------------------------------------------------------------------------------------
# A1111's `modules.ui_common` names, for extensions (extension-surface.md: save_files, plaintext_to_html,
# create_output_panel, create_refresh_button) and the Gradio side of modules.infotext_utils.
# ---------------------------------------------------------------------------------------------------------------

refresh_symbol = "\U0001f504"  # 🔄
folder_symbol = "\U0001f4c2"  # 📂
save_style_symbol = "\U0001f4be"  # 💾
paste_symbol = "\u2199\ufe0f"  # ↙
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
apply_style_symbol = "\U0001f4cb"  # 📋


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """Escape text into paragraphs, one per line (A1111's helper)."""
    content = "<br>\n".join(html.escape(x) for x in (text or "").split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def gr_show(visible: bool = True) -> dict[str, Any]:
    return gr.update(visible=visible)


def _runtime() -> Any:
    from modules import shared

    return shared._need_runtime("ui_common")


def save_files(js_data: str, images: list[Any], do_make_zip: bool, index: int | None) -> tuple[Any, str]:
    """A1111's Save/Zip handler: save the chosen gallery image(s) with their infotext; (file list, HTML log)."""
    from modules.errors import WebUIError
    from modules.output_actions import save_selected

    rt = _runtime()
    files = []
    for item in images or []:
        value = item[0] if isinstance(item, (list, tuple)) else item
        if isinstance(value, dict):
            value = value.get("name") or value.get("path") or (value.get("image") or {}).get("path")
        files.append(value if isinstance(value, str) else getattr(value, "path", value))
    index = None if index is None or index < 0 else int(index)
    try:
        written = save_selected(rt.output_dir("outdir_save"), files, js_data, index, rt.opts, make_zip=do_make_zip)
    except (WebUIError, OSError) as e:
        return gr.update(visible=False), plaintext_to_html(str(e), "error")
    return gr.update(value=written, visible=True), plaintext_to_html(f"Saved: {written[0]}" if written else "")


def create_refresh_button(refresh_component: Any, refresh_method: Callable[[], Any],
                          refreshed_args: dict[str, Any] | Callable[[], dict[str, Any]], elem_id: str) -> Any:
    """A 🔄 tool button that calls `refresh_method`, then sets `refreshed_args` (or what it returns) on the
    component(s), as A1111's helper of the same name."""
    from modules.ui_components import ToolButton

    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id)
    button.click(fn=refresh, inputs=[], outputs=components, api_visibility="private")
    return button


class OutputPanel:
    """What create_output_panel returns (A1111 1.6+: a dataclass with these fields, also unpackable)."""

    def __init__(self, gallery: Any, generation_info: Any, infotext: Any, html_log: Any) -> None:
        self.gallery, self.generation_info, self.infotext, self.html_log = gallery, generation_info, infotext, html_log
        self.button_upscale = None

    def __iter__(self) -> Any:
        return iter((self.gallery, self.generation_info, self.infotext, self.html_log))


def create_output_panel(tabname: str, outdir: str, toprow: Any = None) -> OutputPanel:
    """A gallery with the generation info and log under it, plus Save/Zip (saving through save_files)."""
    with gr.Column(elem_id=f"{tabname}_results"):
        gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tabname}_gallery", columns=4,
                             interactive=False)
        generation_info = gr.Textbox(visible=False, elem_id=f"generation_info_{tabname}")
        with gr.Row():
            save = gr.Button("Save", elem_id=f"save_{tabname}")
            save_zip = gr.Button("Zip", elem_id=f"save_zip_{tabname}")
        download = gr.File(None, file_count="multiple", interactive=False, visible=False,
                           elem_id=f"download_files_{tabname}")
        infotext = gr.HTML(elem_id=f"html_info_{tabname}", elem_classes="infotext")
        html_log = gr.HTML(elem_id=f"html_log_{tabname}", elem_classes="html-log")
    selected = gr.State(-1)

    def on_select(evt: gr.SelectData) -> int:
        return evt.index

    gallery.select(on_select, outputs=[selected], api_visibility="private")
    for button, make_zip in ((save, False), (save_zip, True)):
        button.click(lambda info, imgs, i, z=make_zip: save_files(info, imgs, z, i),
                     inputs=[generation_info, gallery, selected], outputs=[download, html_log],
                     api_visibility="private")
    return OutputPanel(gallery, generation_info, infotext, html_log)


def create_send_buttons(tabs_list: list[str]) -> dict[str, Any]:
    """infotext_utils.create_buttons: one "Send to <tab>" button per tab (ids `<tab>_tab`, as A1111)."""
    names = {"img2img": "Send to img2img", "inpaint": "Send to inpaint", "extras": "Send to extras",
             "txt2img": "Send to txt2img"}
    return {tab: gr.Button(names.get(tab, f"Send to {tab}"), elem_id=f"{tab}_tab") for tab in tabs_list}


def connect_paste_binding(binding: Any, target: dict[str, Any]) -> None:
    """Wire one ParamBinding: its button parses the source infotext and fills the target tab's fields."""
    from modules import infotext_utils

    fields = list(target.get("fields") or [])
    wanted = set(binding.paste_field_names or [])
    if wanted:
        fields = [f for f in fields if not isinstance(f[1], str) or f[1] in wanted]
    components = [f[0] for f in fields]
    if not components or binding.source_text_component is None:
        return

    def paste(text: str) -> list[Any]:
        params = infotext_utils.parse_generation_parameters(text or "")
        values = infotext_utils.values_for_fields(params, fields)
        return [gr.update() if v is None else gr.update(value=v) for v in values]

    binding.paste_button.click(paste, inputs=[binding.source_text_component], outputs=components,
                               api_visibility="private")
