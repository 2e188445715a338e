"""VAE selection on the tiny SD1 model: a swapped VAE changes the decode, None restores it, infotext names it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules import sd_vae
from modules.hashes import sha256_file
from modules.infotext import parse_generation_parameters
from modules.ldm_export import vae_to_ldm
from tests.fixtures.tiny_models import build_tiny_components, write_tiny_checkpoint


def write_vae(path: Path, seed: int) -> Path:
    vae = build_tiny_components("sd1", seed=seed)["vae"]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict()).items()}, str(path))
    return path


def generate(rt, **kw):
    from modules import job_runner
    from modules.params import Txt2ImgParams

    params = Txt2ImgParams(prompt="a cat", width=64, height=64, steps=2, seed=5, sampler_name="Euler",
                           do_not_save_samples=True, do_not_save_grid=True, **kw)
    return job_runner.run_now(rt, job_runner.JobRequest(params))


def pix(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def test_vae_swap_changes_decode_and_infotext(runtime, data_dir: Path) -> None:
    path = write_vae(data_dir / "models" / "VAE" / "other.safetensors", seed=9)
    base = generate(runtime)
    assert "VAE" not in parse_generation_parameters(base.info)
    runtime.opts.set("sd_vae", "other.safetensors")
    swapped = generate(runtime)
    assert np.abs(pix(base) - pix(swapped)).max() > 0
    params = parse_generation_parameters(swapped.info)
    assert params["VAE"] == "other.safetensors" and params["VAE hash"] == sha256_file(path)[:10]
    # The loaded VAE holds exactly the file's weights, with the model's own scaling factor.
    vae = runtime.models.current.pipe.vae
    own = build_tiny_components("sd1", seed=9)["vae"].state_dict()
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in own.items())
    runtime.opts.set("sd_vae", "None")
    assert np.array_equal(pix(generate(runtime)), pix(base))
    # Per-request override, then back to the setting.
    assert np.array_equal(pix(generate(runtime, override_settings={"sd_vae": "other.safetensors"})), pix(swapped))
    assert np.array_equal(pix(generate(runtime)), pix(base))


def test_automatic_uses_file_beside_checkpoint_and_preference(runtime, data_dir: Path) -> None:
    ckpt_dir = data_dir / "models" / "Stable-diffusion"
    base = generate(runtime)
    write_vae(ckpt_dir / "tiny.vae.safetensors", seed=11)
    beside = generate(runtime)
    assert np.abs(pix(base) - pix(beside)).max() > 0
    assert parse_generation_parameters(beside.info)["VAE"] == "tiny.vae.safetensors"
    (ckpt_dir / "tiny.json").write_text(json.dumps({"vae": "None"}), encoding="utf-8")
    assert np.array_equal(pix(generate(runtime)), pix(base))


def test_unusable_vae_falls_back_and_is_reported(runtime, data_dir: Path) -> None:
    bad = data_dir / "models" / "VAE" / "bad.safetensors"
    bad.parent.mkdir(parents=True, exist_ok=True)
    save_file({"something.weight": torch.zeros(2)}, str(bad))
    base = generate(runtime)
    runtime.opts.set("sd_vae", "bad.safetensors")
    result = generate(runtime)
    assert "bad.safetensors" in result.comments
    assert np.array_equal(pix(result), pix(base))
    runtime.opts.set("sd_vae", "missing.pt")
    assert "not found" in generate(runtime).comments


def test_resolve_order(tmp_path: Path) -> None:
    vae_dir, ckpt_dir = tmp_path / "VAE", tmp_path / "sd"
    write_vae(vae_dir / "a.safetensors", 1)
    ckpt_dir.mkdir()
    ckpt = ckpt_dir / "m.safetensors"
    ckpt.write_bytes(b"")
    db = sd_vae.VaeDatabase([vae_dir], [ckpt_dir])
    assert db.choices() == ["Automatic", "None", "a.safetensors"]
    assert sd_vae.resolve("Automatic", ckpt, db).path is None
    assert sd_vae.resolve("a", ckpt, db).path == vae_dir / "a.safetensors"
    (ckpt_dir / "m.json").write_text('{"vae": "None"}', encoding="utf-8")
    assert sd_vae.resolve("a.safetensors", ckpt, db, overrides_preferences=True).path is not None
    assert sd_vae.resolve("a.safetensors", ckpt, db, overrides_preferences=False).path is None
    with pytest.raises(sd_vae.VaeError, match="not found"):
        sd_vae.resolve("zzz", ckpt, db)


# --- the model of one job: override_settings.sd_model_checkpoint -------------------------------------------


def test_checkpoint_override_applies_to_that_job_only(runtime, data_dir: Path) -> None:
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "other", seed=8)
    runtime.opts.set("sd_checkpoints_limit", 2)
    base = generate(runtime)
    first_model = runtime.models.current
    overridden = generate(runtime, override_settings={"sd_model_checkpoint": "other.safetensors"})
    assert parse_generation_parameters(overridden.info)["Model"] == "other"
    assert np.abs(pix(base) - pix(overridden)).max() > 0
    # Back on the first model (the very same object, from the cache), settings untouched.
    assert runtime.models.current is first_model
    assert runtime.opts.sd_model_checkpoint.startswith("tiny.safetensors")
    assert np.array_equal(pix(generate(runtime)), pix(base))
    runtime.switch_checkpoint("other.safetensors")
    assert np.array_equal(pix(generate(runtime)), pix(overridden))
    from modules.errors import WebUIError

    with pytest.raises(WebUIError, match="nope"):
        generate(runtime, override_settings={"sd_model_checkpoint": "nope.safetensors"})
