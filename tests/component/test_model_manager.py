"""Switching checkpoints through the runtime: cache, failures keep the old model, start-up choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.errors import ModelLoadError, ModelNotFoundError
from tests.fixtures.tiny_models import write_tiny_checkpoint


def ckpt_dir(data_dir: Path) -> Path:
    return data_dir / "models" / "Stable-diffusion"


def test_no_checkpoint_message(make_runtime, data_dir: Path) -> None:
    rt = make_runtime("--no-half")
    assert rt.checkpoint_titles() == []
    assert str(ckpt_dir(data_dir)) in rt.model_status and "refresh" in rt.model_status
    rt.load_initial_model()
    assert rt.models.current is None


def test_switch_cache_and_failures(make_runtime, data_dir: Path) -> None:
    folder = ckpt_dir(data_dir)
    write_tiny_checkpoint("sd1", folder, "a", seed=1)
    write_tiny_checkpoint("sd1", folder / "sub", "b", seed=2)
    rt = make_runtime("--no-half")
    rt.opts.set("sd_checkpoints_limit", 2)
    assert rt.checkpoint_titles() == ["a.safetensors", "sub/b.safetensors"]
    rt.switch_checkpoint("a.safetensors")
    a = rt.models.current
    rt.switch_checkpoint("sub/b.safetensors")
    assert rt.models.current is not a and rt.models.current.variant == "sd1"
    # back to a cached model: the very same object, no reload
    rt.switch_checkpoint("a")
    assert rt.models.current is a
    saved = json.loads(rt.paths.settings_file.read_text())
    assert saved["sd_model_checkpoint"].startswith("a.safetensors")

    # A corrupt file: clear error naming it, the previous model keeps serving.
    (folder / "bad.safetensors").write_bytes(b"\x00" * 64)
    # A directory named like a checkpoint and a file removed between scan and load.
    write_tiny_checkpoint("sd1", folder, "gone", with_config=True)
    rt.refresh_checkpoints()
    (folder / "gone.safetensors").unlink()
    for name, words in (("bad.safetensors", "bad.safetensors"), ("gone.safetensors", "does not exist")):
        with pytest.raises(ModelLoadError, match=words):
            rt.switch_checkpoint(name)
        assert rt.models.current is a
        assert words in rt.model_status
    with pytest.raises(ModelNotFoundError, match="nothing-like-this"):
        rt.switch_checkpoint("nothing-like-this")
    assert rt.models.current is a


def test_cache_limit_evicts_oldest(make_runtime, data_dir: Path) -> None:
    folder = ckpt_dir(data_dir)
    for i in range(3):
        write_tiny_checkpoint("sd1", folder, f"m{i}", seed=i)
    rt = make_runtime("--no-half")
    rt.opts.set("sd_checkpoints_limit", 2)
    for i in range(3):
        rt.switch_checkpoint(f"m{i}.safetensors")
    assert [Path(f).name for f in rt.models.loaded_filenames()] == ["m1.safetensors", "m2.safetensors"]


def test_file_replaced_on_disk_is_reloaded(make_runtime, data_dir: Path) -> None:
    folder = ckpt_dir(data_dir)
    write_tiny_checkpoint("sd1", folder, "m", seed=1)
    rt = make_runtime("--no-half")
    rt.opts.set("sd_checkpoints_limit", 2)
    rt.switch_checkpoint("m.safetensors")
    first = rt.models.current
    write_tiny_checkpoint("sd1", folder, "other", seed=2)
    rt.switch_checkpoint("other.safetensors")
    import os
    p = folder / "m.safetensors"
    write_tiny_checkpoint("sd1", folder, "m", seed=3)
    os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 10))
    rt.switch_checkpoint("m.safetensors")
    assert rt.models.current is not first


def test_start_honours_ckpt_flag_then_saved_setting(make_runtime, data_dir: Path, tmp_path: Path) -> None:
    folder = ckpt_dir(data_dir)
    write_tiny_checkpoint("sd1", folder, "a", seed=1)
    write_tiny_checkpoint("sd1", folder, "b", seed=2)
    (data_dir / "config.json").write_text(json.dumps({"sd_model_checkpoint": "b.safetensors"}))
    rt = make_runtime("--no-half")
    rt.load_initial_model()
    assert rt.models.current_info.name == "b.safetensors"
    outside = write_tiny_checkpoint("sd1", tmp_path / "elsewhere", "c", seed=3)
    rt2 = make_runtime("--no-half", "--ckpt", str(outside))
    rt2.load_initial_model()
    assert rt2.models.current_info.name == "c.safetensors"
    # A saved checkpoint that no longer exists: warned, and the first one found is used.
    (data_dir / "config.json").write_text(json.dumps({"sd_model_checkpoint": "deleted.safetensors [abc]"}))
    rt3 = make_runtime("--no-half")
    rt3.load_initial_model()
    assert rt3.models.current_info.name == "a.safetensors"
    assert any("deleted.safetensors" in w for w in rt3.warnings)


def test_background_hash_gives_title_with_shorthash(make_runtime, data_dir: Path) -> None:
    import hashlib

    path = write_tiny_checkpoint("sd1", ckpt_dir(data_dir), "h")
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("h.safetensors")
    short = rt.models.shorthash()
    assert short == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert rt.models.current_info.title == f"h.safetensors [{short}]"
