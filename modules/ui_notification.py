"""The sound played when a job finishes: `notification.mp3` from the data folder, as A1111 (javascript/notification.js)."""

from __future__ import annotations

import base64
import html
import logging

from modules.runtime import Runtime

log = logging.getLogger(__name__)
MAX_BYTES = 2 * 1024 * 1024  # a notification sound is a few kB; a huge file is not inlined into every page


def notification_audio_html(runtime: Runtime) -> str:
    """An <audio> element with the sound inlined (the data folder is not served), or "" when there is none."""
    path = runtime.paths.data_dir / "notification.mp3"
    if not path.is_file():
        return ""
    size = path.stat().st_size
    if size > MAX_BYTES:
        log.warning("%s is %d bytes; notification sounds above %d bytes are not played", path, size, MAX_BYTES)
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<audio id="notification_audio" preload="auto" src="data:audio/mpeg;base64,{html.escape(data)}"></audio>'
