"""Builds the whole Gradio page: quicksettings row above the tabs, one module per tab."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import gradio as gr

from modules import ui_common
from modules.paths import SCRIPT_PATH
from modules.runtime import Runtime
from modules.shared_options import GRADIO_THEMES
from modules.ui_extensions import create_extension_tabs, create_extensions_tab
from modules.ui_extras import create_extras_tab, wire_send_to_extras
from modules.ui_footer import footer_html
from modules.ui_img2img import create_img2img_tab
from modules.ui_loadsave import UiLoadsave
from modules.ui_merger import create_merger_tab
from modules.ui_notification import notification_audio_html
from modules.ui_png_info import PngInfoTab, create_png_info_tab
from modules.ui_quicksettings import create_quicksettings
from modules.ui_settings import create_settings_tab, options_html
from modules.ui_train import create_train_tab
from modules.ui_txt2img import create_txt2img_tab

log = logging.getLogger(__name__)

# The page's styles live in style.css at the root (A1111's place for them); webui.py hands them to Gradio.
CSS = (SCRIPT_PATH / "style.css").read_text(encoding="utf-8")


def javascript_files(runtime: Runtime | None = None) -> list[Path]:
    """Our page scripts first (they define gradioApp/onUiLoaded), then enabled extensions' javascript/*.js."""
    files = sorted((SCRIPT_PATH / "javascript").glob("*.js"))
    for ext in getattr(runtime, "extensions", None) or []:
        if ext.enabled:
            files += ext.javascript_files()
    return files


def localization_script(runtime: Runtime | None) -> str:
    """`window.localization = {...}` from the selected localization's JSON files; javascript/localization.js uses it."""
    from modules import extensions
    from modules.script_loading import localizations_root

    name = runtime.opts.get("localization", "None") if runtime is not None else "None"
    mapping: dict[str, str] = {}
    if name and name != "None":
        files = extensions.list_localizations(runtime.extensions, localizations_root(runtime.cmd_opts)).get(name, [])
        mapping, errors = extensions.load_localization(files)
        if not files:
            errors.append(f"localization {name!r} is selected in Settings but no localizations/{name}.json exists")
        for problem in errors:  # the page is already built when its head is: the log names the problem
            log.warning("%s", problem)
    # "</" would end the <script> element early if a translation contained "</script>".
    data = json.dumps(mapping, ensure_ascii=False).replace("</", "<\\/")
    return f'<script data-source="localization">window.localization = {data};</script>'


def gradio_theme(runtime: Runtime) -> gr.themes.ThemeClass:
    """The `gradio_theme` setting as one of Gradio's own themes (an unknown name falls back to Default)."""
    name = str(runtime.opts.get("gradio_theme", "Default") or "Default")
    if name not in GRADIO_THEMES:
        log.warning("Unknown gradio_theme %r; using Default (built-in themes: %s)", name, ", ".join(GRADIO_THEMES))
        name = "Default"
    return getattr(gr.themes, name)()


def _forced_theme_script(runtime: Runtime | None) -> str:
    """--theme light/dark: Gradio picks the colour scheme from `?__theme=`, so the page reloads once with it."""
    theme = getattr(getattr(runtime, "cmd_opts", None), "theme", None)
    if theme not in ("light", "dark"):
        return ""
    return ('<script data-source="theme">(function () { var u = new URL(window.location.href);'
            f' if (u.searchParams.get("__theme") !== "{theme}") {{ u.searchParams.set("__theme", "{theme}");'
            ' window.location.replace(u.toString()); } })();</script>')


def head_html(runtime: Runtime | None = None) -> str:
    """Scripts inlined into <head>, then extensions' style.css and the user's user.css (A1111's order)."""
    parts = [_forced_theme_script(runtime), localization_script(runtime)]
    for path in javascript_files(runtime):
        kind = ' type="module"' if path.suffix == ".mjs" else ""
        parts.append(f"<script{kind} data-source=\"{html.escape(path.name)}\">\n"
                     f"{path.read_text(encoding='utf-8')}\n</script>")
    css_files = [e.style_file() for e in getattr(runtime, "extensions", None) or [] if e.enabled]
    if runtime is not None:
        css_files.append(runtime.paths.data_dir / "user.css")
    for css in css_files:
        if css is not None and css.is_file():
            parts.append(f"<style data-source=\"{html.escape(str(css.parent.name))}\">\n"
                         f"{css.read_text(encoding='utf-8')}\n</style>")
    return "\n".join(parts)


