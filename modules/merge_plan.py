"""Checks a merge request against the files' headers and plans every output tensor, before any weight is read."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.errors import ValidationError, WebUIError
from modules.merge_blocks import BlockWeights, parse_block_weights
from modules.merge_io import OutputTensor, TensorSource, layout, open_source, output_size
from modules.params_merger import NO_VAE, MergeParams

# A1111's checkpoint_dict_skip_on_merge: kept from A as it is.
SKIP_ON_MERGE = ("cond_stage_model.transformer.text_model.embeddings.position_ids",)
IN_CONV = "model.diffusion_model.input_blocks.0.0.weight"
VAE_PREFIX = "first_stage_model."
DISK_MARGIN = 16 * 1024 * 1024  # the file system needs a little beyond the file itself
_FAMILY_PREFIXES = (
    ("conditioner.embedders.1.model.", "SDXL"),
    ("conditioner.embedders.0.model.", "SDXL refiner"),
    ("cond_stage_model.model.", "SD2"),
    ("cond_stage_model.transformer.", "SD1"),
)
_BAD_NAME = re.compile(r'[\x00-\x1f<>:"/\\|?*]')


@dataclass
class Model:
    """One input checkpoint: its registry entry, role letter and open header."""

    role: str  # "A", "B" or "C"
    field: str  # the request field that named it
    info: Any  # CheckpointInfo
    source: TensorSource
    family: str = ""
    in_channels: int | None = None


@dataclass
class Entry:
    """How one output tensor is made."""

    key: str
    op: str  # "copy" (from A), "merge", "merge_channels" (first 4 input channels only), "vae"
    dtype: torch.dtype
    shape: tuple[int, ...]
    multiplier: float = 0.0
    vae_key: str | None = None
    use_c: bool = False


@dataclass
class MergePlan:
    params: MergeParams
    a: Model
    b: Model | None
    c: Model | None
    vae: TensorSource | None
    vae_name: str | None
    entries: list[Entry]
    out_dir: Path
    filename: str
    base_metadata: dict[str, str] | None
    is_inpainting: bool = False
    is_instruct_pix2pix: bool = False
    block_weights: BlockWeights | None = None
    config_file: Path | None = None
    output_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def out_path(self) -> Path:
        return self.out_dir / self.filename

    def models(self) -> list[Model]:
        return [m for m in (self.a, self.b, self.c) if m is not None]

    def close(self) -> None:
        for m in self.models():
            m.source.close()
        if self.vae is not None:
            self.vae.close()


# --- families -------------------------------------------------------------------------------------------------
def family_of(source: TensorSource) -> tuple[str, int | None]:
    """("SD1" | "SD2" | "SDXL" | "SDXL refiner" | "unknown", UNet input channels) from key names and shapes."""
    keys = source.names()
    family = "unknown"
    for prefix, name in _FAMILY_PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            family = name
            break
    in_ch = source.shape(IN_CONV)[1] if IN_CONV in source and len(source.shape(IN_CONV)) == 4 else None
    return family, in_ch


def describe(m: Model) -> str:
    kind = {9: " inpainting", 8: " instruct-pix2pix"}.get(m.in_channels or 4, "")
    return f"{m.family}{kind} ({m.role}: {m.info.name})"


def _mergeable(key: str, src: TensorSource) -> bool:
    """A1111 merges only keys containing 'model'; we also keep integer tensors (position ids) from A."""
    return "model" in key and key not in SKIP_ON_MERGE and src.dtype(key).is_floating_point


def _channel_merge(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> bool:
    """A's input conv has extra channels (9 inpainting, 8 instruct-pix2pix) that a normal B lacks."""
    return (len(a_shape) == 4 and len(b_shape) == 4 and a_shape[1] in (8, 9) and b_shape[1] == 4
            and a_shape[:1] + a_shape[2:] == b_shape[:1] + b_shape[2:])


