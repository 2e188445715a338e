"""A1111's Script API (`modules.scripts`): the Script base class and the runner that calls its hooks."""

from __future__ import annotations

import logging
import os
from collections import namedtuple
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


@dataclass
class PostSampleArgs:
    samples: Any


@dataclass
class MaskBlendArgs:
    current_latent: Any
    nmask: Any
    init_latent: Any
    mask: Any
    blended_latent: Any
    denoiser: Any = None
    sigma: Any = None

    @property
    def is_final_blend(self) -> bool:
        return self.denoiser is None


@dataclass
class ScriptClassData:
    """A Script subclass found in a loaded file (A1111's `scripts_data` entries)."""

    script_class: type
    path: str
    basedir: str
    module: Any
    extension: str | None = None


scripts_data: list[ScriptClassData] = []
"""Every Script subclass loaded from extensions (filled by script_loading)."""


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
    create_group = True
    setup_for_ui_only = False
    controls: Any = None
    tabname: str | None = None
    extension: str | None = None
    """Name of the extension that provides the script (for error messages)."""

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
    def post_sample(self, p: Any, ps: PostSampleArgs, *args: Any) -> None: ...
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
        self.scripts: list[Script] = []
        self.errors: list[str] = []
        self.inputs: list[Any] = [None]  # index 0: the Script dropdown (1-based index of the selected script)
        for script in scripts:
            self.add(script)

    def add(self, script: Script) -> None:
        self.scripts.append(script)

    @property
    def alwayson_scripts(self) -> list[Script]:
        return [s for s in self.scripts if s.alwayson]

    @property
    def selectable_scripts(self) -> list[Script]:
        return [s for s in self.scripts if not s.alwayson]

    @property
    def titles(self) -> list[str]:
        return [_title(s) for s in self.selectable_scripts]

    @property
    def title_map(self) -> dict[str, Script]:
        return {_title(s).lower(): s for s in self.scripts}

    @property
    def infotext_fields(self) -> list:
        """Every script's `(component, infotext key)` pairs (A1111 collects them while building the UI)."""
        return [f for s in self.scripts for f in (s.infotext_fields or [])]

    @property
    def paste_field_names(self) -> list[str]:
        return [n for s in self.scripts for n in (s.paste_field_names or [])]

    def script(self, title: str) -> Script | None:
        """The script with this title (case-insensitive), as the API's script_name/alwayson_scripts keys."""
        return self.title_map.get((title or "").lower())

    def layout_args(self, sizes: dict[int, int]) -> int:
        """Give each script its args_from/args_to slice after index 0 (A1111's layout); returns the total length."""
        pos = 1
        for script in self.scripts:
            n = sizes.get(id(script), 0)
            script.args_from, script.args_to = pos, pos + n
            pos += n
        return pos

    def run(self, p: Any, *args: Any) -> Any:
        """Run the selected script (args[0] is its 1-based index; 0 = None); returns its Processed or None."""
        index = int(args[0] or 0) if args else 0
        if index <= 0 or index > len(self.selectable_scripts):
            return None
        script = self.selectable_scripts[index - 1]
        return script.run(p, *args[script.args_from:script.args_to])

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
                msg = f"Error running {method} of {describe_script(script)}: {type(e).__name__}: {e}"
                log.exception(msg)
                self.errors.append(msg)

    def setup_scripts(self, p: Any) -> None:
        self._call("setup", p)

    setup_scrips = setup_scripts  # A1111's spelling

    def before_process(self, p: Any) -> None:
        self._call("before_process", p)

    def process(self, p: Any) -> None:
        self._call("process", p)

    def before_process_batch(self, p: Any, **kwargs: Any) -> None:
        self._call("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p: Any, **kwargs: Any) -> None:
        self._call("after_extra_networks_activate", p, **kwargs)

    def process_before_every_sampling(self, p: Any, **kwargs: Any) -> None:
        self._call("process_before_every_sampling", p, **kwargs)

    def process_batch(self, p: Any, **kwargs: Any) -> None:
        self._call("process_batch", p, **kwargs)

    def post_sample(self, p: Any, ps: PostSampleArgs) -> None:
        self._call("post_sample", p, ps)

    def on_mask_blend(self, p: Any, mba: MaskBlendArgs) -> None:
        self._call("on_mask_blend", p, mba)

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


def _title(script: Script) -> str:
    try:
        return str(script.title())
    except Exception:
        return type(script).__name__


def describe_script(script: Script) -> str:
    """`<title> (<file>, extension <name>)` for error messages."""
    where = os.path.basename(script.filename) if script.filename else type(script).__name__
    ext = f", extension {script.extension}" if script.extension else ""
    return f"{_title(script)} ({where}{ext})"


# --- A1111's module-level names extensions read (`scripts.scripts_txt2img`, `list_scripts`, `ScriptFile`...) ---

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
postprocessing_scripts_data: list[ScriptClassData] = []
scripts_current: ScriptRunner | None = None


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """Files ending in `extension` in the root's and (optionally) every enabled extension's `scriptdirname`."""
    from modules import extensions as ext_mod
    from modules.paths import SCRIPT_PATH

    found = []
    roots = [str(SCRIPT_PATH)] + ([str(e.path) for e in ext_mod.active()] if include_extensions else [])
    for base in roots:
        folder = os.path.join(base, scriptdirname)
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                path = os.path.join(folder, name)
                if os.path.isfile(path) and name.endswith(extension):
                    found.append(ScriptFile(base, name, path))
    return found


def list_files_with_name(filename: str) -> list[str]:
    """Every enabled extension's (and the root's) file of this name, e.g. `style.css`."""
    from modules import extensions as ext_mod
    from modules.paths import SCRIPT_PATH

    dirs = [str(SCRIPT_PATH)] + [str(e.path) for e in ext_mod.active()]
    return [os.path.join(d, filename) for d in dirs if os.path.isfile(os.path.join(d, filename))]


def __getattr__(name: str) -> Any:
    if name in ("scripts_txt2img", "scripts_img2img"):
        from modules import shared

        return getattr(shared._need_runtime(f"scripts.{name}"), name)
    if name == "scripts_postproc":
        return None  # the Extras tab's runner arrives with modules.scripts_postprocessing
    raise AttributeError(f"module 'modules.scripts' has no attribute {name!r}")