def create_ui(runtime: Runtime) -> gr.Blocks:
    from modules import script_callbacks

    script_callbacks.before_ui_callback()
    extension_tabs = script_callbacks.ui_tabs_callback()  # built outside the page, rendered as tabs below
    from modules import infotext_utils
    from modules.ui_component_callbacks import component_callbacks

    runners = lambda: [runtime.scripts_txt2img, runtime.scripts_img2img]  # noqa: E731 - A1111 asks both
    with component_callbacks(runners), gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        quick = create_quicksettings(runtime)
        # The settings for page scripts (hidden by style.css); refreshed on load and after Apply.
        opts_json = gr.HTML(options_html(runtime), elem_id="settings_json", container=False)
        for warning in runtime.warnings:
            gr.HTML(f'<div class="sd-status sd-status-warning">{html.escape(warning)}</div>',
                    elem_classes=["startup-warning"])
        with gr.Tabs(elem_id="tabs") as tabs:
            t2i = create_txt2img_tab(runtime)
            i2i = create_img2img_tab(runtime)
            # The fields "Send to txt2img/img2img" buttons of extensions fill (A1111's paste fields).
            for tabname, c, init in (("txt2img", t2i, None), ("img2img", i2i, i2i["init_img"])):
                infotext_utils.add_paste_fields(tabname, init, [(c[k], label) for k, label in PASTE_LABELS.items()],
                                                c.get("override_settings"))
            to_extras: list = []

            def send_buttons(tab: PngInfoTab) -> None:
                # A1111's "Send to txt2img": fill every field from the image's infotext and switch tabs.
                button = gr.Button("Send to txt2img", elem_id="txt2img_tab")
                button.click(t2i["paste_fn"], inputs=[tab.generation_info], outputs=t2i["paste_outputs"],
                             api_visibility="private").then(lambda: gr.Tabs(selected="txt2img"), outputs=[tabs],
                                                            api_visibility="private")
                to_img2img = gr.Button("Send to img2img", elem_id="img2img_tab")
                to_img2img.click(i2i["paste_fn"], inputs=[tab.generation_info], outputs=i2i["paste_outputs"],
                                 api_visibility="private").then(
                    lambda image: (image, gr.Tabs(selected="img2img"), gr.Tabs(selected="img2img_img2img_tab"), 0),
                    inputs=[tab.image], outputs=[i2i["init_img"], tabs, i2i["mode_tabs"], i2i["mode"]],
                    api_visibility="private")
                to_extras.append((gr.Button("Send to extras", elem_id="extras_tab"), tab.image))

            create_png_info_tab(runtime, send_buttons)
            ui_common.send_to(t2i, i2i, tabs)
            ui_common.send_to(i2i, i2i, tabs)
            create_merger_tab(runtime)
            create_train_tab(runtime, t2i)
            wire_send_to_extras(to_extras, create_extras_tab(runtime), tabs)
            create_extension_tabs(extension_tabs)
            settings = create_settings_tab(runtime)
            create_extensions_tab(runtime)
        footer = gr.HTML(footer_html(runtime), elem_id="sd_footer", container=False)
        gr.HTML(notification_audio_html(runtime), elem_id="notification_audio_box", container=False)
        demo.load(quick["on_load"], outputs=[quick["checkpoint"], quick["status"]], api_visibility="private")
        # The footer names the loaded checkpoint's hash: refreshed whenever the checkpoint shown changes.
        for event in (demo.load, quick["checkpoint"].change):
            event(lambda: footer_html(runtime), outputs=[footer], api_visibility="private", show_progress="hidden")
        # Gradio serves the values the page was built with: every new page asks for the current ones.
        demo.load(settings["load"], outputs=settings["outputs"], api_visibility="private", show_progress="hidden")
        for event in (demo.load, settings["applied"].then):
            event(lambda: options_html(runtime), outputs=[opts_json], api_visibility="private", show_progress="hidden")
        infotext_utils.connect_paste_params_buttons()
    # ui-config.json: the user's defaults, ranges and hidden controls; the controls it lacks are added to it.
    runtime.ui_loadsave = UiLoadsave(runtime.paths.ui_config_file)
    runtime.ui_loadsave.apply(demo, runners())
    return demo


# Component -> infotext key for the paste fields both generation tabs announce.
PASTE_LABELS = {"prompt": "Prompt", "negative_prompt": "Negative prompt", "steps": "Steps",
                "sampler_name": "Sampler", "scheduler": "Schedule type", "cfg_scale": "CFG scale", "seed": "Seed",
                "width": "Size-1", "height": "Size-2", "denoising_strength": "Denoising strength"}


# --- A1111 names extensions import from `modules.ui` -------------------------------------------------------------
from modules import ui_gradio3_compat  # noqa: E402,F401 - registers the Gradio 3 translation for extension UIs
from modules.ui_common import (  # noqa: E402,F401
    apply_style_symbol,
    clear_prompt_symbol,
    create_output_panel,
    create_refresh_button,
    folder_symbol,
    gr_show,
    paste_symbol,
    plaintext_to_html,
    refresh_symbol,
    save_style_symbol,
)

txt2img_paste_fields: list = []
"""A1111 fills these with (component, infotext key) pairs; extensions append theirs. (Ours: infotext_utils.)"""
img2img_paste_fields: list = []


def versions_html() -> str:
    """The footer's version line (A1111: python, torch, xformers, gradio, checkpoint)."""
    import platform

    import torch

    from modules import launch_utils

    return (f"version: {launch_utils.git_tag()} &#x2000;•&#x2000; python: {platform.python_version()} &#x2000;•&#x2000; "
            f"torch: {torch.__version__} &#x2000;•&#x2000; gradio: {gr.__version__}")


def gr_show_and_load(value: object = None, visible: bool = True) -> object:
    return gr.update(visible=visible, value=value) if value is not None else gr.update(visible=visible)
