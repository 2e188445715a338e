"""A1111's component callbacks: `on_before_component`/`on_after_component` (and Script.before_/after_component)
for every Gradio component created while the page is built.

Extensions use them to find our components by elem_id (`txt2img_prompt`...) and add theirs next to them.
A1111 patches Gradio's constructors for the whole process; here the constructors are wrapped only inside
`component_callbacks()`, which the page builder enters around building the page, and restored after.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gradio.blocks import Block

from modules import script_callbacks

log = logging.getLogger(__name__)
_local = threading.local()


def _runner_scripts(runner: Any) -> list[Any]:
    return list(getattr(runner, "scripts", None) or [])


def _notify(hook: str, component: Any, kwargs: dict[str, Any], runners: Callable[[], list[Any]]) -> None:
    if hook == "before":
        script_callbacks.before_component_callback(component, **kwargs)
    else:
        script_callbacks.after_component_callback(component, **kwargs)
    for runner in runners():
        for script in _runner_scripts(runner):
            try:
                getattr(script, f"{hook}_component")(component, **kwargs)
            except Exception:  # one extension's bug must not stop the page from building
                log.exception("Error in %s_component of script %s", hook, getattr(script, "filename", script))


def _wrap(original: Callable[..., Any], runners: Callable[[], list[Any]]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        depth = getattr(_local, "depth", 0)
        _local.depth = depth + 1  # only the outermost constructor of a component notifies (super() calls don't)
        try:
            if depth == 0:
                _notify("before", self, kwargs, runners)
            original(self, *args, **kwargs)
        finally:
            _local.depth = depth
        if depth == 0:
            _notify("after", self, kwargs, runners)
    return __init__


def _block_classes() -> list[type]:
    seen: list[type] = []
    todo = [Block]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


@contextlib.contextmanager
def component_callbacks(runners: Callable[[], list[Any]] = list) -> Iterator[None]:
    """Fire the component callbacks for every component built inside; `runners()` gives the ScriptRunners
    whose scripts' before_/after_component hooks also run (A1111: the runner whose UI is being built)."""
    saved: list[tuple[type, Any]] = []
    for cls in _block_classes():
        own = vars(cls).get("__init__")
        if own is not None and cls.__module__.startswith("gradio."):
            saved.append((cls, own))
            cls.__init__ = _wrap(own, runners)  # type: ignore[misc]
    try:
        yield
    finally:
        for cls, own in reversed(saved):
            cls.__init__ = own  # type: ignore[misc]
