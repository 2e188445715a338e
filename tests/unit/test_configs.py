"""The bundled offline config folders (configs/<variant>/) and CLIP tokenizer build real pipelines with no network."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import random
import socket
from pathlib import Path

import pytest

from modules import model_configs
from modules.model_configs import CONFIGS_DIR, VARIANTS, config_dir, variant_info

TOKENIZER_DIR = CONFIGS_DIR / "clip-tokenizer"
BOS, EOS = 49406, 49407

# Parameter counts of the released models' components (the figures every SD tool reports for the real weights).
UNET_PARAMS = {
    "sd1": 859_520_964,
    "sd2-512": 865_910_724,
    "sd2-768-v": 865_910_724,
    "sdxl-base": 2_567_463_684,
    "sdxl-refiner": 2_259_526_660,
}
VAE_PARAMS = 83_653_863
TEXT_ENCODER_PARAMS = {
    "CLIP-L": 123_060_480,  # openai/clip-vit-large-patch14 text model
    "OpenCLIP-H/23": 340_387_840,  # SD2 text encoder (ViT-H-14 text tower minus its last layer)
    "bigG": 694_659_840,  # SDXL text_encoder_2, CLIPTextModelWithProjection
}
# An inpainting UNet only widens conv_in from 4 to 9 input channels: 5 * out_channels(320) * 3 * 3 more weights.
INPAINT_EXTRA = 5 * 320 * 3 * 3
# instruct-pix2pix widens it from 4 to 8 (the image latent beside the noisy latent).
PIX2PIX_EXTRA = 4 * 320 * 3 * 3


def _in_channels(variant: str) -> int:
    return 9 if variant.endswith("inpainting") else 8 if variant.endswith("pix2pix") else 4


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail loudly if anything tries to open a network connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- an independent reference implementation of CLIP's BPE, used as a test oracle ------------------------------


def _reference_byte_map() -> dict[int, str]:
    """CLIP's byte->symbol table: visible Latin-1 bytes stand for themselves, the other 68 take chr(256 + k)."""
    visible = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    hidden = [b for b in range(256) if b not in visible]
    table = {b: chr(b) for b in visible}
    table.update({b: chr(256 + k) for k, b in enumerate(hidden)})
    return table


