"""The line under the page (A1111's footer): API · Gradio · Reload UI, then the versions and the checkpoint hash."""

from __future__ import annotations

import html
import platform
from importlib import metadata

from modules.runtime import Runtime


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def footer_html(runtime: Runtime) -> str:
    from modules.processing import VERSION

    api = ("/docs" if getattr(runtime.cmd_opts, "api", False)
           else "https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/API")
    links = [f'<a href="{html.escape(api)}">API</a>', '<a href="https://gradio.app">Gradio</a>',
             '<a href="#" onclick="location.reload(); return false;" id="footer_reload_ui">Reload UI</a>']
    shorthash = runtime.models.shorthash() if runtime.models.current_info else None
    versions = [f"version: {VERSION}", f"python: {platform.python_version()}", f"torch: {_version('torch')}",
                f"diffusers: {_version('diffusers')}", f"gradio: {_version('gradio')}",
                f"checkpoint: {shorthash or 'N/A'}"]
    return (f'<div id="footer" class="sd-footer"><div class="links">{" • ".join(links)}</div>'
            f'<div class="versions">{html.escape(" • ".join(versions))}</div></div>')
