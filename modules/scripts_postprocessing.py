"""A1111's postprocessing-script API: `ScriptPostprocessing`, `PostprocessedImage` and the runner that applies
the Extras operations (built-in and extensions') in the preferred order."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class PostprocessedImageSharedInfo:
    """What every operation of one image agrees on before processing (set in `process_firstpass`)."""

    target_width: int | None = None
    target_height: int | None = None


class PostprocessedImage:
    """One image going through the Extras operations, with its infotext items and extra outputs."""

    def __init__(self, image: Any) -> None:
        self.image = image
        self.info: dict[str, Any] = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images: list[Any] = []
        self.nametags: list[str] = []
        self.disable_processing = False
        self.caption: str | None = None
        self.runtime: Any = None  # ours: what built-in operations upscale and restore faces with
        self.state: Any = None  # ours: the job's JobState (progress, interrupt)

    def get_suffix(self, used_suffixes: dict[str, int] | None = None) -> str:
        used = {} if used_suffixes is None else used_suffixes
        suffix = "-".join(self.nametags)
        if suffix:
            suffix = "-" + suffix
        if suffix not in used:
            used[suffix] = 1
            return suffix
        for i in range(1, 100):
            proposed = f"{suffix}-{i}"
            if proposed not in used:
                used[proposed] = 1
                return proposed
        return suffix

    def create_copy(self, new_image: Any, *, nametags: list[str] | None = None,
                    disable_processing: bool = False) -> PostprocessedImage:
        pp = PostprocessedImage(new_image)
        pp.shared = self.shared
        pp.nametags = self.nametags.copy()
        pp.info = self.info.copy()
        pp.disable_processing = disable_processing
        pp.runtime, pp.state = self.runtime, self.state
        if nametags is not None:
            pp.nametags += nametags
        return pp


class ScriptPostprocessing:
    """Base class of an Extras operation (A1111): `ui()` returns {arg name: component}; `process(pp, **args)`."""

    filename: str | None = None
    controls: dict[str, Any] | None = None
    args_from: int | None = None
    args_to: int | None = None
    order = 1000
    """Scripts are ordered by this (then by name), unless `postprocessing_operation_order` says otherwise."""
    name: str | None = None
    group: Any = None
    extra_only = False
    """Only in the Extras tab, never inside txt2img/img2img."""
    main_ui_only = False
    """Only inside txt2img/img2img (`postprocessing_enable_in_main_ui`), not in the Extras tab."""

    def ui(self) -> dict[str, Any]:
        return {}

    def process(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def process_firstpass(self, pp: PostprocessedImage, **args: Any) -> None:
        pass

    def image_changed(self) -> None:
        pass


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


class ScriptPostprocessingRunner:
    """The ordered Extras operations and `run(pp, args)`; args are {script name: {arg: value}}."""

    def __init__(self, scripts: Iterable[ScriptPostprocessing] | None = None, get_opt: Any = None) -> None:
        self.scripts: list[ScriptPostprocessing] = list(scripts) if scripts is not None else []
        self.get_opt = get_opt or (lambda key, default=None: default)
        self.ui_created = False
        self.errors: list[str] = []

    @classmethod
    def with_installed_scripts(cls, get_opt: Any = None) -> ScriptPostprocessingRunner:
        """Built-in operations plus every loaded ScriptPostprocessing subclass (extensions' scripts)."""
        from modules import postprocessing_scripts

        scripts: list[ScriptPostprocessing] = [c() for c in postprocessing_scripts.BUILTIN]
        runner = cls(scripts, get_opt)
        seen = {type(s) for s in scripts}
        for sub in _all_subclasses(ScriptPostprocessing):
            if sub in seen or sub.__module__.startswith("modules.") or sub.__name__.startswith("_"):
                continue
            seen.add(sub)
            try:
                runner.scripts.append(sub())
            except Exception as e:  # one broken extension must not take the Extras tab down
                msg = f"postprocessing script {sub.__module__}.{sub.__name__} failed: {type(e).__name__}: {e}"
                log.error("%s", msg)
                runner.errors.append(msg)
        return runner

    def scripts_in_preferred_order(self, *, main_ui: bool = False) -> list[ScriptPostprocessing]:
        order = list(self.get_opt("postprocessing_operation_order", []) or [])
        disabled = set() if main_ui else set(self.get_opt("postprocessing_disable_in_extras", []) or [])

        def key(s: ScriptPostprocessing) -> tuple[int, int, str]:
            name = s.name or ""
            return (order.index(name) if name in order else len(order), s.order, name)

        out = []
        for s in sorted(self.scripts, key=key):
            if main_ui and s.extra_only:
                continue
            if not main_ui and (s.main_ui_only or (s.name or "") in disabled):
                continue
            out.append(s)
        return out

    def create_args_for_run(self, scripts_args: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """A1111's helper: args by script name; scripts not named run with their defaults (usually off)."""
        return {s.name or "": dict(scripts_args.get(s.name or "", {})) for s in self.scripts_in_preferred_order()}

    def run(self, pp: PostprocessedImage, args: dict[str, dict[str, Any]], *, main_ui: bool = False) -> None:
        """First passes (agree on the target size), then each operation on the image and on the extra images
        earlier operations made; `pp.extra_images` holds all those copies afterwards."""
        chosen = [(s, dict(args.get(s.name or "", {}))) for s in self.scripts_in_preferred_order(main_ui=main_ui)]
        chosen = [(s, a) for s, a in chosen if a]  # a script given no arguments is not part of this run
        for script, script_args in chosen:
            script.process_firstpass(pp, **script_args)
        all_images = [pp]
        for script, script_args in chosen:
            state = pp.state
            if state is not None:
                if state.skipped or state.interrupted:
                    break
                state.job = script.name or ""
            for single in all_images.copy():
                if not single.disable_processing:
                    script.process(single, **script_args)
                for extra in single.extra_images:
                    if not isinstance(extra, PostprocessedImage):
                        extra = single.create_copy(extra)
                    all_images.append(extra)
                single.extra_images.clear()
        pp.extra_images = all_images[1:]

    def image_changed(self) -> None:
        for script in self.scripts:
            script.image_changed()


@dataclass
class ScriptArg:
    """One argument of a built-in operation: its name in `process()` and its default."""

    name: str
    default: Any
