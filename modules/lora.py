"""LoRA files: discovery under models/Lora, key names -> model modules, activation through the model patcher."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.errors import WebUIError
from modules.lora_networks import PART_TOKENS, NetworkLayerError, layer_delta, normalize_parts
from modules.model_patcher import LowRank

log = logging.getLogger(__name__)

LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
_PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
# A1111 refuses these as aliases (they collide with common words/other files) and asks for the filename.
_FORBIDDEN_ALIASES = {"none", "addams"}


class LoraError(WebUIError, ValueError):
    """A LoRA cannot be used with the current model; the message starts with the LoRA's name."""


@dataclass
class LoraFile:
    """One file found under the Lora folder, with its safetensors metadata (kohya `ss_*` keys)."""

    name: str  # filename stem, the name used in `<lora:name:...>`
    filename: Path
    folder: str  # path of the containing folder relative to the root ("" at top level)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return self.metadata.get("ss_output_name") or self.name

    @property
    def mtime(self) -> float:
        try:
            return os.path.getmtime(self.filename)
        except OSError:
            return -1.0

    @property
    def sd_version(self) -> str:
        """A1111's guess from training metadata: SDXL, SD2, SD1 or Unknown."""
        base = str(self.metadata.get("ss_base_model_version", ""))
        if base.startswith("sdxl_"):
            return "SDXL"
        if str(self.metadata.get("ss_v2", "")) == "True":
            return "SD2"
        return "SD1" if self.metadata else "Unknown"


def read_metadata(path: Path) -> dict[str, str]:
    """`__metadata__` of a .safetensors file (empty for other formats or unreadable headers)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    from modules.safe_load import read_safetensors_header

    try:
        meta = read_safetensors_header(path).get("__metadata__") or {}
    except (OSError, WebUIError) as e:
        log.warning("Cannot read metadata of %s: %s", path, e)
        return {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


class LoraDatabase:
    """LoRA files under one or more folders (recursive); name/alias lookup and loaded tensors cached by mtime."""

    def __init__(self, dirs: Iterable[Path], hash_cache: Any = None) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.hash_cache = hash_cache
        self.files: dict[str, LoraFile] = {}
        self._aliases: dict[str, LoraFile] = {}
        self._forbidden: set[str] = set()
        self._loaded: dict[str, tuple[float, dict[str, dict[str, torch.Tensor]]]] = {}
        self.scanned = False

    def refresh(self) -> list[LoraFile]:
        files: dict[str, LoraFile] = {}
        for root in self.dirs:
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() not in LORA_EXTENSIONS or not path.is_file():
                    continue
                rel = path.parent.relative_to(root).as_posix()
                files.setdefault(path.stem, LoraFile(path.stem, path, "" if rel == "." else rel, read_metadata(path)))
        counts: dict[str, int] = {}
        for f in files.values():
            counts[f.alias] = counts.get(f.alias, 0) + 1
        self._forbidden = {a for a, n in counts.items() if n > 1} | _FORBIDDEN_ALIASES
        self._aliases = {f.alias: f for f in files.values() if f.alias not in self._forbidden}
        self.files = files
        self._loaded = {k: v for k, v in self._loaded.items() if k in {str(f.filename) for f in files.values()}}
        self.scanned = True
        return list(files.values())

    def find(self, name: str) -> LoraFile | None:
        """By filename stem, then by `ss_output_name` alias (ambiguous aliases must use the filename)."""
        if not self.scanned:
            self.refresh()
        return self.files.get(name) or self._aliases.get(name)

    def groups(self, lora: LoraFile) -> dict[str, dict[str, torch.Tensor]]:
        """The file's tensors grouped by module name: {'lora_unet_x': {'lora_up.weight': ..., 'alpha': ...}}."""
        key = str(lora.filename)
        mtime = lora.mtime
        cached = self._loaded.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        from modules.safe_load import load_state_dict

        try:
            state = load_state_dict(lora.filename)
        except WebUIError as e:
            raise LoraError(f"{lora.name}: cannot read the file ({e})") from e
        grouped = group_keys(state)
        self._loaded[key] = (mtime, grouped)
        return grouped

    def shorthash(self, lora: LoraFile) -> str | None:
        """First 12 hex of the addnet hash (full sha256 for non-safetensors files), cached as A1111 does."""
        if self.hash_cache is None:
            return None
        try:
            value = self.hash_cache.sha256(lora.filename, f"lora/{lora.name}", "hashes-addnet",
                                           use_addnet=lora.filename.suffix.lower() == ".safetensors")
        except (OSError, ValueError) as e:
            log.warning("Cannot hash %s: %s", lora.filename, e)
            return None
        return value[:12]

    def keep_only(self, filenames: set[str]) -> None:
        """Drop loaded tensors of files not in the active set (`lora_in_memory_limit` 0, A1111's default)."""
        self._loaded = {k: v for k, v in self._loaded.items() if k in filenames}


