"""A1111's model-file helpers (`load_models`, `friendly_name`, `load_file_from_url`) and safe spandrel loading.

Nothing here downloads: `load_file_from_url` returns a file that is already in place, or raises an error that
says which file to put into which folder.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from modules.errors import ModelLoadError, UnknownArchitectureError, UnsafeFileError, ValidationError, WebUIError

MODEL_EXTENSIONS = (".pth", ".safetensors", ".pt", ".ckpt")
"""Upscaler and face-restorer weights: what A1111's folders hold."""


class ModelFileMissingError(WebUIError):
    """A model file that A1111 would download is not on disk; the message says what to put where."""

    def __init__(self, file_name: str, folder: Path | str, url: str | None = None, what: str = "") -> None:
        self.file_name, self.folder, self.url = file_name, str(folder), url
        source = f" (download it from {url} yourself)" if url else ""
        lead = f"{what} needs " if what else "Missing model file: "
        super().__init__(f"{lead}{file_name}: put it into {self.folder}{source}. Nothing is downloaded at run time.")


def friendly_name(file: str | os.PathLike[str]) -> str:
    """A1111's name for a model file: the file name without folder and extension (URLs too)."""
    text = str(file)
    if text.startswith(("http://", "https://")):
        text = urlparse(text).path
    return os.path.splitext(os.path.basename(text))[0]


def list_model_files(folders: Iterable[Path | str | None], extensions: Iterable[str] = MODEL_EXTENSIONS,
                     include_hidden: bool = True) -> list[Path]:
    """Model files below the folders (recursive, sorted, each file once); folders that do not exist are skipped."""
    exts = tuple(e.lower() for e in extensions)
    seen: set[Path] = set()
    out: list[Path] = []
    for folder in folders:
        if not folder:
            continue
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).parts
            if not include_hidden and any(part.startswith(".") for part in rel):
                continue
            if path.is_file() and path.suffix.lower() in exts:
                resolved = path.resolve()
                if resolved not in seen:
                    seen.add(resolved)
                    out.append(path)
    return out


def load_models(model_path: str | os.PathLike[str], model_url: str | None = None,
                command_path: str | os.PathLike[str] | None = None, ext_filter: Iterable[str] | None = None,
                download_name: str | None = None, ext_blacklist: Iterable[str] | None = None,
                hash_prefix: str | None = None) -> list[str]:
    """A1111's `modelloader.load_models`: the model files in `command_path` (the --*-models-path flag) and
    `model_path`, filtered by extension. A1111 would download `model_url` when nothing is found; we never do,
    so then the list is simply empty and the caller says which file is missing."""
    exts = [e.lower() for e in (ext_filter or MODEL_EXTENSIONS)]
    blacklist = tuple(e.lower() for e in (ext_blacklist or ()))
    folders = [command_path, model_path] if command_path and str(command_path) != str(model_path) else [model_path]
    files = list_model_files(folders, exts)
    return [str(f) for f in files if not str(f).lower().endswith(blacklist)] if blacklist else [str(f) for f in files]


def load_file_from_url(url: str, *, model_dir: str | os.PathLike[str], progress: bool = True,
                       file_name: str | None = None, hash_prefix: str | None = None) -> str:
    """A1111's helper, without the download: the path of `model_dir/<file name>` if it exists, else
    ModelFileMissingError naming the file, the folder and the URL to fetch it from by hand."""
    name = file_name or os.path.basename(urlparse(url).path)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValidationError("file_name", f"{name!r} is not a plain file name")
    path = Path(model_dir).expanduser() / name
    if path.is_file():
        return str(path)
    raise ModelFileMissingError(name, Path(model_dir).expanduser(), url)


# --- safe loading ---------------------------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(path, "the file does not exist (was it moved or deleted? press refresh)")
    if path.is_dir():
        raise ModelLoadError(path, "this is a folder, not a model file")
    if path.stat().st_size == 0:
        raise ModelLoadError(path, "the file is empty (0 bytes); the download is probably incomplete")


