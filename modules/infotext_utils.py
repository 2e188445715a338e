"""A1111's `modules.infotext_utils` for extensions: parse infotext, settings overrides, "Send to" button bindings.

The parsing is modules.infotext's; this module adds A1111's call shape (the `on_infotext_pasted` callbacks run,
as A1111 does) and the registry of paste bindings. Building and wiring Gradio buttons happens in
modules.ui_common when the UI asks (`create_buttons`, `connect_paste_params_buttons`), so no Gradio here.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

from modules.infotext import quote, unquote

__all__ = ["ParamBinding", "PasteField", "bind_buttons", "connect_paste_params_buttons", "create_buttons",
           "create_override_settings_dict", "image_from_url_text", "parse_generation_parameters", "paste_fields",
           "quote", "register_paste_params_button", "registered_param_bindings", "unquote"]


class PasteField(tuple):
    """(component, infotext key or callable(params) -> value), with the names A1111 1.8+ gives the two parts."""

    def __new__(cls, component: Any, target: Any, *, api: str | None = None) -> PasteField:
        return super().__new__(cls, (component, target))

    def __init__(self, component: Any, target: Any, *, api: str | None = None) -> None:
        self.api = api
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None


@dataclass
class ParamBinding:
    """A "Send to <tab>" button: where its infotext (or image) comes from and which tab it fills."""

    paste_button: Any
    tabname: str
    source_text_component: Any = None
    source_image_component: Any = None
    source_tabname: str | None = None
    override_settings_component: Any = None
    paste_field_names: list[str] = field(default_factory=list)


registered_param_bindings: list[ParamBinding] = []
"""Bindings registered by the UI and by extensions; connect_paste_params_buttons wires them."""

paste_fields: dict[str, dict[str, Any]] = {}
"""tab name -> {"init_img", "fields", "override_settings_component", "paste_field_names"} (A1111's shape)."""

infotext_to_setting_name_mapping: list[tuple[str, str]] = []
"""A1111 1.10 keeps this empty (settings declare `infotext=` instead); extensions may append pairs."""


def reset() -> None:
    """Forget every binding and tab (a UI rebuild or a test starts clean)."""
    registered_param_bindings.clear()
    paste_fields.clear()


def add_paste_fields(tabname: str, init_img: Any, fields: list | None, override_settings_component: Any = None
                     ) -> None:
    """A tab announces the components "Send to <tab>" fills, as `(component, infotext key)` pairs."""
    fields = [PasteField(*f) if not isinstance(f, PasteField) else f for f in (fields or [])]
    paste_fields[tabname] = {"init_img": init_img, "fields": fields,
                             "override_settings_component": override_settings_component}


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)


def create_buttons(tabs_list: list[str]) -> dict[str, Any]:
    """One "Send to <tab>" button per tab name (Gradio components; built by the UI layer)."""
    from modules.ui_common import create_send_buttons

    return create_send_buttons(tabs_list)


def bind_buttons(buttons: dict[str, Any], send_image: Any, send_generate_info: Any) -> None:
    """A1111's old helper: register a binding for each of `buttons` (tab name -> button)."""
    for tabname, button in buttons.items():
        source_text = send_generate_info if send_generate_info is not None and not isinstance(
            send_generate_info, str) else None
        source_tab = send_generate_info if isinstance(send_generate_info, str) else None
        register_paste_params_button(ParamBinding(paste_button=button, tabname=tabname,
                                                  source_text_component=source_text,
                                                  source_image_component=send_image, source_tabname=source_tab))


def connect_paste_params_buttons() -> int:
    """Wire every registered button whose tab has announced its fields; returns how many were wired."""
    from modules.ui_common import connect_paste_binding

    wired = 0
    for binding in registered_param_bindings:
        target = paste_fields.get(binding.tabname)
        if target is not None:
            connect_paste_binding(binding, target)
            wired += 1
    return wired


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None) -> dict[str, Any]:
    """A1111's parse: the dict of infotext fields, after the extensions' `on_infotext_pasted` callbacks ran."""
    from modules import infotext, script_callbacks

    res = infotext.parse_generation_parameters(x, skip_fields)
    script_callbacks.infotext_pasted_callback(x, res)
    return res


def values_for_fields(params: dict[str, Any], fields: list) -> list[Any]:
    """What pasting `params` puts into each `(component, key or callable)` field; None leaves a field as is."""
    out = []
    for _component, key in fields:
        if callable(key):
            try:
                out.append(key(params))
            except Exception:  # noqa: BLE001 - a broken extension getter leaves its field alone, as A1111
                out.append(None)
        else:
            out.append(params.get(key))
    return out


def _cast(opts: Any, key: str, value: str) -> Any:
    default = opts.get_default(key)
    if isinstance(default, bool):
        return value.strip().lower() in ("true", "1", "yes", "on")
    if isinstance(default, int):
        return int(float(value))
    if isinstance(default, float):
        return float(value)
    return value


def create_override_settings_dict(text_pairs: list[str]) -> dict[str, Any]:
    """`["Clip skip: 2", ...]` -> `{"CLIP_stop_at_last_layers": 2}` through the settings' `infotext` names."""
    from modules import shared

    params: dict[str, str] = {}
    for pair in text_pairs or []:
        k, sep, v = pair.partition(":")
        if sep:
            params[k.strip()] = v.strip()
    opts = shared.opts
    mapping = [(info.infotext, k) for k, info in opts.data_labels.items() if info.infotext]
    res: dict[str, Any] = {}
    for param_name, setting_name in mapping + infotext_to_setting_name_mapping:
        value = params.get(param_name)
        if value is not None:
            res[setting_name] = _cast(opts, setting_name, value)
    return res


def image_from_url_text(filedata: Any) -> Any:
    """A gallery value or a `data:image/png;base64,...` string -> PIL image (A1111's helper); None if empty."""
    from PIL import Image

    if filedata is None:
        return None
    if isinstance(filedata, list):
        filedata = filedata[0] if filedata else None
        if filedata is None:
            return None
    if isinstance(filedata, dict):
        filedata = filedata.get("name") or filedata.get("path") or filedata.get("url")
    if isinstance(filedata, (tuple, list)):
        filedata = filedata[0]
    if hasattr(filedata, "save"):
        return filedata
    text = str(filedata)
    if text.startswith("data:image/"):
        text = text.split(",", 1)[1]
        return Image.open(io.BytesIO(base64.b64decode(text)))
    from modules.errors import ValidationError

    raise ValidationError("image", "only data: URLs and PIL images can be pasted; file paths are not opened")
