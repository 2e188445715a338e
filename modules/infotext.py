"""Write and parse A1111 infotext ("generation parameters"): prompt, negative prompt, one `Key: value` line."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Emission order of the fixed keys of A1111's `create_infotext`. Extension / extra generation params go
# between "Tiling" and "Version" in insertion order (see `ordered_params`).
FIXED_KEYS_BEFORE_EXTRA: tuple[str, ...] = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
FIXED_KEYS_AFTER_EXTRA: tuple[str, ...] = ("Version", "User")
INFOTEXT_KEY_ORDER: tuple[str, ...] = FIXED_KEYS_BEFORE_EXTRA + FIXED_KEYS_AFTER_EXTRA

# A1111 sampler UI names -> (aliases, default schedule internal name when "Automatic").
SAMPLERS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "DPM++ 2M": (("k_dpmpp_2m",), "karras"),
    "DPM++ SDE": (("k_dpmpp_sde",), "karras"),
    "DPM++ 2M SDE": (("k_dpmpp_2m_sde",), "exponential"),
    "DPM++ 2M SDE Heun": (("k_dpmpp_2m_sde_heun",), "exponential"),
    "DPM++ 2S a": (("k_dpmpp_2s_a",), "karras"),
    "DPM++ 3M SDE": (("k_dpmpp_3m_sde",), "exponential"),
    "Euler a": (("k_euler_a", "k_euler_ancestral"), None),
    "Euler": (("k_euler",), None),
    "LMS": (("k_lms",), None),
    "Heun": (("k_heun",), None),
    "DPM2": (("k_dpm_2",), "karras"),
    "DPM2 a": (("k_dpm_2_a",), "karras"),
    "DPM fast": (("k_dpm_fast",), None),
    "DPM adaptive": (("k_dpm_ad",), None),
    "Restart": (("restart",), "karras"),
    "DDIM": (("ddim",), None),
    "DDIM CFG++": (("ddim_cfgpp",), None),
    "PLMS": (("plms",), None),
    "UniPC": (("unipc",), None),
    "LCM": (("k_lcm",), None),
}

# Schedule types in A1111's dropdown order: (label, internal name, aliases).
SCHEDULE_TYPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Automatic", "automatic", ()),
    ("Uniform", "uniform", ()),
    ("Karras", "karras", ()),
    ("Exponential", "exponential", ()),
    ("Polyexponential", "polyexponential", ()),
    ("SGM Uniform", "sgm_uniform", ("SGMUniform",)),
    ("KL Optimal", "kl_optimal", ()),
    ("Align Your Steps", "align_your_steps", ()),
    ("Simple", "simple", ()),
    ("Normal", "normal", ()),
    ("DDIM", "ddim", ()),
    ("Beta", "beta", ()),
)

_SAMPLER_LOOKUP: dict[str, str] = {}
for _name, (_aliases, _sched) in SAMPLERS.items():
    for _option in (_name, *_aliases):
        _SAMPLER_LOOKUP[_option] = _name
        _SAMPLER_LOOKUP[_option.lower()] = _name


class InfotextError(ValueError):
    """Parameters that cannot be written as an infotext (e.g. a key containing a newline)."""


def find_sampler_name(name: str | None) -> str | None:
    """A1111 UI name for a sampler name or alias (case-insensitive), or None when unknown."""
    if not name:
        return None
    return _SAMPLER_LOOKUP.get(name) or _SAMPLER_LOOKUP.get(name.lower())


def schedule_label(name: str | None) -> str | None:
    """Label ("Karras") for a schedule label, internal name ("karras") or alias, or None when unknown."""
    if not name:
        return None
    for label, internal, aliases in SCHEDULE_TYPES:
        if name in (label, internal, *aliases):
            return label
    return None


def default_schedule_label(sampler_name: str | None) -> str | None:
    """Label of the schedule "Automatic" resolves to for this sampler, or None for the model default."""
    canonical = find_sampler_name(sampler_name)
    if canonical is None:
        return None
    return schedule_label(SAMPLERS[canonical][1])


def split_sampler_and_schedule(name: str) -> tuple[str, str | None]:
    """Split an old combined name ("DPM++ 2M Karras") into ("DPM++ 2M", "Karras").

    Like A1111, a name ending in a space plus a schedule label, internal name or alias is split. Unlike
    A1111 we only split when what remains is a known sampler (so an extension sampler whose name happens
    to end in a schedule word is left alone), and we keep the explicit schedule label instead of folding
    it back to "Automatic" when it equals the sampler's default (both mean the same schedule).
    """
    for label, internal, aliases in SCHEDULE_TYPES:
        for option in (label, internal, *aliases):
            suffix = " " + option
            if name.endswith(suffix):
                sampler = find_sampler_name(name[: -len(suffix)])
                if sampler is not None:
                    return sampler, label
    return name, None


# --------------------------------------------------------------------------------------------- writing


def quote(value: Any) -> str:
    """A1111's value quoting: JSON-encode values whose text contains `,`, `:` or a newline.

    Non-string values that need quoting are JSON-encoded as themselves, so a dict becomes a bare JSON
    object (`Hashes: {"model": "..."}`) exactly as A1111 writes it. Fix over A1111: a plain string that
    starts with a double quote is also JSON-quoted, otherwise the parser would strip its quotes.
    """
    text = str(value)
    if not any(c in text for c in ",:\n") and not text.startswith('"'):
        return text
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """Decode a JSON-quoted value; anything that is not a valid JSON string literal is returned as is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, str) else text


