"""Reading checkpoint files safely: safetensors first, pickles only through torch's weights-only loader."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
from pathlib import Path
from typing import Any

from modules.errors import ModelLoadError, UnsafeFileError

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class _LegacyModelCheckpoint:
    """Stands in for pytorch_lightning's ModelCheckpoint callback pickled into SD1.x .ckpt files.

    The object is inert: its state is kept as a dict and nothing of it is ever called.
    """

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _legacy_globals() -> list[Any]:
    """The few non-tensor globals real SD checkpoints contain, mapped to inert or harmless objects."""
    import codecs

    import numpy as np

    try:
        from numpy._core.multiarray import scalar as np_scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar as np_scalar  # type: ignore[no-redef]
    items: list[Any] = [
        (_LegacyModelCheckpoint, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
        (np_scalar, "numpy.core.multiarray.scalar"),
        (np_scalar, "numpy._core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
        (codecs.encode, "_codecs.encode"),
    ]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        cls = getattr(np.dtypes, name, None)
        if cls is not None:
            items.append((cls, f"numpy.dtypes.{name}"))
    return items


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(path, "the file does not exist (was it moved or deleted? press refresh)")
    if path.is_dir():
        raise ModelLoadError(path, "this is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise ModelLoadError(path, "the file is empty (0 bytes); the download is probably incomplete")


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """Parse and sanity-check the JSON header of a .safetensors file without reading tensors."""
    path = Path(path)
    _check_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ModelLoadError(path, "truncated .safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise ModelLoadError(path, "corrupt or truncated .safetensors file (header length points past the end)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelLoadError(path, f"corrupt .safetensors header ({e})") from e
    if not isinstance(header, dict):
        raise ModelLoadError(path, "corrupt .safetensors header (not a JSON object)")
    data_len = size - 8 - n
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not offsets or len(offsets) != 2 or offsets[1] > data_len:
            raise ModelLoadError(path, f"truncated .safetensors file: tensor {key!r} lies past the end of the file")
    return header


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a .safetensors file, from the header only (cheap detection)."""
    header = read_safetensors_header(path)
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _unwrap(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError(path, f"the file holds a {type(obj).__name__}, not a dictionary of tensors")
    import torch

    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_state_dict(path: Path | str, *, disable_mmap: bool = False) -> dict[str, Any]:
    """Read every tensor of a checkpoint to CPU.

    `.safetensors` is memory-mapped. `.ckpt`/`.pt`/`.bin`/`.pth` go through
    `torch.load(weights_only=True)` with only the legacy globals of real SD checkpoints allowed;
    a pickle that asks for anything else is refused, naming what it asked for.
    """
    import torch

    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        read_safetensors_header(path)
        from safetensors import SafetensorError
        from safetensors.torch import load, load_file

        try:
            if disable_mmap:
                return load(path.read_bytes())
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, RuntimeError) as e:
            raise ModelLoadError(path, f"corrupt .safetensors file ({e})") from e
    if suffix in (".ckpt", ".pt", ".pth", ".bin"):
        try:
            with torch.serialization.safe_globals(_legacy_globals()):
                obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=not disable_mmap)
        except pickle.UnpicklingError as e:
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = found.group(1) if found else "a non-tensor object"
            raise UnsafeFileError(path, f"refused: the pickle asks to load {what}, which is not allowed in a "
                                        "checkpoint (it could run code). Use a .safetensors version of this "
                                        "model.") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(path, f"corrupt or truncated file ({msg})") from None
        return _unwrap(obj, path)
    raise ModelLoadError(path, f"unsupported file type {suffix!r} (expected .safetensors or .ckpt)")


def file_shapes(path: Path | str) -> dict[str, tuple[int, ...]]:
    """Key -> shape for any checkpoint file (header read for safetensors, restricted load otherwise)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return read_shapes(path)
    return {k: tuple(v.shape) for k, v in load_state_dict(path).items()}


def exists_and_readable(path: Path | str) -> bool:
    return os.access(path, os.R_OK)
