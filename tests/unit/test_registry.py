"""Checkpoint registry and hashes: recursive scan, A1111 titles and hashes, cache, refresh."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from modules.hashes import HashCache, addnet_hash_safetensors, legacy_model_hash, sha256_file
from modules.model_registry import ModelRegistry


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_hashes_match_a1111_definitions(tmp_path: Path) -> None:
    data = os.urandom(0x100000 + 0x20000)
    p = write(tmp_path / "m.safetensors", data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert legacy_model_hash(p) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert legacy_model_hash(tmp_path / "missing") == "NOFILE"
    header = json.dumps({"__metadata__": {"a": "b"}}).encode()
    body = os.urandom(1000)
    st = write(tmp_path / "l.safetensors", struct.pack("<Q", len(header)) + header + body)
    assert addnet_hash_safetensors(st) == hashlib.sha256(body).hexdigest()


def test_scan_titles_and_lookup(tmp_path: Path) -> None:
    root = tmp_path / "Stable-diffusion"
    write(root / "a.safetensors", b"x" * 100)
    write(root / "sub" / "b.ckpt", b"y" * 100)
    write(root / "a.vae.safetensors", b"v")  # a same-name VAE is not a checkpoint
    write(root / "notes.txt", b"t")
    (root / "dir.safetensors").mkdir()  # a directory named like a checkpoint is skipped
    diff = root / "diffusers-model"
    write(diff / "model_index.json", b"{}")
    write(diff / "unet" / "diffusion_pytorch_model.safetensors", b"w")
    cfg_only = root / "a"  # config folder beside a.safetensors: not a model
    write(cfg_only / "model_index.json", b"{}")
    reg = ModelRegistry([root], HashCache(tmp_path / "cache.json"))
    names = [c.name for c in reg.refresh()]
    assert names == ["a.safetensors", "diffusers-model", "sub/b.ckpt"]
    b = reg.get("sub/b.ckpt")
    assert b is not None and b.model_name == "sub_b" and b.title == "sub/b.ckpt"
    assert reg.get("a").config_override() == cfg_only  # type: ignore[union-attr]
    # lazily hashed: title gains the 10-hex short hash (A1111 format)
    short = reg.calculate_shorthash(b)
    assert short == hashlib.sha256(b"y" * 100).hexdigest()[:10]
    assert b.title == f"sub/b.ckpt [{short}]" and b.short_title == f"b [{short}]"
    for alias in (b.title, "sub/b.ckpt", "sub_b", "b", short, b.sha256, "sub/b.ckpt [0000000000]"):
        assert reg.get(alias) is b, alias
    assert reg.closest("b.ck") is b


def test_hash_cache_keyed_by_mtime(tmp_path: Path) -> None:
    root = tmp_path / "ckpts"
    p = write(root / "m.safetensors", b"first")
    cache = HashCache(tmp_path / "cache.json")
    reg = ModelRegistry([root], cache)
    reg.refresh()
    info = reg.get("m.safetensors")
    assert reg.calculate_shorthash(info) == hashlib.sha256(b"first").hexdigest()[:10]
    stored = json.loads((tmp_path / "cache.json").read_text())
    assert stored["hashes"]["checkpoint/m.safetensors"]["sha256"] == hashlib.sha256(b"first").hexdigest()
    # A new registry reads the cached hash without rehashing.
    reg2 = ModelRegistry([root], HashCache(tmp_path / "cache.json"))
    reg2.refresh()
    assert reg2.get("m.safetensors").sha256 == hashlib.sha256(b"first").hexdigest()
    # Replacing the file (older or newer mtime) invalidates the cached value.
    p.write_bytes(b"second")
    os.utime(p, (1, 1))
    reg3 = ModelRegistry([root], HashCache(tmp_path / "cache.json"))
    reg3.refresh()
    info3 = reg3.get("m.safetensors")
    assert info3.sha256 is None
    assert reg3.calculate_shorthash(info3) == hashlib.sha256(b"second").hexdigest()[:10]


def test_refresh_sees_new_removed_renamed(tmp_path: Path) -> None:
    root = tmp_path / "ckpts"
    write(root / "one.safetensors", b"1")
    reg = ModelRegistry([root], None)
    assert [c.name for c in reg.refresh()] == ["one.safetensors"]
    write(root / "two.safetensors", b"2")
    (root / "one.safetensors").rename(root / "uno.safetensors")
    assert [c.name for c in reg.refresh()] == ["two.safetensors", "uno.safetensors"]
    (root / "two.safetensors").unlink()
    assert [c.name for c in reg.refresh()] == ["uno.safetensors"]
    assert reg.get("one.safetensors") is None


def test_no_hashing_flag(tmp_path: Path) -> None:
    root = tmp_path / "ckpts"
    write(root / "m.safetensors", b"1")
    reg = ModelRegistry([root], HashCache(tmp_path / "c.json"), no_hashing=True)
    reg.refresh()
    assert reg.calculate_shorthash(reg.get("m.safetensors")) is None
