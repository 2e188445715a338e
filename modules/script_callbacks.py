"""A1111's `modules.script_callbacks`: module-level registries of `on_*` callbacks, each call guarded by name."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modules.denoiser import AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams, DenoiserHooks
from modules.images import GridParams as ImageGridLoopParams
from modules.images import ImageSaveParams

log = logging.getLogger(__name__)

__all__ = ["AfterCFGCallbackParams", "CFGDenoisedParams", "CFGDenoiserParams", "ImageGridLoopParams",
           "ImageSaveParams"]


@dataclass
class ExtraNoiseParams:
    noise: Any
    x: Any
    xi: Any


@dataclass
class UiTrainTabParams:
    txt2img_preview_params: Any


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True


@dataclass
class ScriptCallback:
    """One registered callback: the file that registered it, the function, and its unique name."""

    script: str
    callback: Callable[..., Any]
    name: str = ""


CATEGORIES = (
    "app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
    "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg",
    "before_component", "after_component", "image_grid", "infotext_pasted", "script_unloaded", "before_ui",
    "list_optimizers", "list_unets", "before_token_counter",
)

callback_map: dict[str, list[ScriptCallback]] = {f"callbacks_{c}": [] for c in CATEGORIES}
errors: list[str] = []
"""Messages of callbacks that raised, `<callback name>: <error>`; shown on the Extensions tab."""
listed_optimizers: list[Any] = []
"""What on_list_optimizers callbacks added at start-up (kept for a future cross-attention optimizer choice)."""
listed_unets: list[Any] = []
"""What on_list_unets callbacks added at start-up (kept for a future SD Unet choice)."""


def _registering_file() -> str:
    """The extension script that called on_*(); A1111 names callbacks after it."""
    for frame in inspect.stack()[2:]:
        if frame.filename != __file__:
            return frame.filename
    return "unknown"


def _extension_of(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    for root in ("extensions", "extensions-builtin"):
        if root in parts:
            i = len(parts) - 1 - parts[::-1].index(root)
            if i + 1 < len(parts):
                return parts[i + 1].lower()
    return "base"


def add_callback(category: str, callback: Callable[..., Any], *, name: str | None = None) -> None:
    key = f"callbacks_{category}"
    if key not in callback_map:
        raise ValueError(f"unknown callback category {category!r}")
    script = _registering_file()
    unique = f"{_extension_of(script)}/{os.path.basename(script)}/{category}" + (f"/{name}" if name else "")
    taken = {c.name for c in callback_map[key]}
    base, n = unique, 2
    while unique in taken:
        unique, n = f"{base}-{n}", n + 1
    callback_map[key].append(ScriptCallback(script, callback, unique))


def ordered_callbacks(category: str) -> list[ScriptCallback]:
    return list(callback_map[f"callbacks_{category}"])


def enumerate_callbacks() -> list[tuple[str, ScriptCallback]]:
    return [(key, c) for key, items in callback_map.items() for c in items]


def clear_callbacks() -> None:
    """Tests and script reloading: forget every registration."""
    for items in callback_map.values():
        items.clear()
    errors.clear()
    listed_optimizers.clear()
    listed_unets.clear()


def remove_current_script_callbacks() -> None:
    script = _registering_file()
    for items in callback_map.values():
        items[:] = [c for c in items if c.script != script]


def remove_callbacks_for_function(callback_func: Callable[..., Any]) -> None:
    for items in callback_map.values():
        items[:] = [c for c in items if c.callback != callback_func]


def _report(c: ScriptCallback, e: Exception) -> None:
    msg = f"Error executing callback {c.name} ({c.script}): {type(e).__name__}: {e}"
    log.exception(msg)
    errors.append(msg)


UI_CATEGORIES = frozenset({"ui_tabs", "ui_train_tabs", "before_ui", "before_component", "after_component",
                           "ui_settings"})
"""Callbacks that build extension UI: they run inside ui_code_context() (Gradio 3 spellings translated)."""

_ui_context_factory: Callable[[], contextlib.AbstractContextManager] | None = None


def set_ui_code_context(factory: Callable[[], contextlib.AbstractContextManager] | None) -> None:
    """The UI layer registers modules.ui_gradio3_compat.gradio3_compat here (this module stays Gradio-free)."""
    global _ui_context_factory
    _ui_context_factory = factory


def ui_code_context() -> contextlib.AbstractContextManager:
    """The context extension UI code runs in (nothing until the UI layer has registered one)."""
    return _ui_context_factory() if _ui_context_factory is not None else contextlib.nullcontext()


def _run(category: str, *args: Any, **kwargs: Any) -> list[Any]:
    """Call every callback of a category; a failing one is reported by name and the rest still run."""
    results = []
    for c in ordered_callbacks(category):
        try:
            if category in UI_CATEGORIES:
                with ui_code_context():
                    results.append(c.callback(*args, **kwargs))
            else:
                results.append(c.callback(*args, **kwargs))
        except Exception as e:  # an extension's bug must not stop the app
            _report(c, e)
    return results


# --- invoking functions (A1111 names) ------------------------------------------------------------------
def app_started_callback(demo: Any, app: Any) -> None:
    _run("app_started", demo, app)


def before_reload_callback() -> None:
    _run("before_reload")


def model_loaded_callback(sd_model: Any) -> None:
    _run("model_loaded", sd_model)


def ui_tabs_callback() -> list[Any]:
    tabs: list[Any] = []
    for result in _run("ui_tabs"):
        tabs += result or []
    return tabs


def ui_train_tabs_callback(params: UiTrainTabParams) -> None:
    _run("ui_train_tabs", params)


def ui_settings_callback() -> None:
    _run("ui_settings")


def before_image_saved_callback(params: ImageSaveParams) -> None:
    _run("before_image_saved", params)


def image_saved_callback(params: ImageSaveParams) -> None:
    _run("image_saved", params)


def extra_noise_callback(params: ExtraNoiseParams) -> None:
    _run("extra_noise", params)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    _run("cfg_denoiser", params)


def cfg_denoised_callback(params: CFGDenoisedParams) -> None:
    _run("cfg_denoised", params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams) -> None:
    _run("cfg_after_cfg", params)


def before_component_callback(component: Any, **kwargs: Any) -> None:
    _run("before_component", component, **kwargs)


def after_component_callback(component: Any, **kwargs: Any) -> None:
    _run("after_component", component, **kwargs)


def image_grid_callback(params: ImageGridLoopParams) -> None:
    _run("image_grid", params)


def infotext_pasted_callback(infotext: str, params: dict) -> None:
    _run("infotext_pasted", infotext, params)


def script_unloaded_callback() -> None:
    _run("script_unloaded")


def before_ui_callback() -> None:
    _run("before_ui")


def list_optimizers_callback() -> list[Any]:
    res: list[Any] = []
    _run("list_optimizers", res)
    listed_optimizers[:] = res
    return res


def list_unets_callback() -> list[Any]:
    res: list[Any] = []
    _run("list_unets", res)
    listed_unets[:] = res
    return res


def before_token_counter_callback(params: BeforeTokenCounterParams) -> None:
    _run("before_token_counter", params)


def denoiser_hooks(hooks: DenoiserHooks | None) -> DenoiserHooks:
    """The job's denoiser hook points plus A1111's cfg_* callbacks, which fire from there and nowhere else."""
    hooks = hooks or DenoiserHooks()
    if any(callback_map[f"callbacks_{c}"] for c in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg")):
        hooks = DenoiserHooks(before_unet=[*hooks.before_unet, cfg_denoiser_callback],
                              after_unet=[*hooks.after_unet, cfg_denoised_callback],
                              after_cfg=[*hooks.after_cfg, cfg_after_cfg_callback],
                              after_step=list(hooks.after_step))
    return hooks


# --- registration functions (A1111 names and signatures) -----------------------------------------------
def on_app_started(callback: Callable[[Any, Any], None], *, name: str | None = None) -> None:
    add_callback("app_started", callback, name=name)


def on_before_reload(callback: Callable[[], None], *, name: str | None = None) -> None:
    add_callback("before_reload", callback, name=name)


def on_model_loaded(callback: Callable[[Any], None], *, name: str | None = None) -> None:
    add_callback("model_loaded", callback, name=name)


def on_ui_tabs(callback: Callable[[], Any], *, name: str | None = None) -> None:
    add_callback("ui_tabs", callback, name=name)


def on_ui_train_tabs(callback: Callable[[UiTrainTabParams], None], *, name: str | None = None) -> None:
    add_callback("ui_train_tabs", callback, name=name)


def on_ui_settings(callback: Callable[[], None], *, name: str | None = None) -> None:
    add_callback("ui_settings", callback, name=name)


def on_before_image_saved(callback: Callable[[ImageSaveParams], None], *, name: str | None = None) -> None:
    add_callback("before_image_saved", callback, name=name)


def on_image_saved(callback: Callable[[ImageSaveParams], None], *, name: str | None = None) -> None:
    add_callback("image_saved", callback, name=name)


def on_extra_noise(callback: Callable[[ExtraNoiseParams], None], *, name: str | None = None) -> None:
    add_callback("extra_noise", callback, name=name)


def on_cfg_denoiser(callback: Callable[[CFGDenoiserParams], None], *, name: str | None = None) -> None:
    add_callback("cfg_denoiser", callback, name=name)


def on_cfg_denoised(callback: Callable[[CFGDenoisedParams], None], *, name: str | None = None) -> None:
    add_callback("cfg_denoised", callback, name=name)


def on_cfg_after_cfg(callback: Callable[[AfterCFGCallbackParams], None], *, name: str | None = None) -> None:
    add_callback("cfg_after_cfg", callback, name=name)


def on_before_component(callback: Callable[..., None], *, name: str | None = None) -> None:
    add_callback("before_component", callback, name=name)


def on_after_component(callback: Callable[..., None], *, name: str | None = None) -> None:
    add_callback("after_component", callback, name=name)


def on_image_grid(callback: Callable[[ImageGridLoopParams], None], *, name: str | None = None) -> None:
    add_callback("image_grid", callback, name=name)


def on_infotext_pasted(callback: Callable[[str, dict], None], *, name: str | None = None) -> None:
    add_callback("infotext_pasted", callback, name=name)


def on_script_unloaded(callback: Callable[[], None], *, name: str | None = None) -> None:
    add_callback("script_unloaded", callback, name=name)


def on_before_ui(callback: Callable[[], None], *, name: str | None = None) -> None:
    add_callback("before_ui", callback, name=name)


def on_list_optimizers(callback: Callable[[list], None], *, name: str | None = None) -> None:
    add_callback("list_optimizers", callback, name=name)


def on_list_unets(callback: Callable[[list], None], *, name: str | None = None) -> None:
    add_callback("list_unets", callback, name=name)


def on_before_token_counter(callback: Callable[[BeforeTokenCounterParams], None], *,
                            name: str | None = None) -> None:
    add_callback("before_token_counter", callback, name=name)
