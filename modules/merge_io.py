"""Tensor-at-a-time checkpoint I/O for the merger: memory-mapped readers and a streaming safetensors writer."""

from __future__ import annotations

import json
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from modules.errors import ModelLoadError, WebUIError
from modules.safe_load import load_state_dict, read_safetensors_header

# safetensors dtype names <-> torch dtypes (the ones checkpoints use).
ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
ST_NAMES: dict[torch.dtype, str] = {v: k for k, v in ST_DTYPES.items()}


def dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def nbytes(shape: Iterable[int], dtype: torch.dtype) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * dtype_size(dtype)


class TensorSource:
    """Keys, shapes and dtypes of a checkpoint without reading weights; `get` reads one tensor."""

    path: Path
    metadata: dict[str, str]

    def names(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __contains__(self, key: str) -> bool:
        return key in self._index()

    def _index(self) -> Mapping[str, Any]:
        raise NotImplementedError


class SafetensorsSource(TensorSource):
    """A .safetensors file: the header is parsed (and checked against the file size) up front; tensors are
    read one at a time from the memory-mapped file, so only the tensor asked for becomes private memory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        header = read_safetensors_header(self.path)
        meta = header.pop("__metadata__", None) or {}
        self.metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
        self._header: dict[str, dict[str, Any]] = {}
        for key, info in header.items():
            if info.get("dtype") not in ST_DTYPES:
                raise ModelLoadError(self.path, f"tensor {key!r} has an unsupported dtype {info.get('dtype')!r}")
            self._header[key] = info
        self._handle: Any = None

    def _index(self) -> Mapping[str, Any]:
        return self._header

    def names(self) -> list[str]:
        # File order: reading in it makes the reads of a source sequential.
        return sorted(self._header, key=lambda k: self._header[k]["data_offsets"][0])

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._header[key]["shape"])

    def dtype(self, key: str) -> torch.dtype:
        return ST_DTYPES[self._header[key]["dtype"]]

    def get(self, key: str) -> torch.Tensor:
        if self._handle is None:
            from safetensors import safe_open

            self._handle = safe_open(str(self.path), framework="pt", device="cpu")
        return self._handle.get_tensor(key)

    def close(self) -> None:
        self._handle = None


class TorchSource(TensorSource):
    """A .ckpt/.pt file through the weights-only loader, memory-mapped (zip format): tensors stay page cache
    until touched."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.metadata = {}
        self._sd: dict[str, torch.Tensor] = load_state_dict(self.path)

    def _index(self) -> Mapping[str, Any]:
        return self._sd

    def names(self) -> list[str]:
        return list(self._sd)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._sd[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._sd[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self._sd[key]

    def close(self) -> None:
        self._sd = {}


def open_source(path: Path | str) -> TensorSource:
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return SafetensorsSource(path)
    return TorchSource(path)


@dataclass(frozen=True)
class OutputTensor:
    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]


def layout(entries: Iterable[OutputTensor]) -> list[OutputTensor]:
    """The order tensors are written in: wider dtypes first, so every tensor starts at an offset aligned to its
    element size (the ckpt conversion maps them in place); within a dtype the given (source file) order."""
    items = list(entries)
    return sorted(items, key=lambda e: -dtype_size(e.dtype))


def safetensors_header(entries: list[OutputTensor], metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for e in entries:
        size = nbytes(e.shape, e.dtype)
        header[e.key] = {"dtype": ST_NAMES[e.dtype], "shape": list(e.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw


def output_size(entries: list[OutputTensor], metadata: Mapping[str, str] | None) -> int:
    return len(safetensors_header(entries, metadata)) + sum(nbytes(e.shape, e.dtype) for e in entries)


class SafetensorsWriter:
    """Writes a .safetensors file whose header is known before the first tensor: tensors arrive one by one (each
    possibly in pieces), in `entries` order, and each is checked against what the header promised."""

    def __init__(self, f: BinaryIO, entries: list[OutputTensor], metadata: Mapping[str, str] | None) -> None:
        self.f = f
        self.entries = entries
        self._next = 0
        self._pending = 0  # bytes still owed for the tensor being written
        f.write(safetensors_header(entries, metadata))
        # The write system calls run on a thread, so the next chunk is computed while this one is copied out.
        self._queue: queue.Queue[tuple[Any, Callable[[], None] | None] | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True, name="merge-writer")
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            data, done = item
            try:
                if self._error is None:
                    self.f.write(data)
            except BaseException as e:  # re-raised in the merging thread by the next write or finish
                self._error = e
            finally:
                if done is not None:
                    done()

    def begin(self, key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
        expected = self.entries[self._next] if self._next < len(self.entries) else None
        if self._pending or expected is None or (key, dtype, tuple(shape)) != (expected.key, expected.dtype,
                                                                               expected.shape):
            raise WebUIError(f"internal merge error: tensor {key} {tuple(shape)} {dtype} does not match the "
                             f"plan ({expected})")
        self._pending = nbytes(shape, dtype)
        self._next += 1

    def write_piece(self, piece: torch.Tensor, done: Callable[[], None] | None = None) -> None:
        """The next contiguous run of elements of the current tensor (in its output dtype). The bytes are written
        later, on the writer thread: `piece` must stay unchanged until `done` is called."""
        if self._error is not None:
            raise self._error
        data = piece.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        if data.nbytes > self._pending:
            raise WebUIError("internal merge error: more bytes than the header promised")
        self._queue.put((memoryview(data), done))
        self._pending -= data.nbytes

    def close(self) -> None:
        """Stop the writer thread (after the queued pieces); safe to call more than once."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def write(self, key: str, tensor: torch.Tensor) -> None:
        self.begin(key, tensor.dtype, tuple(tensor.shape))
        self.write_piece(tensor)

    def finish(self) -> None:
        self.close()
        if self._error is not None:
            raise self._error
        if self._next != len(self.entries) or self._pending:
            raise WebUIError(f"internal merge error: {self._next} of {len(self.entries)} tensors written")
        self.f.flush()
        os.fsync(self.f.fileno())


def safetensors_to_ckpt(src: Path, dst: Path) -> None:
    """Re-save a finished .safetensors file as a torch zip (`torch.save` of the flat state dict, as A1111 writes
    ckpt merges). Each tensor is a memory map of `src`, so nothing is copied into private memory."""
    import numpy as np

    header = read_safetensors_header(src)
    header.pop("__metadata__", None)
    base = 8 + struct.unpack("<Q", src.open("rb").read(8))[0]
    state: dict[str, torch.Tensor] = {}
    for key, info in header.items():
        dtype = ST_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == start:
            state[key] = torch.empty(shape, dtype=dtype)
            continue
        # numpy has no bfloat16/float8: map raw bytes of the same width and reinterpret in torch.
        raw = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[dtype_size(dtype)]
        arr = np.memmap(src, dtype=raw, mode="c", offset=base + start, shape=((end - start) // dtype_size(dtype),))
        state[key] = torch.from_numpy(arr).view(dtype).reshape(shape)
    torch.save(state, dst)