def check_compatible(x: Model, y: Model) -> None:
    """Same family and the same shape for every shared mergeable key, else a refusal naming the first mismatch."""
    families_differ = x.family != y.family
    first_missing = None
    for key in x.source.names():
        if not _mergeable(key, x.source):
            continue
        if key not in y.source:
            first_missing = first_missing or key
            continue
        xs, ys = x.source.shape(key), y.source.shape(key)
        if xs == ys:
            continue
        if key == IN_CONV and x.role == "A" and _channel_merge(xs, ys):
            continue
        if key == IN_CONV and ys[1:2] in ((9,), (8,)) and xs[1:2] == (4,) and x.role == "A":
            kind = "inpainting" if ys[1] == 9 else "instruct-pix2pix"
            raise ValidationError(y.field, f"When merging an {kind} model with a normal one, A must be the {kind} model "
                             f"({y.role}: {y.info.name} is the {kind} model, A: {x.info.name} is not).")
        what = "different model families" if families_differ else "the same family but different sizes"
        raise ValidationError(y.field, f"Cannot merge {describe(x)} with {describe(y)}: {what}. First mismatching key: "
                         f"{key} is {list(xs)} in {x.role} and {list(ys)} in {y.role}.")
    if families_differ:
        where = f" First mismatch: {first_missing} is in {x.role} but not in {y.role}." if first_missing else ""
        raise ValidationError(y.field, f"Cannot merge {describe(x)} with {describe(y)}: different model families.{where}")


# --- names ----------------------------------------------------------------------------------------------------
def default_name(params: MergeParams, a: Model, b: Model | None, c: Model | None) -> str:
    """A1111's names: `0.7(a) + 0.3(b)`, `a + 0.3(b - c)`, or A's name for No interpolation."""
    m = params.multiplier
    if params.interp_method == "Weighted sum" and b is not None:
        return f"{round(1 - m, 2)}({a.info.model_name}) + {round(m, 2)}({b.info.model_name})"
    if params.interp_method == "Add difference" and b is not None and c is not None:
        return f"{a.info.model_name} + {round(m, 2)}({b.info.model_name} - {c.info.model_name})"
    return a.info.model_name


