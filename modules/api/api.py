"""A1111's `modules.api.api` names extensions import: base64 image helpers and the `Api` route holder."""

from __future__ import annotations

from typing import Any

from PIL import Image

from modules.api import images as _images

__all__ = ["Api", "decode_base64_to_image", "encode_pil_to_base64"]


def decode_base64_to_image(encoding: str) -> Image.Image:
    """Raw base64 or a data URI -> PIL image; bad input raises ValidationError naming the field (A1111: HTTP 500)."""
    return _images.decode_base64_to_image(encoding)


def encode_pil_to_base64(image: Image.Image) -> bytes:
    """PNG/JPEG/WebP per the `samples_format` setting, infotext kept; bytes, as A1111 returns."""
    fmt = "png"
    from modules import shared

    if shared._runtime is not None:
        fmt = str(shared.opts.get("samples_format", "png") or "png")
        if fmt not in ("png", "jpg", "jpeg", "webp"):
            fmt = "png"
    return _images.encode_pil_to_base64(image, fmt).encode("ascii")


class Api:
    """What A1111 builds in `webui.py` for /sdapi/v1: here it only lets an extension add routes beside ours
    (`api.add_api_route("/sdapi/v1/my-ext/x", fn, methods=["POST"])`), under the same --api-auth."""

    def __init__(self, app: Any, queue_lock: Any = None) -> None:
        self.app = app
        self.queue_lock = queue_lock

    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        self.app.add_api_route(path, endpoint, **kwargs)
