"""The quicksettings row above the tabs: checkpoint dropdown with refresh, load progress and errors."""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from modules.errors import WebUIError
from modules.runtime import Runtime

log = logging.getLogger(__name__)


def _status_html(runtime: Runtime) -> str:
    text = runtime.model_status or ""
    if not runtime.checkpoint_titles():
        css = "sd-status sd-status-warning"
    elif runtime.models.last_error and runtime.models.last_error == text:
        css = "sd-status sd-status-error"
    else:
        css = "sd-status"
    return f'<div class="{css}">{html.escape(text)}</div>' if text else ""


def checkpoint_choices(runtime: Runtime) -> list[tuple[str, str]]:
    """(label, value) pairs: the label is A1111's title, the value the file's name.

    A title gains its hash when the file is first loaded, in the background; a value that changed with it
    would make the dropdown's pending event carry a title no longer among the choices (the "not in the list
    of choices" error on the first switch to a new file). The name never changes.
    """
    return [(info.title, info.name) for info in runtime.registry.list()]


def current_checkpoint(runtime: Runtime) -> str | None:
    info = runtime.models.current_info
    return info.name if info else None


def create_quicksettings(runtime: Runtime) -> dict[str, Any]:
    """Build the row; returns its components so webui can refresh them on page load."""
    with gr.Row(elem_id="quicksettings", equal_height=True):
        checkpoint = gr.Dropdown(
            label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
            choices=checkpoint_choices(runtime), value=current_checkpoint(runtime), interactive=True,
            allow_custom_value=False, scale=4,
        )
        refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", elem_classes=["tool"], scale=0,
                            min_width=40)
        vae = _vae_dropdown(runtime)
    status = gr.HTML(_status_html(runtime), elem_id="sd_model_status")
    offer = not runtime.cmd_opts.no_download_sd_model
    download = gr.Button("Download Stable Diffusion 1.5 (about 4 GB) into the checkpoint folder",
                         elem_id="sd_model_download", visible=offer and not runtime.checkpoint_titles())

    def on_refresh() -> tuple[Any, str]:
        titles = runtime.refresh_checkpoints()
        if titles and not runtime.models.current_info:
            runtime.model_status = f"{len(titles)} checkpoint(s) found; pick one to load it."
        return gr.update(choices=checkpoint_choices(runtime), value=current_checkpoint(runtime)), _status_html(runtime)

    def on_change(name: str | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, str]:  # noqa: B008
        if not name or name == current_checkpoint(runtime):
            return gr.update(), _status_html(runtime)
        info = runtime.registry.get(name)
        title = info.title if info else name
        progress(0, desc=f"Loading {title}")
        try:
            runtime.switch_checkpoint(name, progress=lambda msg: progress(0.5, desc=msg))
        except WebUIError as e:
            # The previous model keeps serving; the dropdown goes back to it and the reason is shown.
            runtime.model_status = str(e)
            gr.Warning(str(e))
        except Exception as e:  # never let a traceback reach the page
            log.exception("checkpoint switch failed")
            runtime.model_status = f"Loading {title} failed: {type(e).__name__}: {e}"
            gr.Warning(runtime.model_status)
        return gr.update(choices=checkpoint_choices(runtime), value=current_checkpoint(runtime)), _status_html(runtime)

    def on_download(progress: gr.Progress = gr.Progress()) -> tuple[Any, str, Any]:  # noqa: B008
        try:
            runtime.download_default_model(lambda done, total: progress(
                (done / total) if total else 0, desc=f"Downloading {done / 1e6:.0f} MB"))
        except WebUIError as e:
            runtime.model_status = str(e)
        titles = runtime.checkpoint_titles()
        return (gr.update(choices=checkpoint_choices(runtime), value=current_checkpoint(runtime)),
                _status_html(runtime), gr.update(visible=offer and not titles))

    download.click(on_download, outputs=[checkpoint, status, download], api_visibility="private")
    refresh.click(on_refresh, outputs=[checkpoint, status], api_visibility="private")
    checkpoint.input(on_change, inputs=[checkpoint], outputs=[checkpoint, status], api_visibility="private",
                      show_progress="full")

    def on_load() -> tuple[Any, str]:
        return gr.update(choices=checkpoint_choices(runtime), value=current_checkpoint(runtime)), _status_html(runtime)

    # The start-up load (and switches made through the API) happen outside this page's events: poll cheaply
    # and update the row only when something changed.
    seen = gr.State(None)
    timer = gr.Timer(1.0)

    def on_tick(last: Any) -> tuple[Any, str, Any]:
        now = (current_checkpoint(runtime), runtime.model_status, tuple(checkpoint_choices(runtime)))
        if now == last:
            return gr.skip(), gr.skip(), last
        return gr.update(choices=list(now[2]), value=now[0]), _status_html(runtime), now

    timer.tick(on_tick, inputs=[seen], outputs=[checkpoint, status, seen], api_visibility="private",
               show_progress="hidden", concurrency_limit=None, queue=False)

    return {"checkpoint": checkpoint, "refresh": refresh, "status": status, "on_load": on_load, "vae": vae}


def _vae_dropdown(runtime: Runtime) -> Any:
    """`sd_vae` (Automatic / None / file) when it is in `quicksettings_list`; applied at the next generation."""
    if "sd_vae" not in (runtime.opts.get("quicksettings_list") or []):
        return None
    vaes = runtime.vaes
    dropdown = gr.Dropdown(label="SD VAE", elem_id="setting_sd_vae", choices=vaes.choices(),
                           value=runtime.opts.get("sd_vae", "Automatic"), interactive=True, scale=2)
    refresh = gr.Button("🔄", elem_id="refresh_sd_vae", elem_classes=["tool"], scale=0, min_width=40)

    def on_change(value: str | None) -> Any:
        if value:
            try:
                runtime.opts.set("sd_vae", value)
                runtime.save_settings()
            except WebUIError as e:
                gr.Warning(str(e))
        return gr.update(value=runtime.opts.get("sd_vae", "Automatic"))

    def on_refresh() -> Any:
        vaes.refresh()
        return gr.update(choices=vaes.choices(), value=runtime.opts.get("sd_vae", "Automatic"))

    dropdown.input(on_change, inputs=[dropdown], outputs=[dropdown], api_visibility="private")
    refresh.click(on_refresh, outputs=[dropdown], api_visibility="private")
    return dropdown
