"""Reading checkpoint files: safetensors, restricted pickles, and every kind of broken file."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.errors import ModelLoadError, UnsafeFileError
from modules.safe_load import file_shapes, load_state_dict, read_shapes


def sample() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=g), "b.bias": torch.randn(5, generator=g, dtype=torch.float32)}


def test_safetensors_round_trip_and_shapes(tmp_path: Path) -> None:
    sd = sample()
    p = tmp_path / "m.safetensors"
    save_file(sd, str(p))
    loaded = load_state_dict(p)
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert read_shapes(p) == {"a.weight": (4, 3), "b.bias": (5,)}
    assert load_state_dict(p, disable_mmap=True).keys() == sd.keys()


def test_ckpt_plain_and_nested_state_dict(tmp_path: Path) -> None:
    sd = sample()
    p = tmp_path / "m.ckpt"
    torch.save({"state_dict": sd, "global_step": 470000, "epoch": 6}, p)
    loaded = load_state_dict(p)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert file_shapes(p)["a.weight"] == (4, 3)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_calls_a_function_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)  # type: ignore[attr-defined]
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": sample(), "payload": evil}, p)
    with pytest.raises(UnsafeFileError) as e:
        load_state_dict(p)
    msg = str(e.value)
    assert "evil.ckpt" in msg and "system" in msg and "safetensors" in msg
    assert not marker.exists()


def test_raw_pickle_file_refused(tmp_path: Path) -> None:
    p = tmp_path / "raw.pt"
    p.write_bytes(pickle.dumps({"x": 1}) + b"")
    with pytest.raises(ModelLoadError, match="raw.pt"):
        load_state_dict(p)


@pytest.mark.parametrize("cut", [4, 20, -10])
def test_truncated_safetensors(tmp_path: Path, cut: int) -> None:
    p = tmp_path / "t.safetensors"
    save_file(sample(), str(p))
    data = p.read_bytes()
    p.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(ModelLoadError, match="t.safetensors.*(truncated|corrupt)"):
        load_state_dict(p)


def test_garbage_safetensors(tmp_path: Path) -> None:
    p = tmp_path / "g.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\0" * 32)
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_state_dict(p)


def test_truncated_ckpt(tmp_path: Path) -> None:
    p = tmp_path / "t.ckpt"
    torch.save({"state_dict": sample()}, p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="t.ckpt"):
        load_state_dict(p)


def test_empty_missing_directory(tmp_path: Path) -> None:
    empty = tmp_path / "e.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_state_dict(empty)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_state_dict(tmp_path / "gone.safetensors")
    d = tmp_path / "d.safetensors"
    d.mkdir()
    with pytest.raises(ModelLoadError, match="folder"):
        load_state_dict(d)


def test_zip_without_pickle(tmp_path: Path) -> None:
    p = tmp_path / "z.ckpt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.txt", "hello")
    with pytest.raises(ModelLoadError, match="z.ckpt"):
        load_state_dict(p)


def test_unsupported_extension(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match="unsupported"):
        load_state_dict(p)
