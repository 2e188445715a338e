"""External VAE files: listing, choosing one per `sd_vae` (Automatic / None / file), swapping it into a model."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.errors import WebUIError

log = logging.getLogger(__name__)

VAE_EXTENSIONS = (".pt", ".ckpt", ".safetensors")
BESIDE_CHECKPOINT = (".vae.pt", ".vae.ckpt", ".vae.safetensors")
AUTOMATIC, NONE = "Automatic", "None"


class VaeError(WebUIError, ValueError):
    """A VAE file cannot be used with the current model (unreadable, or a different architecture)."""


class VaeDatabase:
    """VAE files in models/VAE (+ --vae-dir) and `*.vae.*` files in the checkpoint folders, by file name."""

    def __init__(self, vae_dirs: Iterable[Path], ckpt_dirs: Iterable[Path] = (), hash_cache: Any = None) -> None:
        self.vae_dirs = [Path(d) for d in vae_dirs]
        self.ckpt_dirs = [Path(d) for d in ckpt_dirs]
        self.hash_cache = hash_cache
        self.files: dict[str, Path] = {}
        self.scanned = False

    def refresh(self) -> list[str]:
        files: dict[str, Path] = {}
        for root in self.vae_dirs:
            if root.is_dir():
                for path in sorted(root.rglob("*")):
                    if path.is_file() and path.suffix.lower() in VAE_EXTENSIONS:
                        files.setdefault(path.name, path)
        for root in self.ckpt_dirs:
            if root.is_dir():
                for path in sorted(root.rglob("*")):
                    if path.is_file() and path.name.lower().endswith(BESIDE_CHECKPOINT):
                        files.setdefault(path.name, path)
        self.files = files
        self.scanned = True
        return list(files)

    def choices(self) -> list[str]:
        """What the `sd_vae` dropdown offers."""
        if not self.scanned:
            self.refresh()
        return [AUTOMATIC, NONE, *self.files]

    def find(self, name: str) -> Path | None:
        if not self.scanned:
            self.refresh()
        if name in self.files:
            return self.files[name]
        stemmed = {Path(k).stem: v for k, v in self.files.items()}
        return stemmed.get(name)

    def shorthash(self, path: Path) -> str | None:
        """10-hex sha256 as A1111 writes `VAE hash` (cached per file, not under one shared title)."""
        if self.hash_cache is None:
            return None
        try:
            return self.hash_cache.sha256(path, f"vae/{path.name}")[:10]
        except OSError as e:
            log.warning("Cannot hash %s: %s", path, e)
            return None


def beside_checkpoint(checkpoint: str | Path | None) -> Path | None:
    """`model.vae.pt` / `.vae.ckpt` / `.vae.safetensors` next to `model.safetensors`, if there is one."""
    if not checkpoint:
        return None
    ckpt = Path(checkpoint)
    stem = ckpt.name[: -len(ckpt.suffix)] if ckpt.suffix else ckpt.name
    for ext in BESIDE_CHECKPOINT:
        candidate = ckpt.with_name(stem + ext)
        if candidate.is_file():
            return candidate
    return None


def preferred_vae(checkpoint: str | Path | None) -> str | None:
    """The checkpoint's user-metadata `vae` (A1111's "Preferred VAE" in `<model>.json`), if set."""
    if not checkpoint:
        return None
    ckpt = Path(checkpoint)
    meta = ckpt.with_suffix(".json") if ckpt.suffix else ckpt.with_name(ckpt.name + ".json")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("vae") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


@dataclass
class VaeChoice:
    path: Path | None  # None = the checkpoint's own VAE
    source: str


def resolve(setting: str | None, checkpoint: str | Path | None, db: VaeDatabase,
            overrides_preferences: bool = True) -> VaeChoice:
    """A1111's order: an explicit selection (if it overrides per-model preferences), the model's preferred VAE,
    the selection, a same-named file beside the checkpoint (Automatic), else the built-in VAE."""
    setting = setting or AUTOMATIC
    explicit = setting not in (AUTOMATIC, NONE)
    if explicit and overrides_preferences:
        return _named(setting, db, "settings")
    preferred = preferred_vae(checkpoint)
    if preferred and preferred != AUTOMATIC:
        if preferred == NONE:
            return VaeChoice(None, "model preference")
        path = db.find(preferred)
        if path is not None:
            return VaeChoice(path, "model preference")
    if explicit:
        return _named(setting, db, "settings")
    if setting == NONE:
        return VaeChoice(None, "settings")
    found = beside_checkpoint(checkpoint)
    return VaeChoice(found, "beside the checkpoint") if found else VaeChoice(None, "built in")


def _named(name: str, db: VaeDatabase, source: str) -> VaeChoice:
    path = db.find(name)
    if path is None:
        raise VaeError(f"VAE {name!r} not found in {', '.join(str(d) for d in db.vae_dirs)}; "
                       "press refresh or pick another one in the SD VAE list.")
    return VaeChoice(path, source)


def _diffusers_state(path: Path, config: dict) -> dict:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from modules.safe_load import load_state_dict

    try:
        state = load_state_dict(path)
    except WebUIError as e:
        raise VaeError(f"VAE {path.name}: {e}") from e
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in state):
        return state  # already diffusers layout
    state = {k: v for k, v in state.items() if not k.startswith(("loss.", "model_ema."))}
    return convert_ldm_vae_checkpoint(state, config)


def load_vae_module(path: Path, reference: Any) -> Any:
    """A new VAE of the model's own VAE class and config, holding the weights of `path`.

    The model's config is kept, so its `scaling_factor` (SD1 0.18215, SDXL 0.13025) still applies.
    """
    import torch

    vae = type(reference).from_config(reference.config)
    state = _diffusers_state(path, dict(reference.config))
    result = vae.load_state_dict(state, strict=False)
    own = vae.state_dict()
    missing = [k for k in result.missing_keys if k in own]
    if missing or not state:
        raise VaeError(f"VAE {path.name} does not fit this model: {len(missing)} weights missing "
                       f"(e.g. {missing[:1]}); is it a VAE for another model type?")
    param = next(reference.parameters())
    return vae.to(device=param.device, dtype=param.dtype).eval().requires_grad_(False) if isinstance(
        vae, torch.nn.Module) else vae


def apply_vae(model: Any, path: Path | None) -> bool:
    """Put the VAE of `path` (None: the checkpoint's own) into `model.pipe`; True if it changed."""
    extra = model.extra
    original = extra.setdefault("vae_original", model.pipe.vae)
    current = extra.get("vae_file")
    if current == (str(path) if path else None):
        return False
    if path is None:
        model.pipe.vae = original
    else:
        try:
            model.pipe.vae = load_vae_module(path, original)
        except RuntimeError as e:  # size mismatch from load_state_dict
            raise VaeError(f"VAE {path.name} does not fit this model: {str(e).splitlines()[0]}") from None
    extra["vae_file"] = str(path) if path else None
    return True


class VaeSelector:
    """Per batch: choose the VAE from `sd_vae` (with this job's overrides) and record its name and hash on p."""

    def __init__(self, db: VaeDatabase) -> None:
        self.db = db

    def __call__(self, p: Any) -> None:
        model = p.sd_model
        if model is None:
            return
        checkpoint = getattr(model, "path", None)
        try:
            choice = resolve(p.opt("sd_vae", AUTOMATIC), checkpoint, self.db,
                             bool(p.opt("sd_vae_overrides_per_model_preferences", True)))
            apply_vae(model, choice.path)
        except VaeError as e:
            # As A1111: a VAE that cannot be used falls back to the checkpoint's own, and the user is told.
            from modules.extra_networks import add_error

            log.warning("%s", e)
            add_error(p, f"{e} Using the checkpoint's own VAE.")
            choice = VaeChoice(None, "fallback")
            apply_vae(model, None)
        if choice.path is None:
            p.sd_vae_name = p.sd_vae_hash = None
        else:
            p.sd_vae_name, p.sd_vae_hash = choice.path.name, self.db.shorthash(choice.path)


# A1111's module-level names for extensions (see compat_surface): vae_dict is read live from the database.
from modules.compat_surface import load_vae_dict, refresh_vae_list  # noqa: E402, F401


def __getattr__(name: str) -> Any:
    if name == "vae_dict":
        from modules.compat_surface import vae_dict

        return vae_dict()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
