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