def clean_custom_name(name: str) -> str:
    """A file name (no folders) for the output; refuse anything that could point elsewhere."""
    name = name.strip()
    for ext in (".safetensors", ".ckpt"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    if name in ("", ".", "..") or ".." in name or name.startswith("."):
        raise ValidationError("custom_name", f"{name!r} is not a usable file name (no '..' or leading '.')")
    if _BAD_NAME.search(name):
        raise ValidationError("custom_name", "must be a plain file name: no path separators (/ \\), "
                                             'control characters or any of <>:"|?*')
    return name


# --- the plan -------------------------------------------------------------------------------------------------
def _resolve(registry: Any, name: str | None, field_name: str, role: str, label: str) -> Any:
    if not name:
        raise ValidationError(field_name, f"{label} is required for this interpolation method")
    info = registry.closest(name)
    if info is None:
        registry.refresh()
        info = registry.closest(name)
    if info is None:
        available = ", ".join(registry.titles()) or "none"
        raise ValidationError(field_name, f"checkpoint {name!r} not found; available: {available}")
    if info.is_folder:
        raise ValidationError(field_name, f"{info.name} is a diffusers folder; the merger reads single-file "
                                          "checkpoints (.safetensors or .ckpt)")
    return info


def _open(info: Any, role: str, field_name: str) -> Model:
    try:
        source = open_source(info.filename)
    except WebUIError as e:
        raise ValidationError(field_name, str(e)) from None
    model = Model(role=role, field=field_name, info=info, source=source)
    model.family, model.in_channels = family_of(source)
    return model


def _vae_mapping(vae: TensorSource, a: Model, vae_name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """A's `first_stage_model.*` key -> (VAE file key, shape) for every VAE tensor that replaces one of A's."""
    keys = [k for k in vae.names() if not k.startswith(("loss", "model_ema."))]
    names = {k: k[len(VAE_PREFIX):] if k.startswith(VAE_PREFIX) else k for k in keys}
    shapes = {k: vae.shape(k) for k in keys}
    if any(n.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for n in names.values()):
        # A diffusers-layout VAE: rename to the LDM keys (meta tensors: names and shapes only, nothing read).
        from modules.ldm_export import vae_to_ldm

        meta = {names[k]: torch.empty(shapes[k], device="meta") for k in keys}
        converted = vae_to_ldm(meta)
        mapping = {}
        for k, (new, t) in zip(keys, converted.items(), strict=True):
            mapping[VAE_PREFIX + new] = (k, tuple(t.shape))
    else:
        mapping = {VAE_PREFIX + names[k]: (k, shapes[k]) for k in keys}
    found = {}
    for target, (src, shape) in mapping.items():
        if target not in a.source:
            continue
        if tuple(a.source.shape(target)) != tuple(shape):
            raise ValidationError("bake_in_vae", f"VAE {vae_name} does not fit {a.info.name}: {target} is "
                                                 f"{list(a.source.shape(target))} in A and {list(shape)} in the VAE")
        found[target] = (src, shape)
    if not found:
        raise ValidationError("bake_in_vae", f"VAE {vae_name} has no weights that fit {a.info.name} "
                                             "(is it a VAE? is A a Stable Diffusion checkpoint?)")
    return found


def _half(dtype: torch.dtype, save_as_half: bool) -> torch.dtype:
    # A1111's to_half converts float32 only; float64 is converted as well (it never needs the range).
    return torch.float16 if save_as_half and dtype in (torch.float32, torch.float64) else dtype


def _user_metadata(params: MergeParams) -> dict[str, str]:
    text = (params.metadata_json or "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValidationError("metadata_json", f"is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValidationError("metadata_json", "must be a JSON object ({\"key\": \"value\", ...})")
    # safetensors metadata values are strings: anything else is stored as its JSON text.
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def plan_merge(params: MergeParams, registry: Any, vaes: Any, out_dir: Path,
               free_bytes: Any = shutil.disk_usage) -> MergePlan:
    """Every check that can fail, from headers only; returns the plan `merger.execute` carries out."""
    method = params.interp_method
    a_info = _resolve(registry, params.primary_model_name, "primary_model_name", "A", "the primary model (A)")
    b_info = c_info = None
    if method in ("Weighted sum", "Add difference"):
        b_info = _resolve(registry, params.secondary_model_name, "secondary_model_name", "B",
                          "the secondary model (B)")
    if method == "Add difference":
        c_info = _resolve(registry, params.tertiary_model_name, "tertiary_model_name", "C",
                          "the tertiary model (C)")
    discard = None
    if params.discard_weights:
        try:
            discard = re.compile(params.discard_weights)
        except re.error as e:
            raise ValidationError("discard_weights", f"is not a valid regular expression ({e})") from None
    user_meta = _user_metadata(params) if params.save_metadata else {}

    a = _open(a_info, "A", "primary_model_name")
    b = _open(b_info, "B", "secondary_model_name") if b_info else None
    c = _open(c_info, "C", "tertiary_model_name") if c_info else None
    if b is not None:
        check_compatible(a, b)
    if c is not None and b is not None:
        check_compatible(b, c)
    weights = parse_block_weights(params.block_weights, a.family, params.multiplier) if b else None

    vae = vae_map = None
    vae_name = None
    if params.bake_in_vae and params.bake_in_vae != NO_VAE:
        path = vaes.find(params.bake_in_vae)
        if path is None:
            raise ValidationError("bake_in_vae", f"VAE {params.bake_in_vae!r} not found; available: "
                                                 f"{', '.join(vaes.choices()[2:]) or 'none'}")
        try:
            vae = open_source(path)
        except WebUIError as e:
            raise ValidationError("bake_in_vae", str(e)) from None
        vae_name = Path(path).name
        vae_map = _vae_mapping(vae, a, vae_name)

    entries, is_inpainting, is_ip2p = _entries(params, a, b, c, vae, vae_map, weights)
    if discard is not None:  # applied last, as A1111
        entries = [e for e in entries if not discard.search(e.key)]
        if not entries:
            raise ValidationError("discard_weights", "matches every key; the result would be empty")

    stem = clean_custom_name(params.custom_name) if params.custom_name.strip() else default_name(params, a, b, c)
    stem += ".inpainting" if is_inpainting else ""
    stem += ".instruct-pix2pix" if is_ip2p else ""
    filename = f"{stem}.{params.checkpoint_format}"
    out_dir = Path(out_dir).resolve()
    out_path = (out_dir / filename).resolve()
    if out_path.parent != out_dir:  # belt and braces after the name checks
        raise ValidationError("custom_name", f"the output would land outside {out_dir}")
    if out_path.exists() and not params.overwrite:
        raise ValidationError("custom_name", f"{filename} already exists in {out_dir}; choose another name or "
                                             "allow overwriting")
    plan = MergePlan(params=params, a=a, b=b, c=c, vae=vae, vae_name=vae_name, entries=entries, out_dir=out_dir,
                     filename=filename, base_metadata=None, is_inpainting=is_inpainting,
                     is_instruct_pix2pix=is_ip2p, block_weights=weights)
    if params.save_metadata and params.checkpoint_format == "safetensors":
        meta: dict[str, str] = {}
        if params.copy_metadata_fields:
            for m in plan.models():
                meta.update(m.source.metadata)
        meta.update(user_meta)
        meta["format"] = "pt"
        plan.base_metadata = meta
    plan.config_file = _config_to_copy(params.config_source, a, b, c)
    # Room for the recipe's hashes that are added later; the ckpt route keeps a safetensors copy meanwhile.
    size = output_size(_outputs(entries), plan.base_metadata) + 64 * 1024
    plan.output_bytes = size * (2 if params.checkpoint_format == "ckpt" else 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    free = free_bytes(out_dir).free
    if free < plan.output_bytes + DISK_MARGIN:
        raise ValidationError("custom_name", f"not enough free disk space in {out_dir}: the merge needs "
                                             f"{_mb(plan.output_bytes + DISK_MARGIN)}, {_mb(free)} are free")
    return plan


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _outputs(entries: Iterable[Entry]) -> list[OutputTensor]:
    return layout(OutputTensor(e.key, e.dtype, e.shape) for e in entries)


def _entries(params: MergeParams, a: Model, b: Model | None, c: Model | None,
             vae: TensorSource | None, vae_map: dict[str, tuple[str, tuple[int, ...]]] | None,
             weights: BlockWeights | None) -> tuple[list[Entry], bool, bool]:
    half = params.save_as_half
    entries: list[Entry] = []
    is_inpainting = is_ip2p = False
    for key in a.source.names():
        shape, dtype = a.source.shape(key), a.source.dtype(key)
        if vae_map and key in vae_map:
            continue  # added below from the VAE, in place of A's
        if b is None or key not in b.source or not _mergeable(key, a.source) or not b.source.dtype(
                key).is_floating_point:
            entries.append(Entry(key, "copy", _half(dtype, half), shape))
            continue
        m = weights.multiplier(key) if weights is not None else params.multiplier
        use_c = c is not None and key in c.source and c.source.dtype(key).is_floating_point
        if c is not None and not use_c:
            # A1111: B - C is zero where C lacks the key, so A is kept (in the merged dtype).
            entries.append(Entry(key, "copy", _half(torch.promote_types(dtype, b.source.dtype(key)), half), shape))
            continue
        if shape != b.source.shape(key):  # the channel case check_compatible allowed
            if shape[1] == 9:
                is_inpainting = True
            else:
                is_ip2p = True
            entries.append(Entry(key, "merge_channels", _half(dtype, half), shape, m, use_c=use_c))
            continue
        out = torch.promote_types(dtype, b.source.dtype(key))
        if use_c:
            out = torch.promote_types(out, c.source.dtype(key))  # type: ignore[union-attr]
        entries.append(Entry(key, "merge", _half(out, half), shape, m, use_c=use_c))
    if vae_map and vae is not None:
        # A1111 bakes after merging: the VAE's tensors as they are (halved with Save as float16).
        for target, (src, shape) in vae_map.items():
            entries.append(Entry(target, "vae", _half(vae.dtype(src), half), shape, vae_key=src))
    return entries, is_inpainting, is_ip2p


def _config_to_copy(source: int, a: Model, b: Model | None, c: Model | None) -> Path | None:
    """A1111's "Copy config from": 0 = first of A, B, C with one; 1 = B; 2 = C; 3 = none."""
    candidates = {0: [a, b, c], 1: [b], 2: [c]}.get(source, [])
    for m in candidates:
        if m is not None:
            found = m.info.config_override()
            if found is not None:
                return Path(found)
    return None
