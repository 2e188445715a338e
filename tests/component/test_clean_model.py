"""Every model change of a job is job-scoped or a documented cache, and clean_model gives the checkpoint back."""

from __future__ import annotations

from pathlib import Path

import torch

from modules import job_runner, scripts
from modules.clean_model import clean_model
from modules.params import Txt2ImgParams
from tests.component.test_lora import NETWORKS, write, write_hypernet
from tests.component.test_vae import write_vae


def _weights(model) -> dict[str, torch.Tensor]:
    pipe = model.pipe
    out = {}
    for name in ("unet", "text_encoder", "vae"):
        for key, value in getattr(pipe, name).state_dict().items():
            out[f"{name}.{key}"] = value.detach().clone()
    return out


class WeightDeltaScript(scripts.Script):
    """An extension that changes the UNet for its job through the public p.model_patches."""

    alwayson = True

    def title(self) -> str:
        return "delta"

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    applied = False

    def process(self, p, *args) -> None:
        weight = p.sd_model.pipe.unet.conv_in.weight
        before = weight.detach().clone()
        p.model_patches.add_weight_delta("unet.conv_in.weight", torch.full_like(weight, 0.25, dtype=torch.float32))
        WeightDeltaScript.applied = not torch.equal(p.sd_model.pipe.unet.conv_in.weight, before)


def test_job_with_lora_hypernet_vae_and_delta_leaves_clean_model_bit_exact(runtime, data_dir: Path) -> None:
    write(data_dir / "models" / "Lora", "style", {k: v * 20 for k, v in NETWORKS["lora"]().items()})
    write_hypernet(data_dir / "models" / "hypernetworks" / "anime.pt", 32)
    write_vae(data_dir / "models" / "VAE" / "other.safetensors", seed=9)
    model = runtime.models.current
    original = _weights(model)
    runtime.scripts_txt2img.add(WeightDeltaScript())
    params = Txt2ImgParams(prompt="a cat <lora:style:1> <hypernet:anime:1>", width=64, height=64, steps=2,
                           seed=3, sampler_name="Euler", override_settings={"sd_vae": "other.safetensors"})
    result = job_runner.run_now(runtime, job_runner.JobRequest(params))
    assert result.comments == ""
    assert WeightDeltaScript.applied  # the extension's delta was on the model during the job
    # Job-scoped: the extension's delta and the hypernetwork hooks are gone once the job ends.
    unet = model.pipe.unet
    assert not any(m._forward_pre_hooks for m in unet.modules())
    assert torch.equal(unet.conv_in.weight, original["unet.conv_in.weight"])  # the LoRA does not touch conv_in
    # The documented caches (merged LoRA, the last VAE) are still there: the model is not the checkpoint now...
    after = _weights(model)
    assert any(not torch.equal(after[k], v) for k, v in original.items() if k.startswith("unet."))
    assert any(not torch.equal(after[k], v) for k, v in original.items() if k.startswith("vae."))
    # ...until clean_model, which gives every weight back bit for bit.
    with clean_model(model) as clean:
        now = _weights(clean)
        assert now.keys() == original.keys()
        assert all(torch.equal(now[k], v) for k, v in original.items())
