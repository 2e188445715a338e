"""Loading tiny checkpoints written to disk in the real layouts: detection, exact weights, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from modules.errors import ModelLoadError, UnknownArchitectureError
from modules.model_detection import detect_architecture
from modules.model_loader import load_model
from tests.fixtures.tiny_models import (
    VARIANTS,
    expected_state,
    full_size_ldm_layout,
    write_tiny_checkpoint,
    write_tiny_diffusers_folder,
)

CPU = torch.device("cpu")


def assert_weights_equal(pipe, variant: str, seed: int = 0) -> None:
    for component, expected in expected_state(variant, seed).items():
        got = getattr(pipe, component).state_dict()
        assert set(got) == set(expected), component
        for key, value in expected.items():
            assert torch.equal(got[key].float(), value.float()), f"{component}.{key}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_single_file_loads_detected_with_exact_weights(tmp_path: Path, variant: str) -> None:
    path = write_tiny_checkpoint(variant, tmp_path, "tiny")
    model = load_model(path, device=CPU, dtype=torch.float32, config_override=tmp_path / "tiny")
    expected_family = "sd2-512" if variant == "sd2-768-v" else variant
    assert model.variant in (variant, expected_family)
    if variant == "sd2-768-v":
        assert model.variant == "sd2-768-v" and model.prediction_type == "v_prediction"
    assert model.pipe.__class__.__name__.startswith("StableDiffusion")
    assert_weights_equal(model.pipe, variant)
    assert "present" in model.reason or "no text encoder" in model.reason


def test_legacy_ckpt_with_lightning_globals_loads(tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd1", tmp_path, "old", fmt="ckpt", legacy_ckpt=True)
    model = load_model(path, device=CPU, dtype=torch.float32, config_override=tmp_path / "old")
    assert model.variant == "sd1"
    assert_weights_equal(model.pipe, "sd1")


@pytest.mark.parametrize("variant", ["sd1", "sdxl-base"])
def test_diffusers_folder_loads(tmp_path: Path, variant: str) -> None:
    folder = write_tiny_diffusers_folder(variant, tmp_path, "dmodel")
    model = load_model(folder, device=CPU, dtype=torch.float32)
    assert model.variant == variant
    assert_weights_equal(model.pipe, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_detection_on_full_size_layouts(variant: str) -> None:
    sd = full_size_ldm_layout(variant)
    assert all(t.device.type == "meta" for t in list(sd.values())[:5])
    d = detect_architecture({k: tuple(v.shape) for k, v in sd.items()})
    expected = "sd2-512" if variant == "sd2-768-v" else variant
    assert d.variant == expected, d.reason
    if variant.startswith("sdxl-base"):
        assert "UNet context dim 2048" in d.reason


def test_bundled_configs_used_without_override(tmp_path: Path) -> None:
    """Without a config folder the bundled full-size config is chosen, and a tiny file cannot fit it:
    the error names the file and the component instead of a traceback."""
    path = write_tiny_checkpoint("sd1", tmp_path, "nocfg", with_config=False)
    with pytest.raises(ModelLoadError) as e:
        load_model(path, device=CPU, dtype=torch.float32)
    assert "nocfg.safetensors" in str(e.value) and "sd1" in str(e.value)


def test_yaml_override_beside_checkpoint(tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd1", tmp_path, "y", with_config=False)
    yaml = tmp_path / "y.yaml"
    yaml.write_text("model:\n  params:\n    parameterization: v\n    unet_config:\n      params:\n"
                    "        in_channels: 4\n        context_dim: 1024\n")
    with pytest.raises(ModelLoadError, match="describes sd2-768-v but the checkpoint is sd1"):
        load_model(path, device=CPU, dtype=torch.float32, config_override=yaml)


def test_config_folder_prediction_type_respected(tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd2-512", tmp_path, "v2")
    sched = tmp_path / "v2" / "scheduler" / "scheduler_config.json"
    cfg = json.loads(sched.read_text())
    cfg["prediction_type"] = "v_prediction"
    sched.write_text(json.dumps(cfg))
    model = load_model(path, device=CPU, dtype=torch.float32, config_override=tmp_path / "v2")
    assert model.prediction_type == "v_prediction" and model.variant == "sd2-768-v"
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"


def test_unknown_architecture_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(p))
    with pytest.raises(UnknownArchitectureError, match="lora.safetensors.*LoRA"):
        load_model(p, device=CPU, dtype=torch.float32)


def test_bf16_policy_converts_weights(tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd1", tmp_path, "b")
    model = load_model(path, device=CPU, dtype=torch.bfloat16, vae_dtype=torch.float32,
                       config_override=tmp_path / "b")
    assert next(model.pipe.unet.parameters()).dtype == torch.bfloat16
    assert next(model.pipe.vae.parameters()).dtype == torch.float32


def test_copy_keeps_working_after_source_folder_removed(tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd1", tmp_path, "c")
    model = load_model(path, device=CPU, dtype=torch.float32, config_override=tmp_path / "c")
    shutil.rmtree(tmp_path / "c")
    path.unlink()
    # weights were materialised or safely mapped: the pipeline still runs its text encoder
    ids = model.pipe.tokenizer("a photo of", return_tensors="pt").input_ids
    assert model.pipe.text_encoder(ids)[0].shape[-1] == model.pipe.text_encoder.config.hidden_size
