"""Server restart requests: the Extensions tab asks, webui.py stops serving, launch.py or webui.sh starts it again."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modules.errors import WebUIError
from modules.paths import SCRIPT_PATH

RESTART_EXIT_CODE = 75
"""What webui.main returns after a restart request; launch.py and webui.sh start the server again on it."""

_requested = threading.Event()
_stopper: Callable[[], None] | None = None


class RestartError(WebUIError):
    """A restart was refused (a job is running, or nothing would start the server again)."""


def is_restartable() -> bool:
    """True when a loop will start the server again: webui.sh (SD_WEBUI_RESTART) or launch.py (it re-executes)."""
    return bool(os.environ.get("SD_WEBUI_RESTART") or os.environ.get("SD_WEBUI_RESTART_EXEC"))


def marker_file() -> Path | None:
    """A1111's tmp/restart marker that webui.sh looks for, relative to the install folder."""
    value = os.environ.get("SD_WEBUI_RESTART")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else SCRIPT_PATH / path


def set_stopper(stop: Callable[[], None] | None) -> None:
    """webui.main hands over how to stop its server (uvicorn's should_exit)."""
    global _stopper
    _stopper = stop
    _requested.clear()


def restart_requested() -> bool:
    return _requested.is_set()


def jobs_busy(jobs: Any) -> bool:
    current = getattr(jobs, "current", None)
    return bool(jobs.pending()) or (current is not None and not current.done.is_set())


def request_restart(jobs: Any = None) -> None:
    """Stop the server so that it starts again; refused while a job runs or waits (its result would be lost)."""
    if not is_restartable():
        raise RestartError("This server was not started by launch.py or webui.sh, so nothing would start it again: "
                           "restart it yourself.")
    if jobs is not None and jobs_busy(jobs):
        raise RestartError("A generation is running or queued: restart when it has finished.")
    if _stopper is None:
        raise RestartError("The server cannot be stopped from here (not started by webui.main).")
    marker = marker_file()
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    _requested.set()
    _stopper()