class ReferenceBPE:
    """Greedy lowest-rank-first pair merging over words ending in '</w>', as described in the CLIP paper's code."""

    def __init__(self, folder: Path):
        regex = pytest.importorskip("regex")
        self.vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
        self.ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        self.byte_map = _reference_byte_map()
        self.pattern = regex.compile(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
        )

    def _bpe(self, symbols: list[str]) -> list[str]:
        symbols = symbols[:-1] + [symbols[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = [(self.ranks.get(pair, float("inf")), pair) for pair in zip(symbols, symbols[1:], strict=False)]
            rank, best = min(pairs)
            if rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def encode(self, text: str) -> list[int]:
        text = " ".join(text.split()).lower()
        ids = [BOS]
        for piece in self.pattern.findall(text):
            symbols = [self.byte_map[b] for b in piece.encode("utf-8")]
            ids += [self.vocab[token] for token in self._bpe(symbols)]
        return ids + [EOS]


@pytest.fixture(scope="module")
def reference() -> ReferenceBPE:
    return ReferenceBPE(TOKENIZER_DIR)


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


# --- the vocabulary files ---------------------------------------------------------------------------------------


def test_vocab_and_merges_have_clip_layout():
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    lines = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 49408 and sorted(vocab.values()) == list(range(49408))
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 48894
    assert (
        vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["<|startoftext|>"] == BOS and vocab["<|endoftext|>"] == EOS
    )
    # ids 512.. are the merges, in merge order
    first, last = lines[1].split(), lines[-1].split()
    assert vocab["".join(first)] == 512 and vocab["".join(last)] == 49405
    assert "MIT" in (TOKENIZER_DIR / "NOTICE.md").read_text(encoding="utf-8")


def test_make_clip_tokenizer_rebuilds_the_committed_files(tmp_path):
    """Round trip: a gz laid out like bpe_simple_vocab_16e6.txt regenerates byte-identical vocab.json/merges.txt."""
    from tools import make_clip_tokenizer as maker

    merges = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    # The real file has more merges than CLIP uses; the extra lines must be ignored.
    body = '"bpe_simple_vocab_16e6.txt#version: 0.2\n' + "\n".join(merges) + "\nzz zz\nqq qq\n"
    source = tmp_path / "bpe.txt.gz"
    source.write_bytes(gzip.compress(body.encode("utf-8"), mtime=0))
    out = tmp_path / "out"
    assert maker.main([str(source), "--out", str(out)]) == 2  # unknown sha256 is refused by default
    assert maker.main([str(source), "--out", str(out), "--allow-unknown-hash"]) == 0
    for name in ("vocab.json", "merges.txt"):
        assert (out / name).read_bytes() == (TOKENIZER_DIR / name).read_bytes(), name


def test_make_clip_tokenizer_rejects_a_wrong_file(tmp_path):
    from tools import make_clip_tokenizer as maker

    bogus = tmp_path / "bogus.gz"
    bogus.write_bytes(gzip.compress(b"hello\nworld\n"))
    with pytest.raises(maker.SourceError, match="does not look like"):
        maker.read_merges(bogus.read_bytes())
    with pytest.raises(maker.SourceError, match="cannot decode"):
        maker.read_merges(b"not a gzip file")
    assert maker.main([str(tmp_path / "missing.gz"), "--out", str(tmp_path)]) == 2


# --- the tokenizer as transformers loads it ---------------------------------------------------------------------

# Ids produced by open_clip 3.3.0's own SimpleTokenizer (the original CLIP tokenizer) on these strings.
KNOWN_IDS = {
    "a photo of": [BOS, 320, 1125, 539, EOS],
    "a photo of a cat": [BOS, 320, 1125, 539, 320, 2368, EOS],
    "masterpiece, best quality, (1girl:1.2), solo": [
        BOS, 12066, 267, 949, 3027, 267, 263, 272, 1611, 281, 272, 269, 273, 2361, 5797, EOS,
    ],
    "café naïve résumé über": [BOS, 15304, 1097, 35689, 563, 29106, 7054, 4166, 6522, 1516, EOS],
    "emoji 😀🚀 <lora:foo:0.8>": [BOS, 16327, 12832, 13542, 283, 2179, 320, 281, 23435, 281, 271, 269, 279, 285, EOS],
    "jekyll": [BOS, 49405, EOS],
}  # fmt: skip


def test_sd1_tokenizer_known_ids():
    tok = _tokenizer(config_dir("sd1") / "tokenizer")
    assert len(tok) == 49408
    assert tok.model_max_length == 77
    for text, ids in KNOWN_IDS.items():
        assert tok(text)["input_ids"] == ids, text


def _random_prompt(rng: random.Random) -> str:
    words = ["a", "photo", "of", "the", "cat", "dog", "masterpiece", "best", "quality", "8k", "uhd", "(", ")", "[", "]",
             ":", "1.2", ",", "BREAK", "lora", "<", ">", "don't", "it's", "café", "日本", "😀", "ultra-detailed",
             "\t", "  ", "!!", "#hashtag", "embedding:neg", "zwölf", "x" * 12, "qzxv", "@", "$3.50"]  # fmt: skip
    return "".join(rng.choice(words) + rng.choice(["", " ", " ", ", "]) for _ in range(rng.randint(1, 25)))


def test_tokenizer_matches_reference_bpe(reference):
    tok = _tokenizer(TOKENIZER_DIR.parent / "sd1" / "tokenizer")
    for text, ids in KNOWN_IDS.items():
        assert reference.encode(text) == ids, text
    rng = random.Random(1234)
    for _ in range(300):
        text = _random_prompt(rng)
        assert tok(text)["input_ids"] == reference.encode(text), text


def test_tokenizer_matches_open_clip_when_installed():
    open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer", reason="open_clip_torch not installed (optional)")
    simple = open_clip_tokenizer.SimpleTokenizer()
    tok = _tokenizer(config_dir("sd1") / "tokenizer")
    rng = random.Random(99)
    for text in [*KNOWN_IDS, *(_random_prompt(rng) for _ in range(100))]:
        assert tok(text)["input_ids"] == [BOS, *simple.encode(text), EOS], text


def _tokenizer_folders():
    for variant in VARIANTS:
        for sub in ("tokenizer", "tokenizer_2"):
            if (config_dir(variant) / sub).is_dir():
                yield variant, sub


@pytest.mark.parametrize(("variant", "sub"), list(_tokenizer_folders()))
def test_every_tokenizer_folder_loads_with_its_pad_token(variant, sub):
    folder = config_dir(variant) / sub
    for name in ("vocab.json", "merges.txt"):
        link = folder / name
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)), f"{link} must be a relative symlink"
        assert link.resolve() == (TOKENIZER_DIR / name).resolve()
    tok = _tokenizer(folder)
    assert len(tok) == 49408 and tok.model_max_length == 77
    # OpenCLIP-trained encoders (SD2, SDXL's bigG) pad with "!" (id 0); OpenAI CLIP-L pads with <|endoftext|>.
    open_clip_family = variant.startswith("sd2") or sub == "tokenizer_2"
    expected_pad = 0 if open_clip_family else EOS
    assert tok.pad_token_id == expected_pad
    ids = tok("a cat", padding="max_length", max_length=tok.model_max_length, truncation=True)["input_ids"]
    assert ids[:4] == [BOS, 320, 2368, EOS] and ids[4:] == [expected_pad] * 73


