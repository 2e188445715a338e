"""Gradio 3 spellings in extension UIs, translated to Gradio 6 while extension UI code runs (and nowhere else).

A1111 pins Gradio 3.41, and extensions written for it use names Gradio 4+ removed: `_js=` on event listeners
(13 of 30 surveyed), `gr.Box` (4), `.style(...)` (5), `gr.Image(source=..., tool=...)` (3), and
`gr.<Component>.update(...)`. This is the one place where we adapt a library's surface, and only inside
`gradio3_compat()`, which the loader enters around extension UI code: `Script.ui()`, the `on_ui_tabs`,
`on_before_ui`, `on_after_component`/`on_before_component` and `on_ui_settings` callbacks, and the event
handlers registered from that code when they later run. Outside it Gradio is untouched.

What it does, all additive (our own code never uses these spellings, Gradio 6 would reject them):
- `gr.Box` -> `gr.Group`, `gr.Variable` -> `gr.State`, `gr.Form` -> `gr.Group`;
- event listeners (`.click(...)`, `.change(...)`, `.then(...)`...) accept `_js=` as Gradio 6's `js=`;
- `component.style(**kw)` sets what Gradio 6 still has (container, height, width, preview, object_fit;
  `grid` -> columns; `equal_height`) and returns the component, ignoring the rest (full_width, rounded...);
- constructors take `source="upload"` as `sources=["upload"]` and drop keyword arguments Gradio 6 no
  longer has (`tool`, `brush_radius`, `show_share_button`...), logging them once per class;
- `gr.<Component>.update(**kw)` -> `gr.update(**kw)`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
from gradio.blocks import Block
from gradio.events import Dependency

log = logging.getLogger(__name__)

_lock = threading.RLock()
_depth = 0
_saved: list[tuple[Any, str, Any, bool]] = []  # (owner, attribute, previous value, existed)
_warned: set[tuple[str, str]] = set()
_ALIASES = {"Box": "Group", "Variable": "State", "Form": "Group"}
_STYLE_RENAMES = {"grid": "columns"}
_STYLE_KEEP = ("container", "height", "width", "preview", "object_fit", "columns", "equal_height", "rows")


def _all_block_classes() -> list[type]:
    seen: list[type] = []
    todo = [Block]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def _set(owner: Any, name: str, value: Any) -> None:
    existed = name in vars(owner)
    _saved.append((owner, name, vars(owner).get(name), existed))
    setattr(owner, name, value)


def compat_callable(fn: Any) -> Any:
    """`fn` run inside gradio3_compat() (an extension's event handler); generators and coroutines keep their kind."""
    if not callable(fn) or getattr(fn, "_gradio3_compat", False):
        return fn
    if inspect.isasyncgenfunction(fn):
        return fn  # rare; left as is rather than risk changing how Gradio streams it
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with gradio3_compat():
                return await fn(*args, **kwargs)
        wrapped: Any = run_async
    elif inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def run_gen(*args: Any, **kwargs: Any) -> Any:
            with gradio3_compat():
                yield from fn(*args, **kwargs)
        wrapped = run_gen
    else:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with gradio3_compat():
                return fn(*args, **kwargs)
        wrapped = run
    wrapped._gradio3_compat = True
    return wrapped


def _listener(original: Callable[..., Any], bound: bool) -> Callable[..., Any]:
    def translate(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if "_js" in kwargs:
            js = kwargs.pop("_js")
            kwargs.setdefault("js", js)
        if "fn" in kwargs:
            kwargs["fn"] = compat_callable(kwargs["fn"])
        elif args:
            args = (compat_callable(args[0]), *args[1:])
        return args, kwargs

    if bound:  # Dependency.then & co. are partials already bound to their trigger
        def dep_listener(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = translate(args, kwargs)
            return original(*args, **kwargs)
        return dep_listener

    @functools.wraps(original)
    def listener(block: Any, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = translate(args, kwargs)
        return original(block, *args, **kwargs)
    return listener


def _init(cls: type, original: Callable[..., Any]) -> Callable[..., Any]:
    params = inspect.signature(original).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        source = kwargs.pop("source", None)
        if source is not None and "sources" in params and "sources" not in kwargs:
            kwargs["sources"] = [source] if isinstance(source, str) else list(source)
        if not takes_any:
            for name in [k for k in kwargs if k not in params]:
                kwargs.pop(name)
                if (cls.__name__, name) not in _warned:
                    _warned.add((cls.__name__, name))
                    log.info("Gradio 3 argument %s=... of gr.%s has no Gradio 6 equivalent; ignored",
                             name, cls.__name__)
        original(self, *args, **kwargs)
    return __init__


def _style(self: Any, *args: Any, **kwargs: Any) -> Any:
    for key, value in kwargs.items():
        key = _STYLE_RENAMES.get(key, key)
        if key in _STYLE_KEEP and hasattr(self, key):
            setattr(self, key, value)
    return self


def _update(cls: type, **kwargs: Any) -> Any:
    return gr.update(**kwargs)


def _dependency_init(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        original(self, *args, **kwargs)
        for name in ("then", "success", "failure"):
            if hasattr(self, name):
                setattr(self, name, _listener(getattr(self, name), bound=True))
    return __init__


def _install() -> None:
    for old, new in _ALIASES.items():
        if not hasattr(gr, old):
            _set(gr, old, getattr(gr, new))
    _set(Block, "style", _style)
    _set(Block, "update", classmethod(_update))
    _set(Dependency, "__init__", _dependency_init(Dependency.__init__))
    for cls in _all_block_classes():
        own = vars(cls)
        for event in getattr(cls, "EVENTS", []) or []:
            name = str(event)
            if name in own and callable(own[name]):
                _set(cls, name, _listener(own[name], bound=False))
        if "__init__" in own and cls.__module__.startswith("gradio."):
            _set(cls, "__init__", _init(cls, own["__init__"]))


def _uninstall() -> None:
    while _saved:
        owner, name, value, existed = _saved.pop()
        if existed:
            setattr(owner, name, value)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def gradio3_compat() -> Iterator[None]:
    """Gradio 3 spellings work inside; re-entrant and thread-safe (installed once, removed by the last exit)."""
    global _depth
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()


def is_active() -> bool:
    return _depth > 0


def register() -> None:
    """Make script_callbacks/script_loading run extension UI code inside gradio3_compat()."""
    from modules import script_callbacks

    script_callbacks.set_ui_code_context(gradio3_compat)


register()
