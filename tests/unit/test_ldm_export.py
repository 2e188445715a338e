"""Our diffusers -> original LDM exporter, proven by converting back with diffusers' own single-file code."""

from __future__ import annotations

import json
import pickletools
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file

from modules.ldm_export import (
    SD2_OPENCLIP_PREFIX,
    VARIANTS,
    LdmExportError,
    openclip_to_ldm,
    pipeline_to_ldm,
    unet_to_ldm,
    vae_to_ldm,
)
from tests.fixtures.tiny_models import (
    LEGACY_CKPT_GLOBALS,
    WEIGHT_COMPONENTS,
    ModelCheckpoint,
    build_tiny_components,
    expected_state,
    full_size_ldm_layout,
    write_tiny_checkpoint,
    write_tiny_diffusers_folder,
)

# Where each variant's text encoders live in the file, and in which layout.
TEXT_PREFIXES = {
    "sd1": {"text_encoder": ("clip", "cond_stage_model.transformer.")},
    "sd2": {"text_encoder": ("openclip", "cond_stage_model.model.")},
    "sdxl": {
        "text_encoder": ("clip", "conditioner.embedders.0.transformer."),
        "text_encoder_2": ("openclip", "conditioner.embedders.1.model."),
    },
    "sdxl-refiner": {"text_encoder_2": ("openclip", "conditioner.embedders.0.model.")},
}


def _family(variant: str) -> str:
    return variant if variant == "sdxl-refiner" else variant.split("-")[0]


def _assert_same(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], what: str) -> None:
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert not missing and not unexpected, f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}"
    for key, tensor in expected.items():
        assert got[key].dtype == tensor.dtype, f"{what}: {key} dtype"
        assert torch.equal(got[key], tensor), f"{what}: {key} differs"


@pytest.fixture(scope="module")
def tiny() -> dict[str, tuple[dict, dict[str, torch.Tensor]]]:
    """variant -> (components, LDM state dict), built once for the module."""
    out = {}
    for variant in VARIANTS:
        components = build_tiny_components(variant)
        out[variant] = (components, pipeline_to_ldm(components, variant))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_diffusers_converts_our_file_back_bit_exactly(variant: str, tiny, tmp_path: Path) -> None:
    components, ldm = tiny[variant]
    assert all(isinstance(v, torch.Tensor) for v in ldm.values())

    unet = components["unet"]
    _assert_same(unet.state_dict(), sfu.convert_ldm_unet_checkpoint(ldm, unet.config), "unet")
    assert sum(k.startswith("model.diffusion_model.") for k in ldm) == len(unet.state_dict())

    vae = components["vae"]
    _assert_same(vae.state_dict(), sfu.convert_ldm_vae_checkpoint(ldm, vae.config), "vae")
    assert sum(k.startswith("first_stage_model.") for k in ldm) == len(vae.state_dict())

    text_keys = 0
    for name, (layout, prefix) in TEXT_PREFIXES[_family(variant)].items():
        model = components[name]
        sd = model.state_dict()
        flattened = not hasattr(model, "text_model")  # transformers >= 5.6 CLIPTextModel
        if layout == "clip":
            converted = sfu.convert_ldm_clip_checkpoint({k: v for k, v in ldm.items() if k.startswith(prefix)})
            # Real checkpoints carry the position_ids buffer, which transformers no longer persists.
            position_ids = converted.pop("text_model.embeddings.position_ids")
            assert torch.equal(position_ids, torch.arange(77)[None])
            in_file = len(sd) + 1
        else:
            converted = sfu.convert_open_clip_checkpoint(model, ldm, prefix=prefix)
            layers = model.config.num_hidden_layers + (1 if prefix == SD2_OPENCLIP_PREFIX else 0)
            # token/positional embedding, ln_final x2, text_projection, logit_scale + 12 tensors per resblock
            in_file = 6 + 12 * layers
        if flattened:
            converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        _assert_same(sd, converted, name)
        assert sum(k.startswith(prefix) for k in ldm) == in_file
        text_keys += in_file

        # The full diffusers path (picks the converter from the keys, loads into a fresh model) agrees.
        model.config.save_pretrained(tmp_path / name)
        loaded = sfu.create_diffusers_clip_model_from_ldm(
            type(model), ldm, config=str(tmp_path), subfolder=name, local_files_only=True
        )
        _assert_same(sd, loaded.state_dict(), f"{name} via create_diffusers_clip_model_from_ldm")

    assert len(ldm) == len(unet.state_dict()) + len(vae.state_dict()) + text_keys, "keys outside known components"


