"""Error types shared by every layer, each carrying a message fit to show a user."""

from __future__ import annotations


class WebUIError(Exception):
    """Base class: the message is complete and readable; no traceback needs to reach the user."""


class ModelLoadError(WebUIError):
    """A checkpoint (or other model file) could not be loaded; names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot load {self.path}: {reason}")


class UnsafeFileError(ModelLoadError):
    """A pickle-based file asked to run code or build an object outside the allow-list."""


class UnknownArchitectureError(ModelLoadError):
    """The tensors in a checkpoint match no model family we know how to run."""


class ModelNotFoundError(WebUIError):
    """A checkpoint title or name matched nothing in the registry."""


class SettingsError(WebUIError):
    """A setting was given a value of the wrong type or outside its allowed choices."""


class ValidationError(WebUIError, ValueError):
    """A request field is out of range or of the wrong type; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


# --- A1111's reporting helpers (`modules.errors.report/display`), which extensions call from their own code ---

def report(message: str, *, exc_info: bool = False) -> None:
    """Log an error line (with the current traceback when exc_info), as A1111's helper prints it."""
    import logging

    logging.getLogger("extensions").error(message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    import logging

    logging.getLogger("extensions").error("\n".join(line.strip() for line in message.strip().splitlines()))


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    """Log an exception raised while doing `task`, with its traceback."""
    import logging

    logging.getLogger("extensions").error("%s: %s: %s", task, type(e).__name__, e, exc_info=e)


_already_displayed: set[str] = set()


def display_once(e: BaseException, task: str) -> None:
    if task not in _already_displayed:
        display(e, task)
        _already_displayed.add(task)


def run(code: object, task: str) -> None:
    """Call `code()`, logging (not raising) what it raises."""
    try:
        code()  # type: ignore[operator]
    except Exception as e:
        display(e, task)