def ordered_params(
    fixed: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Arrange parameters in A1111's emission order.

    `fixed` keys listed in INFOTEXT_KEY_ORDER take their fixed position; other `fixed` keys and then
    `extra` (A1111's `extra_generation_params`) follow in insertion order, before Version and User. As
    with A1111's dict update, an extra key that is also a fixed key (e.g. "Denoising strength") keeps
    the fixed position.
    """
    result: dict[str, Any] = {k: fixed[k] for k in FIXED_KEYS_BEFORE_EXTRA if k in fixed}
    for source in (fixed, extra or {}):
        for key, value in source.items():
            if key not in FIXED_KEYS_AFTER_EXTRA:
                result[key] = value
    tail = {"Version": fixed.get("Version", version), "User": fixed.get("User", user)}
    result.update(tail)
    return result


def create_params_line(params: Mapping[str, Any]) -> str:
    """The `Key: value, Key: value` line; None values are omitted and a value equal to its key is a bare flag."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        if not isinstance(key, str) or not key or "\n" in key or "\r" in key:
            raise InfotextError(f"infotext key {key!r} must be a non-empty single-line string")
        parts.append(key if value == key else f"{key}: {quote(value)}")
    return ", ".join(parts)


def create_infotext(prompt: str | None, negative_prompt: str | None, params: Mapping[str, Any]) -> str:
    """Build the infotext exactly as A1111: prompt, optional `Negative prompt:` line, parameter line."""
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt or ''}{negative}\n{create_params_line(params)}".strip()


# --------------------------------------------------------------------------------------------- parsing

_KEY = re.compile(r"\s*(\w[\w \-/]+):\s*")
_FLAG = re.compile(r"\s*(\w[\w \-/]*?)\s*(?:,|$)")
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_JSON = json.JSONDecoder()


def _after_value(line: str, pos: int) -> int | None:
    """Position after the separating comma if `pos` ends a value (only spaces then `,` or end), else None."""
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    if pos == len(line):
        return pos
    return pos + 1 if line[pos] == "," else None


def _scan_params_line(line: str) -> tuple[list[tuple[str, Any]], int]:
    """Split a parameter line into (key, value) pairs; returns the pairs and how many were `key: value`.

    Follows A1111's grammar: a key starts with a word character and may hold word characters, spaces,
    `-` and `/`; a value is a JSON string literal or everything up to the next comma. Additions that do
    not change what A1111 reads from its own output: a bare JSON object/array value (what A1111's quote
    writes for dicts, e.g. civitai's `Hashes: {...}`) is decoded whole instead of being cut at its first
    comma, and a bare flag (written when value == key) comes back as key == value.
    """
    pairs: list[tuple[str, Any]] = []
    count = 0
    pos = 0
    while pos < len(line):
        key_match = _KEY.match(line, pos)
        if key_match is None:
            flag = _FLAG.match(line, pos)
            if flag is not None and flag.group(1):
                pairs.append((flag.group(1), flag.group(1)))
                pos = flag.end()
            else:
                pos += 1
            continue
        key, vpos = key_match.group(1), key_match.end()
        value: Any = None
        if vpos < len(line) and line[vpos] in '"{[':
            try:
                decoded, end = _JSON.raw_decode(line, vpos)
            except ValueError:
                decoded, end = None, None
            next_pos = None if end is None else _after_value(line, end)
            if next_pos is not None and (isinstance(decoded, (str, dict, list))):
                value, pos = decoded, next_pos
        if value is None:
            comma = line.find(",", vpos)
            end = len(line) if comma < 0 else comma
            value = line[vpos:end]
            pos = end + 1
        pairs.append((key, value))
        count += 1
    return pairs, count


def _uses_emphasis(*texts: str) -> bool:
    """True when a prompt has attention weights (A1111 then assumes the "Original" emphasis mode)."""
    try:
        from modules.prompt_parser import parse_prompt_attention  # optional L0 sibling
    except ImportError:
        parse_prompt_attention = None
    if parse_prompt_attention is not None:
        try:
            chunks = [chunk for text in texts for chunk in parse_prompt_attention(text)]
            return any(weight != 1.0 and part != "BREAK" for part, weight in chunks)
        except (TypeError, ValueError):  # an unexpected result shape: use the fallback below
            pass
    # Fallback when the prompt parser is not available: an unescaped bracket pair means a weight.
    for text in texts:
        plain = re.sub(r"\\.", "", text)
        if re.search(r"\([^)]*\)|\[[^\]]*\]", plain):
            return True
    return False


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(-RC|-rc)?(?:-(\d+))?(?:-.*)?")


def parse_version(text: Any) -> tuple[int, int, int, int, int] | None:
    """(major, minor, patch, final?, commits) from "v1.7.0-225-gabc", "1.6.0", "v1.6.0-RC-3"; None if unknown."""
    if not isinstance(text, str):
        return None
    m = _VERSION.fullmatch(text.strip())
    if m is None:
        return None
    major, minor, patch, rc, commits = m.groups()
    return int(major), int(minor), int(patch or 0), 0 if rc else 1, int(commits or 0)


_V160 = (1, 6, 0, 1, 0)
_V170_TSNR = (1, 7, 0, 1, 225)
_V180 = (1, 8, 0, 1, 0)


def _apply_version_backcompat(res: dict[str, Any]) -> None:
    """Settings that older webui versions implied (A1111's `infotext_versions.backcompat`)."""
    ver = parse_version(res.get("Version"))
    if ver is None:
        return
    if ver < _V160 and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if ver < _V160 and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < _V170_TSNR:
        res["Downcast alphas_cumprod"] = True
    if ver < _V180 and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def _insert_after(res: dict[str, Any], anchor: str, key: str, value: Any) -> dict[str, Any]:
    """Copy of `res` with `key` placed right after `anchor` (keeps the parameter line order readable)."""
    out: dict[str, Any] = {}
    for k, v in res.items():
        if k == key:
            continue
        out[k] = v
        if k == anchor:
            out[key] = value
    return out


def _split_combined_samplers(res: dict[str, Any]) -> dict[str, Any]:
    for sampler_key, schedule_key in (("Sampler", "Schedule type"), ("Hires sampler", "Hires schedule type")):
        name = res.get(sampler_key)
        if not isinstance(name, str):
            continue
        sampler, schedule = split_sampler_and_schedule(name)
        if schedule is not None:
            res[sampler_key] = sampler
            res = _insert_after(res, sampler_key, schedule_key, schedule)
    return res


def _old_hires_first_pass_size(width: int, height: int) -> tuple[int, int]:
    """First-pass size the pre-1.0 hires fix chose: about 512*512 pixels, sides rounded up to 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _restore_old_hires_fix(res: dict[str, Any]) -> None:
    """Old infotexts wrote `First pass size`; turn it into Size (first pass) + Hires resize (final)."""
    first_w, first_h = res.get("First pass size-1"), res.get("First pass size-2")
    if first_w is None or first_h is None:
        return
    first_w, first_h = int(first_w), int(first_h)
    width, height = int(res.get("Size-1", 512)), int(res.get("Size-2", 512))
    if first_w == 0 or first_h == 0:
        first_w, first_h = _old_hires_first_pass_size(width, height)
    res["Size-1"], res["Size-2"] = first_w, first_h
    res["Hires resize-1"], res["Hires resize-2"] = width, height


# Defaults A1111 fills in for keys missing from (older) infotexts, with A1111's value types.
PARSE_DEFAULTS_BEFORE_HIRES: tuple[tuple[str, Any], ...] = (
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
PARSE_DEFAULTS_AFTER_HIRES: tuple[tuple[str, Any], ...] = (
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
)


def _fill_defaults(res: dict[str, Any], prompt: str, negative_prompt: str) -> None:
    res.setdefault("Clip skip", "1")  # a missing Clip skip means the default, 1
    hypernet = res.get("Hypernet")
    if hypernet is not None:
        res["Prompt"] += f"<hypernet:{hypernet}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key, value in PARSE_DEFAULTS_BEFORE_HIRES:
        res.setdefault(key, value)
    _restore_old_hires_fix(res)
    for key, value in PARSE_DEFAULTS_AFTER_HIRES:
        res.setdefault(key, value)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    if "Emphasis" not in res and _uses_emphasis(prompt, negative_prompt):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)


def parse_generation_parameters(
    text: str,
    skip_fields: Iterable[str] | None = None,
    *,
    apply_defaults: bool = True,
    auto_backcompat: bool = True,
) -> dict[str, Any]:
    """Parse an infotext into a dict the way A1111's `parse_generation_parameters` does.

    Values stay the strings read from the text (A1111 casts them later, per UI component), except:
    JSON-quoted values are decoded strings, bare JSON objects/arrays are dicts/lists, `WxH` values are
    split into `<Key>-1`/`<Key>-2` strings, and the defaults A1111 fills in keep A1111's types (e.g.
    "Clip skip" "1", "Hires resize-1" 0, "Masked area padding" 32, "Refiner switch by sampling steps"
    False). With `apply_defaults` false only what the text holds is returned (used for round trips).

    Not done here (needs other modules): extracting styles from the prompt (`infotext_styles`) and
    the `on_infotext_pasted` callbacks.
    """
    if not isinstance(text, str):
        raise InfotextError(f"infotext must be a string, not {type(text).__name__}")
    *lines, last_line = text.strip().split("\n")
    pairs, count = _scan_params_line(last_line.strip())
    if count < 3:  # not a parameter line: part of the prompt
        lines.append(last_line)
        pairs = []

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt, negative_prompt = "\n".join(prompt_lines), "\n".join(negative_lines)

    res: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative_prompt}
    for key, value in pairs:
        size = _IMAGE_SIZE.match(value) if isinstance(value, str) else None
        if size is not None:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value

    if apply_defaults:
        res = _split_combined_samplers(res)
        _fill_defaults(res, prompt, negative_prompt)
        if auto_backcompat:
            _apply_version_backcompat(res)
    for key in skip_fields or ():
        res.pop(key, None)
    return res


def split_parsed(res: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Inverse of parsing: (prompt, negative prompt, params) with `X-1`/`X-2` joined back into `X: WxH`."""
    params: dict[str, Any] = {}
    for key, value in res.items():
        if key in ("Prompt", "Negative prompt"):
            continue
        if key.endswith("-1") and f"{key[:-2]}-2" in res and key[:-2] not in res:
            params[key[:-2]] = f"{value}x{res[f'{key[:-2]}-2']}"
        elif key.endswith("-2") and f"{key[:-2]}-1" in res and key[:-2] not in res:
            continue
        else:
            params[key] = value
    return str(res.get("Prompt", "")), str(res.get("Negative prompt", "")), params
