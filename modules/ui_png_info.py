"""The PNG Info tab: every metadata item of an uploaded image, generation parameters first, safely escaped."""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import gradio as gr

from modules.errors import WebUIError
from modules.image_metadata import read_info_from_image
from modules.infotext import parse_generation_parameters

if TYPE_CHECKING:
    from PIL import Image

    from modules.runtime import Runtime

log = logging.getLogger(__name__)

NOTHING_FOUND = "Nothing found in the image."
# Inline so the tab needs no shared stylesheet: keep the text's line breaks but wrap long lines (one-line JSON).
_PRE_STYLE = "white-space: pre-wrap; overflow-wrap: anywhere; margin: 0 0 0.8em 0; font-size: 0.85em"


class PngInfoError(WebUIError, ValueError):
    """The upload could not be read as an image; the message says why in plain words."""


@dataclass
class ImageMetadata:
    """What an image file carries: A1111 infotext, the other items, and a note when the file is damaged."""

    geninfo: str | None
    items: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


def _describe_open_error(e: Exception) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "This file is not an image (or not in a format Pillow can read)."
    if isinstance(e, Image.DecompressionBombError):
        return f"The image has too many pixels to be opened safely ({e})."
    if isinstance(e, FileNotFoundError):
        return "The uploaded file is gone; upload it again."
    return f"The image file is damaged and cannot be read ({type(e).__name__}: {e})."


def read_image_metadata(source: str | os.PathLike[str] | BinaryIO | Image.Image) -> ImageMetadata:
    """Metadata of an image file or an opened image; raises PngInfoError if it is not a readable image.

    Pixels are decoded as well, because Pillow only reads the text chunks that follow the image data
    once it has gone through it; if that fails (truncated download) the metadata found before the
    damage is still returned, with a warning.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        geninfo, items = read_info_from_image(source)
        return ImageMetadata(geninfo, items)
    try:
        image = Image.open(source)
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for bad files
        raise PngInfoError(_describe_open_error(e)) from e
    with image:
        warning = None
        try:
            image.load()
        except Exception as e:
            log.info("PNG Info: %s is damaged: %s", source, e)
            warning = (
                f"The image data is damaged or truncated ({e}); only the metadata found before the damage is shown."
            )
        try:
            geninfo, items = read_info_from_image(image)
        except Exception as e:
            raise PngInfoError(f"The image metadata cannot be read ({type(e).__name__}: {e}).") from e
    return ImageMetadata(geninfo, items, warning)


def pnginfo_params(image: str | os.PathLike[str] | Image.Image | None) -> dict[str, Any]:
    """Parsed generation parameters of an image (A1111 keys: "Prompt", "Steps", "Size-1"...), {} if none.

    This is what the "Send to txt2img/img2img" paste reuses. Raises PngInfoError for a file that is
    not a readable image. Styles are not extracted here: that depends on the `infotext_styles` setting.
    """
    if image is None:
        return {}
    geninfo = read_image_metadata(image).geninfo
    if not geninfo or not isinstance(geninfo, str):
        return {}
    return parse_generation_parameters(geninfo)


def _text_of(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes of binary data>"
    return str(value)


def render_metadata_html(meta: ImageMetadata) -> str:
    """Each item as a bold key and its text, escaped (metadata is untrusted input), `parameters` first."""
    entries: dict[str, Any] = {}
    if meta.geninfo:
        entries["parameters"] = meta.geninfo
    entries.update((str(k), v) for k, v in meta.items.items() if k != "parameters")
    parts = []
    if meta.warning:
        parts.append(f'<div class="pnginfo-warning sd-status-warning">{html.escape(meta.warning)}</div>')
    for key, value in entries.items():
        parts.append(
            f'<div class="pnginfo-item"><p><b>{html.escape(key)}</b></p>'
            f'<pre class="pnginfo-text" style="{_PRE_STYLE}">{html.escape(_text_of(value))}</pre></div>'
        )
    if not entries:
        parts.append(f'<div class="pnginfo-empty"><p>{html.escape(NOTHING_FOUND)}</p></div>')
    return "\n".join(parts)


def error_html(message: str) -> str:
    return f'<div class="pnginfo-error sd-status-error">{html.escape(message)}</div>'


def _upload_source(value: Any) -> str | io.BytesIO | None:
    """The file behind an Image component's raw (not preprocessed) value."""
    if isinstance(value, dict):
        if value.get("path"):
            return str(value["path"])
        url = value.get("url") or ""
        if url.startswith("data:") and "," in url:
            return io.BytesIO(base64.b64decode(url.split(",", 1)[1]))
        return None
    return str(value) if value else None


def run_pnginfo(value: Any) -> tuple[str, str]:
    """(HTML, raw infotext) for the tab; never raises, a bad upload gives a message.

    `value` is the upload as gradio hands it over without preprocessing (a dict with the cached
    file's `path`), or a path: gr.Image's own preprocessing would open the file with Pillow and fail
    with a generic error for a non-image before this function could explain the problem.
    """
    try:
        source = _upload_source(value)
        if source is None:
            return "", ""
        meta = read_image_metadata(source)
    except PngInfoError as e:
        return error_html(str(e)), ""
    except Exception as e:  # a bug must not leave the user with a silent tab
        log.exception("PNG Info failed on %r", value)
        return error_html(f"Could not read the image metadata: {type(e).__name__}: {e}"), ""
    geninfo = meta.geninfo if isinstance(meta.geninfo, str) else ""
    return render_metadata_html(meta), geninfo


@dataclass
class PngInfoTab:
    """The tab's components, for wiring "Send to ..." buttons."""

    image: gr.Image
    html: gr.HTML
    generation_info: gr.Textbox


def create_png_info_tab(runtime: Runtime, extra_controls: Callable[[PngInfoTab], None] | None = None) -> PngInfoTab:
    """Build the "PNG Info" tab; `extra_controls` is called inside the result column (e.g. to add send buttons)."""
    with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"), gr.Row(equal_height=False):
        with gr.Column(variant="panel"):
            image = gr.Image(
                label="Source",
                elem_id="pnginfo_image",
                type="filepath",  # the untouched upload: a decoded image would lose its metadata
                image_mode=None,
                sources=["upload", "clipboard"],
                height=480,
            )
        with gr.Column(variant="panel"):
            info_html = gr.HTML(elem_id="pnginfo_html")
            generation_info = gr.Textbox(visible="hidden", elem_id="pnginfo_generation_info", label="")
            tab = PngInfoTab(image, info_html, generation_info)
            if extra_controls is not None:
                extra_controls(tab)
    # Reading metadata needs no model: do not wait behind a generation in the queue.
    image.change(
        run_pnginfo,
        inputs=[image],
        outputs=[info_html, generation_info],
        api_visibility="private",
        preprocess=False,  # see run_pnginfo
        concurrency_limit=None,
        show_progress="minimal",
    )
    return tab
