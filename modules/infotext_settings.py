"""Settings named in an infotext (`Clip skip: 2`, `ENSD: 31337`, `Model hash: ...`) as per-job overrides."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Infotext labels of settings that carry no `infotext=` in the table (A1111's infotext_to_setting_name_mapping).
EXTRA_MAPPING: tuple[tuple[str, str], ...] = (
    ("Model hash", "sd_model_checkpoint"),
)


def setting_mapping(data_labels: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(infotext label, setting key) for every setting an infotext can name, in the table's order."""
    pairs = [(info.infotext, key) for key, info in data_labels.items() if getattr(info, "infotext", None)]
    known = {key for _label, key in pairs}
    return pairs + [(label, key) for label, key in EXTRA_MAPPING if key in data_labels and key not in known]


def cast_value(default: Any, value: Any) -> Any:
    """An infotext string as the setting's type (the type of its default)."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")
    if isinstance(default, int):
        return int(float(value))
    if isinstance(default, float):
        return float(value)
    return value if isinstance(value, (list, dict)) else str(value)


def overrides_from_infotext(
    params: Mapping[str, Any],
    opts: Any,
    *,
    skip_fields: Iterable[str] = (),
    checkpoint_title: Callable[[str], str | None] | None = None,
) -> list[tuple[str, str, Any]]:
    """(label, key, value) for each setting the parsed infotext names with a value other than the current one.

    As A1111's get_override_settings: the checkpoint is left out while `disable_weights_auto_swap` is on;
    `checkpoint_title` turns a model hash into the title the setting stores (left out when it finds none,
    so nothing is offered that could not be applied).
    """
    skip = set(skip_fields)
    out: list[tuple[str, str, Any]] = []
    for label, key in setting_mapping(opts.data_labels):
        if label in skip or params.get(label) is None:
            continue
        raw = params[label]
        if key == "sd_model_checkpoint":
            if opts.get("disable_weights_auto_swap", True) or checkpoint_title is None:
                continue
            value = checkpoint_title(str(raw))
            if value is None:
                continue
        else:
            try:
                value = cast_value(opts.data_labels[key].default, raw)
            except (TypeError, ValueError):
                continue  # an unreadable value is not offered as an override
        if value == opts.get(key):
            continue
        out.append((label, key, value))
    return out


def override_choice(label: str, value: Any) -> str:
    """How an override is listed in the UI's "Override settings" row (A1111: `Clip skip: 2`)."""
    return f"{label}: {value}"


def overrides_from_choices(choices: Iterable[str], opts: Any) -> dict[str, Any]:
    """The `override_settings` dict for a job from the row's `Label: value` entries (unknown labels ignored)."""
    by_label = dict(setting_mapping(opts.data_labels))
    out: dict[str, Any] = {}
    for choice in choices or ():
        label, sep, raw = str(choice).partition(": ")
        key = by_label.get(label)
        if not sep or key is None:
            continue
        try:
            out[key] = raw if key == "sd_model_checkpoint" else cast_value(opts.data_labels[key].default, raw)
        except (TypeError, ValueError):
            continue
    return out
