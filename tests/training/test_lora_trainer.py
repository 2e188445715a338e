"""LoRA training on the tiny SD1 model: kohya keys and ss_* metadata, our loader applies it, resume, frozen model."""

from __future__ import annotations

import torch
from safetensors import safe_open

from modules import lora
from modules.params_train import TrainLoraParams
from modules.state import JobState
from modules.training import lora_trainer
from tests.training.conftest import assert_bit_exact, fixed_loss, snapshot


def _params(toy_dataset, **kw) -> TrainLoraParams:
    base = dict(lora_name="toylora", data_root=str(toy_dataset), resolution=64, min_bucket_reso=64,
                max_bucket_reso=128, network_dim=4, network_alpha=2.0, unet_lr="0.01", text_encoder_lr="0.005",
                steps=4, save_every=2, create_image_every=0, seed=3)
    base.update(kw)
    return TrainLoraParams(**base)


def _unet_out(model, cond_model):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    with torch.no_grad():
        cond = cond_model.get_learned_conditioning(["red square"])
        return model.pipe.unet(x, torch.tensor([500]), encoder_hidden_states=cond).sample


def test_lora_trains_saves_kohya_and_loads_through_our_loader(runtime, toy_dataset):
    model = runtime.models.current
    cond_model = runtime.conditioner_for(model)
    before = snapshot(model)
    loss_before = fixed_loss(runtime, toy_dataset, "red square, blue background")
    result = lora_trainer.run_training(runtime, _params(toy_dataset), JobState())
    assert result.step == 4 and len(result.losses) == 4
    assert_bit_exact(before, model)
    path = runtime.paths.lora_dir / "toylora.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["ss_output_name"] == "toylora" and meta["ss_steps"] == "4" and meta["ss_network_dim"] == "4"
    assert meta["ss_base_model_version"] == "sd_v1" and '"red square"' in meta["ss_tag_frequency"]
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_") for k in keys)
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in keys
    # Our loader maps every key and the merged weights give what the training hooks gave.
    rebuilt = lora_trainer.build_set(model, _params(toy_dataset), torch.Generator().manual_seed(0))
    assert lora_trainer.load_state(rebuilt, path) == 4
    with lora_trainer.installed(rebuilt):
        cond_model.clear_cache()
        hooked = _unet_out(model, cond_model)
        assert fixed_loss(runtime, toy_dataset, "red square, blue background") < loss_before
    cond_model.clear_cache()
    plain = _unet_out(model, cond_model)
    runtime.loras.refresh()
    applied = lora.activate(model, runtime.loras, [lora.LoraRequest("toylora")])
    assert applied.errors == {} and applied.written
    cond_model.cache_salt = applied.te_salt
    merged = _unet_out(model, cond_model)
    assert torch.allclose(merged, hooked, atol=1e-4) and not torch.allclose(merged, plain, atol=1e-4)
    lora.activate(model, runtime.loras, [])
    assert_bit_exact(before, model)
    # Resume from the saved step, with the log copies named by step.
    resumed = lora_trainer.run_training(runtime, _params(toy_dataset, steps=5, resume=True), JobState())
    assert resumed.step == 5 and len(resumed.losses) == 1
    copies = sorted(p.name for p in (runtime.paths.data_dir / "lora").rglob("*.safetensors"))
    assert copies == ["toylora-000002.safetensors", "toylora-000004.safetensors"]


def test_unet_only_has_no_text_encoder_keys(runtime, toy_dataset):
    result = lora_trainer.run_training(runtime, _params(toy_dataset, train_text_encoder=False, steps=1, save_every=0,
                                                        create_image_every=1, preview_prompt="red square",
                                                        preview_steps=2), JobState())
    assert len(result.images) == 1 and result.images[0].endswith("toylora-1.png")  # a preview during training
    with safe_open(str(runtime.paths.lora_dir / "toylora.safetensors"), framework="pt") as f:
        keys = list(f.keys())  # noqa: SIM118 (safe_open is not iterable)
        assert not [k for k in keys if k.startswith("lora_te_")]
        assert f.metadata()["ss_network_train_unet_only"] == "True"


def test_sdxl_lora_trains_with_te1_te2_keys_and_loads(make_runtime, data_dir, toy_dataset):
    from tests.fixtures.tiny_models import write_tiny_checkpoint

    write_tiny_checkpoint("sdxl-base", data_dir / "models" / "Stable-diffusion", "tinyxl", seed=2)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("tinyxl.safetensors")
    model = rt.models.current
    before = snapshot(model)
    result = lora_trainer.run_training(rt, _params(toy_dataset, steps=2, save_every=0), JobState())
    assert result.step == 2 and all(loss == loss for _, loss in result.losses)
    assert_bit_exact(before, model)
    path = rt.paths.lora_dir / "toylora.safetensors"
    with safe_open(str(path), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()  # noqa: SIM118
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert any(k.startswith("lora_te1_text_model_encoder_layers_") for k in keys)
    assert any(k.startswith("lora_te2_text_model_encoder_layers_") for k in keys)
    rt.loras.refresh()
    applied = lora.activate(model, rt.loras, [lora.LoraRequest("toylora")])
    assert applied.errors == {} and applied.written
    lora.activate(model, rt.loras, [])
    assert_bit_exact(before, model)
