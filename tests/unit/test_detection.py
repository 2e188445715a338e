"""Architecture detection from key names and shapes, including .yaml overrides and bad files."""

from __future__ import annotations

import pytest

from modules.errors import UnknownArchitectureError
from modules.model_detection import detect_architecture, variant_from_ldm_yaml

U = "model.diffusion_model."


def shapes(in_ch: int = 4, ctx: int = 768, te: str | None = "sd1") -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {
        U + "input_blocks.0.0.weight": (320, in_ch, 3, 3),
        U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, ctx),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
    }
    if te == "sd1":
        s["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 768)
    elif te == "sd2":
        s["cond_stage_model.model.token_embedding.weight"] = (49408, 1024)
    elif te == "xl":
        s["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 768)
        s["conditioner.embedders.1.model.token_embedding.weight"] = (49408, 1280)
    elif te == "refiner":
        s["conditioner.embedders.0.model.token_embedding.weight"] = (49408, 1280)
    return s


@pytest.mark.parametrize(("kw", "variant", "words"), [
    ({}, "sd1", "SD1"),
    ({"in_ch": 9}, "sd1-inpainting", "input channels 9"),
    ({"ctx": 1024, "te": "sd2"}, "sd2-512", "OpenCLIP-H"),
    ({"ctx": 1024, "te": "sd2", "in_ch": 9}, "sd2-inpainting", "inpainting"),
    ({"ctx": 2048, "te": "xl"}, "sdxl-base", "UNet context dim 2048"),
    ({"ctx": 2048, "te": "xl", "in_ch": 9}, "sdxl-inpainting", "inpainting"),
    ({"ctx": 1280, "te": "refiner"}, "sdxl-refiner", "refiner"),
    ({"ctx": 768, "te": None}, "sd1", "no text encoder"),
])
def test_detect(kw: dict, variant: str, words: str) -> None:
    d = detect_architecture(shapes(**kw))
    assert d.variant == variant and words in d.reason
    assert d.needs_v_check == (variant == "sd2-512")


def test_sdxl_reason_matches_issue_wording() -> None:
    d = detect_architecture(shapes(ctx=2048, te="xl"))
    assert d.reason.startswith("SDXL base: conditioner.embedders.1")


@pytest.mark.parametrize(("s", "words"), [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "LoRA"),
    ({"encoder.conv_in.weight": (128, 3, 3, 3)}, "VAE"),
    ({"foo": (1,)}, "no Stable Diffusion UNet"),
    ({U + "input_blocks.0.0.weight": (320, 16, 3, 3)}, "16 input channels"),
    ({U + "input_blocks.0.0.weight": (320, 4, 3, 3)}, "unknown architecture"),
])
def test_unknown_architectures_named(s: dict, words: str) -> None:
    with pytest.raises(UnknownArchitectureError, match=words) as e:
        detect_architecture(s, source="x.safetensors")
    assert "x.safetensors" in str(e.value)


V2_YAML = """
model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    unet_config:
      params:
        in_channels: 4
        context_dim: 1024
"""


def test_yaml_override_reads_parameterization() -> None:
    assert variant_from_ldm_yaml(V2_YAML) == ("sd2-768-v", "v_prediction")
    assert variant_from_ldm_yaml(V2_YAML.replace('"v"', '"eps"')) == ("sd2-512", "epsilon")
    xl = "model:\n  params:\n    network_config:\n      params:\n        adm_in_channels: 2816\n        context_dim: 2048\n"
    assert variant_from_ldm_yaml(xl)[0] == "sdxl-base"
    with pytest.raises(ValueError):
        variant_from_ldm_yaml("just: text")
    with pytest.raises(ValueError):
        variant_from_ldm_yaml("model: [unclosed")


def test_sd2_v_prediction_probe_as_a1111() -> None:
    """A1111 runs the UNet once at t=999 on a constant 0.5 input: output - input averaging below -1 means v."""
    import torch

    from modules.model_loader import is_v_prediction_sd2

    class FakeUNet(torch.nn.Module):
        def __init__(self, shift: float) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.shift = shift
            self.config = type("C", (), {"cross_attention_dim": 8, "in_channels": 4})()
            self.seen_t: list[int] = []

        def forward(self, x, t, encoder_hidden_states):
            self.seen_t.append(int(t[0]))
            assert float(encoder_hidden_states.mean()) == 0.5 and encoder_hidden_states.shape[1] == 77
            return type("O", (), {"sample": x + self.shift})()

    v, eps = FakeUNet(-1.5), FakeUNet(-0.2)
    assert is_v_prediction_sd2(v) and not is_v_prediction_sd2(eps)
    assert v.seen_t == [999]