# --- the model configs ------------------------------------------------------------------------------------------


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_unet(variant: str):
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config_dir(variant) / "unet")))


def _meta_text_encoder(folder: Path):
    import transformers
    from accelerate import init_empty_weights

    config = transformers.CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
    with init_empty_weights():
        return getattr(transformers, config.architectures[0])(config)


@pytest.mark.parametrize("variant", VARIANTS)
def test_unet_matches_the_released_model(variant):
    unet = _meta_unet(variant)
    assert next(unet.parameters()).device.type == "meta"
    info = variant_info(variant)
    base = {"sd1-inpainting": "sd1", "sd2-inpainting": "sd2-512", "sdxl-inpainting": "sdxl-base",
            "sd1-instruct-pix2pix": "sd1"}.get(variant, variant)
    extra = INPAINT_EXTRA if info["is_inpainting"] else PIX2PIX_EXTRA if variant.endswith("pix2pix") else 0
    expected = UNET_PARAMS[base] + extra
    assert _count(unet) == expected
    assert unet.conv_in.in_channels == _in_channels(variant)
    assert unet.config.sample_size * 8 == info["default_resolution"]
    assert unet.config.upcast_attention is (variant == "sd2-768-v")


# Attention layout of the released UNets (head counts do not change parameter counts, so check them directly):
# (attention_head_dim, cross_attention_dim, use_linear_projection, transformer_layers_per_block, block_out_channels)
UNET_LAYOUT = {
    "sd1": (8, 768, False, 1, [320, 640, 1280, 1280]),
    "sd2": ([5, 10, 20, 20], 1024, True, 1, [320, 640, 1280, 1280]),
    "sdxl": ([5, 10, 20], 2048, True, [1, 2, 10], [320, 640, 1280]),
    "sdxl-refiner": ([6, 12, 24, 24], 1280, True, 4, [384, 768, 1536, 1536]),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_unet_attention_layout(variant):
    from diffusers import UNet2DConditionModel

    cfg = UNet2DConditionModel.load_config(str(config_dir(variant) / "unet"))
    info = variant_info(variant)
    key = "sdxl-refiner" if variant == "sdxl-refiner" else info["family"]
    layout = (cfg["attention_head_dim"], cfg["cross_attention_dim"], cfg["use_linear_projection"],
              cfg["transformer_layers_per_block"], cfg["block_out_channels"])  # fmt: skip
    assert layout == UNET_LAYOUT[key]
    if info["is_sdxl"]:
        assert (cfg["addition_embed_type"], cfg["addition_time_embed_dim"]) == ("text_time", 256)
    else:
        assert cfg["addition_embed_type"] is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_vae_and_text_encoders_match_the_released_models(variant):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL

    info = variant_info(variant)
    with init_empty_weights():
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir(variant) / "vae")))
    assert _count(vae) == VAE_PARAMS
    assert vae.config.scaling_factor == info["scaling_factor"]
    assert vae.config.force_upcast is info["is_sdxl"]

    encoders = {sub: _meta_text_encoder(config_dir(variant) / sub) for sub in ("text_encoder", "text_encoder_2")
                if (config_dir(variant) / sub).is_dir()}  # fmt: skip
    counts = {sub: _count(model) for sub, model in encoders.items()}
    if info["is_sdxl"]:
        expected = {"text_encoder_2": TEXT_ENCODER_PARAMS["bigG"]}
        if variant != "sdxl-refiner":
            expected["text_encoder"] = TEXT_ENCODER_PARAMS["CLIP-L"]
        assert type(encoders["text_encoder_2"]).__name__ == "CLIPTextModelWithProjection"
    elif info["is_sd2"]:
        expected = {"text_encoder": TEXT_ENCODER_PARAMS["OpenCLIP-H/23"]}
    else:
        expected = {"text_encoder": TEXT_ENCODER_PARAMS["CLIP-L"]}
    assert counts == expected
    for model in encoders.values():
        assert model.config.vocab_size == 49408 and model.config.max_position_embeddings == 77
        assert model.config.hidden_act == ("quick_gelu" if model.config.hidden_size == 768 else "gelu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_scheduler_config(variant):
    from diffusers import DDIMScheduler, DiffusionPipeline

    info = variant_info(variant)
    folder = config_dir(variant)
    index = DiffusionPipeline.load_config(str(folder))
    cls_name = index["scheduler"][1]
    assert cls_name == ("EulerDiscreteScheduler" if info["is_sdxl"] else "PNDMScheduler")
    import diffusers

    scheduler = getattr(diffusers, cls_name).from_pretrained(str(folder), subfolder="scheduler")
    cfg = scheduler.config
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert (cfg.num_train_timesteps, cfg.steps_offset, cfg.timestep_spacing) == (1000, 1, "leading")
    assert cfg.prediction_type == info["prediction_type"]
    if not info["is_sdxl"]:
        assert cfg.skip_prk_steps is True and cfg.set_alpha_to_one is False
    # Switching samplers keeps SD's settings rather than DDIM's defaults (clip_sample=True would ruin images).
    ddim = DDIMScheduler.from_config(cfg)
    assert ddim.config.clip_sample is False and ddim.config.prediction_type == info["prediction_type"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_pipeline_builds_from_the_folder_offline(variant):
    """Every component named in model_index.json is built from the folder alone; the pipeline class accepts them."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    folder = config_dir(variant)
    info = variant_info(variant)
    index = diffusers.DiffusionPipeline.load_config(str(folder))
    pipeline_cls = getattr(diffusers, index["_class_name"])
    assert index["_class_name"] == info["pipeline_class"]
    accepted = set(inspect.signature(pipeline_cls.__init__).parameters)
    settings = {k: v for k, v in index.items() if not k.startswith("_") and not isinstance(v, list)}
    assert set(settings) <= accepted, f"{variant}: model_index settings not accepted: {set(settings) - accepted}"

    components = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list):
            continue
        assert name in accepted, f"{variant}: {name} is not a {pipeline_cls.__name__} component"
        library, class_name = value
        if library is None:
            components[name] = None
            continue
        cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
        sub = folder / name
        if name.startswith("tokenizer") or name == "scheduler":
            components[name] = cls.from_pretrained(str(sub), local_files_only=True)
        elif name.startswith("text_encoder"):
            components[name] = _meta_text_encoder(sub)
        else:
            with init_empty_weights():
                components[name] = cls.from_config(cls.load_config(str(sub)))
    pipe = pipeline_cls.from_pretrained(str(folder), local_files_only=True, **components)
    assert type(pipe).__name__ == info["pipeline_class"]
    assert pipe.vae_scale_factor == 8
    assert pipe.unet.config.in_channels == _in_channels(variant)
    if info["is_sdxl"]:
        assert pipe.config.force_zeros_for_empty_prompt is (variant != "sdxl-refiner")
        assert pipe.text_encoder_2 is not None and pipe.tokenizer_2.model_max_length == 77
        assert (pipe.text_encoder is None) is (variant == "sdxl-refiner")
        if variant != "sdxl-base":
            assert pipe.config.requires_aesthetics_score is (variant == "sdxl-refiner")
        # SDXL's added time embedding must match the text_encoder_2 projection + 6 (or 5 for the refiner) size ids.
        n_ids = 5 if variant == "sdxl-refiner" else 6
        assert pipe.unet.config.projection_class_embeddings_input_dim == 1280 + n_ids * 256
    else:
        assert pipe.safety_checker is None and pipe.config.requires_safety_checker is False
        assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size


# --- modules.model_configs --------------------------------------------------------------------------------------


def test_variants_are_exactly_the_bundled_folders():
    assert VARIANTS == ("sd1", "sd1-inpainting", "sd1-instruct-pix2pix", "sd2-512", "sd2-768-v", "sd2-inpainting",
                        "sdxl-base", "sdxl-refiner", "sdxl-inpainting")  # fmt: skip
    folders = {p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file()}
    assert folders == set(VARIANTS)
    assert all(config_dir(v) == CONFIGS_DIR / v for v in VARIANTS)


def test_unknown_variant_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"unknown model config variant 'sd3'.*sd1, sd1-inpainting, sd1-instruct-pix2pix"):
        config_dir("sd3")
    with pytest.raises(model_configs.UnknownVariantError):
        variant_info("")


def test_variant_info_fields():
    info = variant_info("sd2-768-v")
    assert info == {
        "variant": "sd2-768-v",
        "pipeline_class": "StableDiffusionPipeline",
        "family": "sd2",
        "is_sdxl": False,
        "is_sd2": True,
        "is_inpainting": False,
        "prediction_type": "v_prediction",
        "scaling_factor": 0.18215,
        "default_resolution": 768,
        "diffusers_model_type": "v2",
    }
    info["family"] = "changed"
    assert variant_info("sd2-768-v")["family"] == "sd2"  # callers get a copy
    assert variant_info("sdxl-inpainting")["scaling_factor"] == 0.13025


def test_generator_reproduces_the_committed_folders():
    from tools import make_configs

    problems = [p for variant in VARIANTS for p in make_configs.check_variant(variant, CONFIGS_DIR)]
    assert problems == []