def load_state_dict(path: Path | str) -> dict[str, Any]:
    """The tensors of an upscaler/face-restorer file, unwrapped as spandrel does (`params_ema`, `module.`...).

    `.safetensors` goes through safe_load; `.pth`/`.pt`/`.ckpt` through `torch.load(weights_only=True)`,
    which builds tensors and plain containers only: a pickle that asks for a function is refused, naming it.
    The nesting is kept here (real ESRGAN/GFPGAN files wrap their tensors in `params_ema`), which is why
    this does not reuse safe_load's checkpoint unwrapping.
    """
    import torch
    from spandrel import canonicalize_state_dict

    from modules import safe_load

    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        obj: Any = safe_load.load_state_dict(path)
    elif suffix in (".pth", ".pt", ".ckpt", ".bin"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            with open(path, "rb") as f:
                head = f.read(2)
            if head[:2] != b"PK" and head[:1] != b"\x80":  # neither a torch zip nor a pickle: junk, not an attack
                raise ModelLoadError(path, "corrupt or truncated file (not a PyTorch model file; an HTML error "
                                           "page or an incomplete download?)") from None
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = found.group(1) if found else "a non-tensor object"
            raise UnsafeFileError(path, f"refused: the pickle asks to load {what}, which is not allowed in a "
                                        "model file (it could run code). Use a .safetensors version.") from None
        except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(path, f"corrupt or truncated file ({msg})") from None
    else:
        raise ModelLoadError(path, f"unsupported file type {suffix!r} (expected .pth or .safetensors)")
    if not isinstance(obj, dict):
        raise ModelLoadError(path, f"the file holds a {type(obj).__name__}, not a dictionary of tensors")
    obj = canonicalize_state_dict(obj)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UnknownArchitectureError(path, "the file holds no tensors")
    return tensors


_extra_arches_installed = False


def _install_extra_arches() -> None:
    """CodeFormer (and other non-commercial architectures) live in spandrel_extra_arches; register them once."""
    global _extra_arches_installed
    if _extra_arches_installed:
        return
    try:
        import spandrel_extra_arches
    except ImportError:  # optional: GFPGAN and all upscalers work without it
        _extra_arches_installed = True
        return
    spandrel_extra_arches.install(ignore_duplicates=True)
    _extra_arches_installed = True


def describe_state_dict(state_dict: dict[str, Any], path: Path | str) -> Any:
    """The spandrel ModelDescriptor for loaded tensors; UnknownArchitectureError when spandrel knows none."""
    from spandrel import ModelLoader, UnsupportedModelError

    _install_extra_arches()
    try:
        return ModelLoader().load_from_state_dict(state_dict)
    except UnsupportedModelError:
        raise UnknownArchitectureError(path, "spandrel does not recognise this architecture (not an ESRGAN, "
                                             "Real-ESRGAN, SwinIR, DAT, HAT, SCUNet, GFPGAN or CodeFormer "
                                             "model?)") from None
    except (RuntimeError, KeyError, ValueError, AssertionError, IndexError, TypeError) as e:
        # Detection matched by keys but the tensors do not fit the architecture (a damaged or edited file).
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(path, f"the tensors do not fit the detected architecture ({msg})") from None


def load_spandrel_model(path: Path | str, *, device: Any = "cpu", prefer_half: bool = False, dtype: Any = None,
                        expected_architecture: str | None = None) -> Any:
    """A1111's `modelloader.load_spandrel_model`: safe load, detect, move to device/dtype, eval mode."""
    descriptor = describe_state_dict(load_state_dict(path), path)
    arch = descriptor.architecture
    if expected_architecture and expected_architecture not in (str(arch.id), arch.name):
        raise ModelLoadError(path, f"this is a {arch.name} model, not {expected_architecture}")
    descriptor.model.eval()
    descriptor.to(device)
    if dtype is not None:
        descriptor.to(dtype)
    elif prefer_half and descriptor.supports_half:
        descriptor.model.half()
    return descriptor
