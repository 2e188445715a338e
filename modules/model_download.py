"""The one download A1111 offers on its own: SD1.5 when no checkpoint exists, only when the user asks."""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from modules.errors import WebUIError
from modules.safe_load import read_safetensors_header

DEFAULT_MODEL_FILE = "v1-5-pruned-emaonly.safetensors"


def default_model_url() -> str:
    """A1111's default model, honouring HF_ENDPOINT; SD_WEBUI_DEFAULT_MODEL_URL overrides it (mirrors, tests)."""
    explicit = os.environ.get("SD_WEBUI_DEFAULT_MODEL_URL")
    if explicit:
        return explicit
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/{DEFAULT_MODEL_FILE}"


class DownloadError(WebUIError):
    pass


def download_default_model(folder: Path, progress: Callable[[int, int | None], None] | None = None,
                           url: str | None = None, timeout: float = 10.0) -> Path:
    """Download into `folder`; a partial file is never left under the final name."""
    url = url or default_model_url()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / DEFAULT_MODEL_FILE
    part = dest.with_suffix(".safetensors.part")
    manual = f"Download {url} yourself and put it into {folder}, then press refresh."
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        read_safetensors_header(part)  # a truncated or HTML error page is rejected here
        os.replace(part, dest)
        return dest
    except (urllib.error.URLError, OSError, ValueError) as e:
        with contextlib.suppress(OSError):
            part.unlink()
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"Could not download the default model ({reason}). {manual}") from None
    except WebUIError as e:
        with contextlib.suppress(OSError):
            part.unlink()
        raise DownloadError(f"The downloaded file is not a valid checkpoint ({e}). {manual}") from None