def test_real_key_names_and_shapes(tiny) -> None:
    inpaint = tiny["sd1-inpainting"][1]
    assert inpaint["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 9
    assert tiny["sd1"][1]["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == 4
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in tiny["sd1"][1]

    xl = tiny["sdxl-base"][1]
    assert xl["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 64, 64)
    assert "conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_proj.bias" in xl
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in xl
    # open_clip stores the projection transposed (x @ text_projection).
    proj = tiny["sdxl-base"][0]["text_encoder_2"].text_projection.weight
    assert torch.equal(xl["conditioner.embedders.1.model.text_projection"], proj.T)
    assert "model.diffusion_model.label_emb.0.0.weight" in xl
    # An up block's upsampler follows its attention when it has one (diffusers' reader accepts either slot).
    assert "model.diffusion_model.output_blocks.2.2.conv.weight" in xl  # CrossAttnUpBlock2D, 3 layers
    assert "model.diffusion_model.output_blocks.1.1.conv.weight" in tiny["sd1"][1]  # UpBlock2D, 2 layers

    for variant in VARIANTS:
        ldm = tiny[variant][1]
        assert "first_stage_model.decoder.conv_out.weight" in ldm
        # The original autoencoder keeps its mid-block attention projections as 1x1 convolutions.
        assert ldm["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4

    sd2 = tiny["sd2-768-v"][1]
    assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in sd2  # the 24th, unused block
    assert "cond_stage_model.model.transformer.resblocks.24.ln_1.weight" not in sd2

    refiner = tiny["sdxl-refiner"][1]
    assert "conditioner.embedders.0.model.text_projection" in refiner
    assert not any(k.startswith("conditioner.embedders.1.") for k in refiner)

    expected_types = {
        "sd1": "v1",
        "sd1-inpainting": "inpainting",
        "sdxl-base": "xl_base",
        "sdxl-refiner": "xl_refiner",
        "sdxl-inpainting": "xl_inpaint",
    }
    for variant, model_type in expected_types.items():
        assert sfu.infer_diffusers_model_type(tiny[variant][1]) == model_type, variant


def test_seeded_and_deterministic(tiny) -> None:
    first = tiny["sd1"][0]
    again = expected_state("sd1", seed=0)
    for name, state in again.items():
        _assert_same(first[name].state_dict(), state, f"rebuilt {name}")
    other = build_tiny_components("sd1", seed=1)
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight"
    assert not torch.equal(again["unet"][key], other["unet"].state_dict()[key])
    # Every tensor is distinct noise, so a swapped key could not round-trip unnoticed.
    sd = again["text_encoder"]
    assert not torch.equal(sd["encoder.layers.0.self_attn.k_proj.bias"], sd["encoder.layers.0.self_attn.v_proj.bias"])


def test_safetensors_and_ckpt_files_load_back_equal(tiny, tmp_path: Path) -> None:
    reference = tiny["sd1"][1]
    st = write_tiny_checkpoint("sd1", tmp_path, "tiny", with_config=False)
    ckpt = write_tiny_checkpoint("sd1", tmp_path, "tiny", fmt="ckpt", with_config=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ckpt", "tiny.safetensors"]
    _assert_same(reference, load_file(st), "safetensors")
    payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert payload["global_step"] == 0 and payload["epoch"] == 0
    _assert_same(reference, payload["state_dict"], "ckpt")


def test_legacy_ckpt_carries_lightning_and_numpy_globals(tiny, tmp_path: Path) -> None:
    path = write_tiny_checkpoint("sd1", tmp_path, "legacy", fmt="ckpt", with_config=False, legacy_ckpt=True)
    assert "pytorch_lightning" not in sys.modules
    with zipfile.ZipFile(path) as zf:
        pickle_bytes = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    globals_ = {str(arg) for op, arg, _ in pickletools.genops(pickle_bytes) if op.name == "GLOBAL"}
    assert "pytorch_lightning.callbacks.model_checkpoint ModelCheckpoint" in globals_
    assert "numpy.core.multiarray scalar" in globals_

    with pytest.raises(Exception, match="ModelCheckpoint|scalar|global"):
        torch.load(path, map_location="cpu", weights_only=True)
    with torch.serialization.safe_globals(LEGACY_CKPT_GLOBALS):
        payload = torch.load(path, map_location="cpu", weights_only=True)
    (callback,) = payload["callbacks"].values()
    assert isinstance(callback, ModelCheckpoint)
    assert float(callback.best_model_score) == 0.25
    _assert_same(tiny["sd1"][1], payload["state_dict"], "legacy ckpt")


@pytest.mark.parametrize(
    ("variant", "fmt"), [("sd1", "ckpt"), ("sd2-768-v", "safetensors"), ("sdxl-refiner", "safetensors")]
)
def test_config_folder_lets_diffusers_load_the_exact_weights(variant: str, fmt: str, tiny, tmp_path: Path) -> None:
    import diffusers

    path = write_tiny_checkpoint(variant, tmp_path, "model", fmt=fmt)
    config_dir = tmp_path / "model"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "model"])
    weights = [p for p in config_dir.rglob("*") if p.suffix in (".safetensors", ".bin", ".ckpt", ".pt")]
    assert weights == []
    index = json.loads((config_dir / "model_index.json").read_text())
    for name in ("tokenizer", "tokenizer_2"):
        if index.get(name, [None])[0] is None:
            continue
        tok_config = json.loads((config_dir / name / "tokenizer_config.json").read_text())
        assert tok_config["model_max_length"] == 77
        assert tok_config["pad_token"] == ("<|endoftext|>" if variant == "sd1" else "!")
    scheduler = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == ("v_prediction" if variant == "sd2-768-v" else "epsilon")

    pipe_cls = getattr(diffusers, index["_class_name"])
    pipe = pipe_cls.from_single_file(str(path), config=str(config_dir), local_files_only=True)
    for name in WEIGHT_COMPONENTS[variant]:
        _assert_same(tiny[variant][0][name].state_dict(), getattr(pipe, name).state_dict(), f"{variant} {name}")


def test_diffusers_folder_round_trips(tiny, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    folder = write_tiny_diffusers_folder("sd1", tmp_path, "tiny-sd1")
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    assert pipe.tokenizer.model_max_length == 77
    for name in WEIGHT_COMPONENTS["sd1"]:
        _assert_same(tiny["sd1"][0][name].state_dict(), getattr(pipe, name).state_dict(), name)


# Key counts and "key [shape]" listings of real checkpoints' components. The listing lengths are those of the
# files in arenasys/stable-diffusion-webui-model-toolkit components/ (UNET-v1-SD.txt, UNET-v2-SD.txt,
# UNET-XL-SD.txt, UNET-XL-Refiner.txt, VAE-v1-SD.txt, CLIP-v1-SD.txt, CLIP-v2-SD.txt, CLIP-XL-SD.txt), which
# list every tensor of the released SD 1.5, 2.1, SDXL base and refiner files; SD 1.5 pruned-emaonly has
# 686 + 248 + 197 = 1131 model tensors and sd_xl_base_1.0 2515.
REAL = {
    "sd1": {"model.diffusion_model.": (686, 36314), "cond_stage_model.transformer.text_model.": (197, 8744)},
    "sd2": {"model.diffusion_model.": (686, 36218), "cond_stage_model.model.": (294, 14193)},
    "sdxl": {
        "model.diffusion_model.": (1680, 101976),
        "conditioner.embedders.0.transformer.text_model.": (197, 8744),
        "conditioner.embedders.1.model.": (390, 18913),
    },
    "sdxl-refiner": {"model.diffusion_model.": (1220, 71062), "conditioner.embedders.0.model.": (390, 18913)},
}
REAL_TOTAL = {"sd1": 1131, "sd2": 1228, "sdxl": 2515, "sdxl-refiner": 1858}


def _listing(sd: dict[str, torch.Tensor], prefix: str) -> tuple[int, int]:
    lines = sorted(f"{k[len(prefix) :]} [{','.join(map(str, v.shape))}]" for k, v in sd.items() if k.startswith(prefix))
    return len(lines), len("\n".join(lines))


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_layout_matches_real_checkpoints(variant: str) -> None:
    layout = full_size_ldm_layout(variant)
    assert all(t.device.type == "meta" for t in layout.values())
    family = _family(variant)
    assert len(layout) == REAL_TOTAL[family]
    assert _listing(layout, "first_stage_model.") == (248, 10149)
    for prefix, expected in REAL[family].items():
        assert _listing(layout, prefix) == expected, prefix
    if family in ("sd1", "sd2"):
        names = ("output_blocks.2.1.conv", "output_blocks.5.2.conv", "output_blocks.8.2.conv", "middle_block.2")
        assert all(any(k.startswith(f"model.diffusion_model.{n}.") for k in layout) for n in names)
    in_channels = 9 if variant.endswith("inpainting") else 8 if variant.endswith("pix2pix") else 4
    assert layout["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == in_channels
    expected_type = {
        "sd1": "v1",
        "sd1-inpainting": "inpainting",
        "sd1-instruct-pix2pix": "instruct-pix2pix",
        "sd2-512": "v2",
        "sd2-768-v": "v2",
        "sd2-inpainting": "inpainting_v2",
        "sdxl-base": "xl_base",
        "sdxl-refiner": "xl_refiner",
        "sdxl-inpainting": "xl_inpaint",
    }[variant]
    assert sfu.infer_diffusers_model_type(layout) == expected_type


def test_meta_inputs_give_meta_fillers() -> None:
    width = 8
    te = {
        "embeddings.token_embedding.weight": torch.empty(10, width, device="meta"),
        "embeddings.position_embedding.weight": torch.empty(77, width, device="meta"),
        "final_layer_norm.weight": torch.empty(width, device="meta"),
        "final_layer_norm.bias": torch.empty(width, device="meta"),
    }
    out = openclip_to_ldm(te, "p.", extra_layers=2)
    assert "p.transformer.resblocks.1.mlp.c_proj.weight" in out
    assert out["p.text_projection"].shape == (width, width)
    assert all(t.device.type == "meta" for t in out.values())


def test_bad_input_gets_a_clear_error(tiny) -> None:
    components, _ = tiny["sd1"]
    with pytest.raises(LdmExportError, match="unknown checkpoint variant"):
        pipeline_to_ldm(components, "sd3")
    with pytest.raises(LdmExportError, match="9 input channels"):
        pipeline_to_ldm(components, "sd1-inpainting")
    with pytest.raises(LdmExportError, match="text_encoder_2"):
        pipeline_to_ldm({**components, "unet": tiny["sdxl-base"][0]["unet"]}, "sdxl-base")
    with pytest.raises(LdmExportError, match="encoder_hid_proj"):
        unet_to_ldm({"encoder_hid_proj.weight": torch.zeros(1)}, {"layers_per_block": 1})
    assert issubclass(LdmExportError, ValueError)


def test_half_precision_is_preserved(tiny) -> None:
    te = {k: v.half() for k, v in tiny["sd2-512"][0]["text_encoder"].state_dict().items()}
    out = openclip_to_ldm(te, SD2_OPENCLIP_PREFIX, extra_layers=1)
    assert {t.dtype for t in out.values()} == {torch.float16}
    vae = {k: v.half() for k, v in tiny["sd1"][0]["vae"].state_dict().items()}
    assert {t.dtype for t in vae_to_ldm(vae).values()} == {torch.float16}
