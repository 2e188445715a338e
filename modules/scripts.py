"""A1111's Script API (`modules.scripts`): the Script base class and the runner that calls its hooks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

AlwaysVisible = object()
"""Return this from Script.show() to be always on (A1111's sentinel)."""


@dataclass
class PostprocessImageArgs:
    """What postprocess_image receives (A1111 name); scripts may replace `image`."""

    image: Any


@dataclass
class PostprocessBatchListArgs:
    images: list[Any]


class Script:
    """Base class extensions subclass; every hook is optional. Names and signatures as A1111."""

    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    group: Any = None
    infotext_fields: list | None = None
    paste_field_names: list | None = None
    section: str | None = None
    name: str | None = None

    def title(self) -> str:
        raise NotImplementedError

    def ui(self, is_img2img: bool) -> Any:
        return None

    def show(self, is_img2img: bool) -> Any:
        return True

    def run(self, p: Any, *args: Any) -> Any:
        return None

    def setup(self, p: Any, *args: Any) -> None: ...
    def before_process(self, p: Any, *args: Any) -> None: ...
    def process(self, p: Any, *args: Any) -> None: ...
    def before_process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def after_extra_networks_activate(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def process_before_every_sampling(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None: ...
    def postprocess_batch_list(self, p: Any, pp: PostprocessBatchListArgs, *args: Any, **kwargs: Any) -> None: ...
    def postprocess_image(self, p: Any, pp: PostprocessImageArgs, *args: Any) -> None: ...
    def postprocess(self, p: Any, processed: Any, *args: Any) -> None: ...
    def before_hr(self, p: Any, *args: Any) -> None: ...
    def on_mask_blend(self, p: Any, mba: Any, *args: Any) -> None: ...
    def before_component(self, component: Any, **kwargs: Any) -> None: ...
    def after_component(self, component: Any, **kwargs: Any) -> None: ...

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """A1111's element id scheme: script_<tab>_<title>_<item>."""
        title = "".join(c if c.isalnum() else "_" for c in self.title().lower())
        tab = "img2img" if self.is_img2img else "txt2img"
        return f"script_{tab}_{title}_{item_id}"


def basedir() -> str:
    """A1111: the folder of the extension whose script is being loaded (set by the loader)."""
    return _current_basedir or os.getcwd()


_current_basedir: str | None = None


class ScriptRunner:
    """Calls the hooks of the always-on scripts (and the selected one) in order, each call guarded."""

    def __init__(self, scripts: Iterable[Script] = ()) -> None:
        self.scripts: list[Script] = list(scripts)
        self.errors: list[str] = []

    @property
    def alwayson_scripts(self) -> list[Script]:
        return [s for s in self.scripts if s.alwayson]

    def _args(self, p: Any, script: Script) -> tuple:
        args = getattr(p, "script_args", None) or ()
        if script.args_from is None or script.args_to is None:
            return ()
        return tuple(args[script.args_from:script.args_to])

    def _call(self, method: str, p: Any, *extra: Any, **kwargs: Any) -> None:
        for script in self.alwayson_scripts:
            try:
                getattr(script, method)(p, *extra, *self._args(p, script), **kwargs)
            except Exception as e:  # an extension's bug must not break generation
                name = script.filename or type(script).__name__
                msg = f"Error running {method} of {name}: {type(e).__name__}: {e}"
                log.exception(msg)
                self.errors.append(msg)

    def setup_scripts(self, p: Any) -> None:
        self._call("setup", p)

    def before_process(self, p: Any) -> None:
        self._call("before_process", p)

    def process(self, p: Any) -> None:
        self._call("process", p)

    def before_process_batch(self, p: Any, **kwargs: Any) -> None:
        self._call("before_process_batch", p, **kwargs)

    def process_before_every_sampling(self, p: Any, **kwargs: Any) -> None:
        self._call("process_before_every_sampling", p, **kwargs)

    def process_batch(self, p: Any, **kwargs: Any) -> None:
        self._call("process_batch", p, **kwargs)

    def postprocess_batch(self, p: Any, images: Any, **kwargs: Any) -> None:
        self._call("postprocess_batch", p, images=images, **kwargs)

    def postprocess_batch_list(self, p: Any, pp: PostprocessBatchListArgs, **kwargs: Any) -> None:
        self._call("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p: Any, pp: PostprocessImageArgs) -> None:
        self._call("postprocess_image", p, pp)

    def postprocess(self, p: Any, processed: Any) -> None:
        self._call("postprocess", p, processed)

    def before_hr(self, p: Any) -> None:
        self._call("before_hr", p)