def group_keys(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Split every key into (module name, network part); PEFT's `base_model.model.` prefix is dropped."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key.startswith("bundle_emb."):
            continue  # bundled textual-inversion embeddings are not layer weights
        k = key.removeprefix("base_model.model.")
        segments = k.split(".")
        cut = next((i for i in range(1, len(segments)) if segments[i] in PART_TOKENS), None)
        if cut is None:
            module, part = k, ""
        else:
            module, part = ".".join(segments[:cut]), ".".join(segments[cut:])
        groups.setdefault(module, {})[part] = tensor
    return groups


def _underscored(path: str) -> str:
    return path.replace(".", "_")


def module_index(model: Any) -> dict[str, tuple[str, torch.nn.Module]]:
    """Every accepted spelling of every patchable module -> (parameter prefix for the patcher, module).

    Built from the model itself: kohya's names are the diffusers module path with `.` -> `_` under `lora_unet_`
    / `lora_te_` (SDXL: `lora_te1_`/`lora_te2_`); SDXL-style LDM names come from our diffusers->LDM UNet
    mapping; diffusers/PEFT files use the dotted path under `unet.`/`text_encoder.`/`text_encoder_2.`.
    """
    cached = model.extra.get("lora_module_index")
    if cached is not None:
        return cached
    from modules.ldm_export import LdmExportError, _layers_per_block, _unet_key
    from modules.model_patcher import model_roots

    index: dict[str, tuple[str, torch.nn.Module]] = {}
    roots = model_roots(model)
    te_prefixes = {"text_encoder": ["lora_te1_"] if "text_encoder_2" in roots else ["lora_te_"],
                   "text_encoder_2": ["lora_te2_"] if "text_encoder" in roots else ["lora_te2_", "lora_te_"]}
    for root_name, root in roots.items():
        per_block, up_attention = None, set()
        if root_name == "unet":
            try:
                per_block = _layers_per_block(dict(root.config))
            except LdmExportError:
                per_block = None
            up_attention = {int(m.group(1)) for n, _ in root.named_modules()
                            if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", n))}
        for path, module in root.named_modules():
            if not isinstance(module, _PATCHABLE):
                continue
            target = (f"{root_name}.{path}", module)
            index[f"{root_name}.{path}"] = target
            if root_name == "unet":
                index["lora_unet_" + _underscored(path)] = target
                if per_block is not None:
                    try:
                        ldm = _unet_key(path + ".weight", per_block, up_attention).removesuffix(".weight")
                    except LdmExportError:
                        continue
                    index["lora_unet_" + _underscored(ldm)] = target
                    index["diffusion_model_" + _underscored(ldm)] = target
            else:
                # transformers 5 dropped CLIPTextModel's `text_model.` level; files still spell it.
                spellings = [path] if path.startswith("text_model.") else [path, "text_model." + path]
                for spelled in spellings:
                    index.setdefault(f"{root_name}.{spelled}", target)
                    for prefix in te_prefixes[root_name]:
                        index.setdefault(prefix + _underscored(spelled), target)
    model.extra["lora_module_index"] = index
    return index


@dataclass
class LoraRequest:
    """One `<lora:...>` mention: the name as written and its multipliers (A1111's positional/named args)."""

    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None

    @classmethod
    def from_params(cls, params: Any, default_multiplier: float = 1.0) -> LoraRequest:
        pos, named = list(params.positional), dict(params.named)
        if not pos or not str(pos[0]).strip():
            raise LoraError("a <lora:...> tag has no name")
        name = str(pos[0]).strip()
        try:
            te = float(named.get("te", pos[1] if len(pos) > 1 else default_multiplier))
            unet = float(named.get("unet", pos[2] if len(pos) > 2 else te))
            dyn_raw = named.get("dyn", pos[3] if len(pos) > 3 else None)
            dyn = int(dyn_raw) if dyn_raw not in (None, "") else None
        except ValueError as e:
            raise LoraError(f"{name}: bad multiplier in <lora:{':'.join(map(str, params.items))}> ({e})") from None
        return cls(name, te, unet, dyn)


def _scaled(delta: Any, mult: float) -> Any:
    if isinstance(delta, LowRank):
        return delta.scaled(mult)
    if callable(delta):
        return lambda orig: delta(orig) * mult
    return delta * mult


def lora_patches(groups: Mapping[str, Mapping[str, torch.Tensor]], index: Mapping[str, tuple[str, torch.nn.Module]],
                 request: LoraRequest, name: str) -> dict[str, list[Any]]:
    """Patches of one LoRA for the patcher, or LoraError naming the LoRA (never a partial set)."""
    unknown = [m for m in groups if m not in index]
    if unknown:
        hint = ""
        if any(m.startswith(("lora_te1_", "lora_te2_")) for m in unknown):
            hint = " It looks like an SDXL LoRA."
        raise LoraError(f"{name}: {len(unknown)} of {len(groups)} layers do not exist in this model "
                        f"(e.g. {unknown[0]!r}); it was made for a different model type.{hint}")
    out: dict[str, list[Any]] = {}
    for module_name, parts in groups.items():
        prefix, module = index[module_name]
        mult = request.te if prefix.startswith("text_encoder") else request.unet
        try:
            delta = layer_delta(normalize_parts(parts), module, module_name, request.dyn)
            # Validate eagerly so that a wrong shape fails here, before anything is patched.
            if isinstance(delta.weight, torch.Tensor) and delta.weight.shape != module.weight.shape:
                raise NetworkLayerError(f"layer {module_name}: shape {tuple(delta.weight.shape)} does not "
                                        f"fit {tuple(module.weight.shape)}")
            if delta.bias is not None:
                bias = getattr(module, "bias", None)
                if bias is None or bias.numel() != delta.bias.numel():
                    raise NetworkLayerError(f"layer {module_name}: bias delta does not fit the module")
        except NetworkLayerError as e:
            raise LoraError(f"{name}: {e}") from None
        if delta.weight is not None:
            out.setdefault(prefix + ".weight", []).append(_scaled(delta.weight, mult))
        if delta.bias is not None:
            out.setdefault(prefix + ".bias", []).append(_scaled(delta.bias.reshape(module.bias.shape), mult))
    return out


@dataclass
class ActivationResult:
    """What happened: applied names with hashes (for infotext), per-LoRA errors, whether weights were written."""

    hashes: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    written: bool = False
    te_salt: Any = None


def activate(model: Any, db: LoraDatabase, requests: list[LoraRequest],
             on_text_encoder_change: Callable[[Any], None] | None = None) -> ActivationResult:
    """Make `model` carry exactly `requests` (an empty list restores it); unchanged sets cost nothing."""
    from modules.model_patcher import patcher_for

    patcher = patcher_for(model)
    result = ActivationResult()
    resolved: list[tuple[LoraRequest, LoraFile]] = []
    for req in requests:
        lora = db.find(req.name)
        if lora is None:
            result.errors[req.name] = f"Lora not found: {req.name}"
            continue
        resolved.append((req, lora))
    key = tuple((str(lora.filename), lora.mtime, req.te, req.unet, req.dyn) for req, lora in resolved)
    cached_errors = model.extra.get("lora_errors", {}) if key == patcher.current_key else None
    if cached_errors is not None:
        result.errors.update(cached_errors)
        result.te_salt = model.extra.get("lora_te_salt")
        _add_hashes(result, db, resolved)
        return result
    index = module_index(model)
    merged: dict[str, list[Any]] = {}
    errors: dict[str, str] = {}
    te_salt = []
    for req, lora in resolved:
        try:
            patches = lora_patches(db.groups(lora), index, req, lora.name)
        except LoraError as e:
            errors[req.name] = str(e)
            log.warning("%s", e)
            continue
        for param, deltas in patches.items():
            merged.setdefault(param, []).extend(deltas)
        if any(p.startswith("text_encoder") for p in patches):
            te_salt.append((str(lora.filename), lora.mtime, req.te, req.dyn))
    db.keep_only({str(lora.filename) for _r, lora in resolved})
    salt = tuple(te_salt) or None
    previous_salt = model.extra.get("lora_te_salt")
    result.written = patcher.apply(key, merged)
    model.extra["lora_errors"] = errors
    model.extra["lora_te_salt"] = salt
    result.errors.update(errors)
    result.te_salt = salt
    if salt != previous_salt and on_text_encoder_change is not None:
        on_text_encoder_change(salt)
    _add_hashes(result, db, resolved)
    return result


def _add_hashes(result: ActivationResult, db: LoraDatabase, resolved: list[tuple[LoraRequest, LoraFile]]) -> None:
    """Hashes of the LoRAs that were applied (not of the ones reported as errors), for `Lora hashes`."""
    for req, lora in resolved:
        if req.name in result.errors:
            continue
        h = db.shorthash(lora)
        if h:
            result.hashes.append((req.name.replace(":", "").replace(",", ""), h))


def lora_hashes_infotext(hashes: list[tuple[str, str]]) -> str:
    """The `Lora hashes` value: `name: hash, name2: hash2`."""
    return ", ".join(f"{name}: {h}" for name, h in hashes)


class ExtraNetworkLora:
    """The `<lora:...>` handler: parses the tags, patches the job's model, writes `Lora hashes`, reports errors."""

    name = "lora"

    def __init__(self, db: LoraDatabase) -> None:
        self.db = db

    def activate(self, p: Any, params_list: list[Any]) -> None:
        from modules.extra_networks import add_error

        default = float(p.opt("extra_networks_default_multiplier", 1.0) or 1.0)
        requests: list[LoraRequest] = []
        for params in params_list:
            try:
                requests.append(LoraRequest.from_params(params, default))
            except LoraError as e:
                add_error(p, str(e))
        conditioner = getattr(p, "conditioner", None)
        result = activate(p.sd_model, self.db, requests)
        # Encoded prompts depend on text-encoder weights: the salt keys the conditioner's cache by LoRA set.
        if conditioner is not None and hasattr(conditioner, "cache_salt"):
            conditioner.cache_salt = result.te_salt
        for message in result.errors.values():
            add_error(p, message)
        if result.hashes and p.opt("lora_add_hashes_to_infotext", True):
            p.extra_generation_params["Lora hashes"] = lora_hashes_infotext(result.hashes)
        elif "Lora hashes" in p.extra_generation_params and not requests:
            del p.extra_generation_params["Lora hashes"]

    def deactivate(self, p: Any) -> None:
        # As A1111: weights stay patched after the job, so the next job with the same LoRAs costs nothing;
        # the next job without them restores the originals when it activates an empty list.
        return None
