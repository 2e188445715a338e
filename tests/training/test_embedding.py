"""Textual inversion on the tiny SD1 model: create, train a few steps, A1111 .pt format, frozen checkpoint."""

from __future__ import annotations

import csv

import pytest
import torch

from modules.errors import ValidationError
from modules.params_train import CreateEmbeddingParams, TrainEmbeddingParams
from modules.state import JobState
from modules.training import embedding
from tests.training.conftest import assert_bit_exact, fixed_loss, snapshot


def _params(toy_dataset, **kw) -> TrainEmbeddingParams:
    base = dict(embedding_name="toyemb", learn_rate="0.05", data_root=str(toy_dataset), training_width=64,
                training_height=64, steps=6, create_image_every=0, save_embedding_every=3,
                template_filename="subject_filewords.txt", seed=1, log_directory="textual_inversion")
    base.update(kw)
    return TrainEmbeddingParams(**base)


def test_create_embedding_from_init_text(runtime):
    path = embedding.create_embedding(runtime, CreateEmbeddingParams(name="toyemb", num_vectors_per_token=3,
                                                                     init_text="red square"))
    data = torch.load(path, weights_only=True)
    vec = data["string_to_param"]["*"]
    assert vec.shape == (3, 32) and data["step"] == 0 and data["name"] == "toyemb"
    te = runtime.models.current.pipe.text_encoder
    table = getattr(te, "text_model", te).embeddings.token_embedding.weight
    ids = runtime.models.current.pipe.tokenizer("red square", add_special_tokens=False)["input_ids"]
    assert torch.equal(vec[0], table[ids[0]].float()) and torch.equal(vec[1], table[ids[0]].float())
    assert torch.equal(vec[2], table[ids[1]].float())  # A1111: vector i takes init token i*len//n
    with pytest.raises(ValidationError, match="already exists"):
        embedding.create_embedding(runtime, CreateEmbeddingParams(name="toyemb"))
    with pytest.raises(ValidationError, match="plain file name"):
        embedding.create_embedding(runtime, CreateEmbeddingParams(name="../evil"))


def _image(runtime, prompt: str):
    import numpy as np

    from modules import job_runner
    from modules.params import Txt2ImgParams

    params = Txt2ImgParams(prompt=prompt, width=64, height=64, steps=2, seed=11, do_not_save_samples=True,
                           do_not_save_grid=True)
    processed = job_runner.run_now(runtime, job_runner.JobRequest(params))
    return np.asarray(processed.images[0])


def test_training_lowers_loss_keeps_weights_and_saves_a1111_format(runtime, toy_dataset):
    embedding.create_embedding(runtime, CreateEmbeddingParams(name="toyemb", num_vectors_per_token=2))
    model = runtime.models.current
    image_before = _image(runtime, "a photo of toyemb")
    before = snapshot(model)
    start = torch.load(runtime.paths.embeddings_dir / "toyemb.pt", weights_only=True)["string_to_param"]["*"]
    loss_before = fixed_loss(runtime, toy_dataset, "a photo of toyemb", {"toyemb": start})
    result = embedding.run_training(runtime, _params(toy_dataset, steps=10, save_embedding_every=5), JobState())
    assert len(result.losses) == 10 and result.step == 10 and not result.interrupted
    trained = torch.load(runtime.paths.embeddings_dir / "toyemb.pt", weights_only=True)["string_to_param"]["*"]
    assert fixed_loss(runtime, toy_dataset, "a photo of toyemb", {"toyemb": trained}) < loss_before
    assert_bit_exact(before, model)
    data = torch.load(runtime.paths.embeddings_dir / "toyemb.pt", weights_only=True)
    assert data["step"] == 10 and set(data) >= {"string_to_param", "step", "sd_checkpoint", "sd_checkpoint_name"}
    assert data["sd_checkpoint_name"] == "tiny" and len(data["sd_checkpoint"]) == 10
    assert not torch.equal(data["string_to_param"]["*"], start)
    copies = sorted(p.name for p in (runtime.paths.data_dir / "textual_inversion").rglob("embeddings/*.pt"))
    assert copies == ["toyemb-10.pt", "toyemb-5.pt"]
    rows = list(csv.reader(next((runtime.paths.data_dir / "textual_inversion").rglob("*.csv")).open()))
    assert rows[0] == ["step", "epoch", "epoch_step", "loss", "learn_rate"] and len(rows) == 11
    # Usable at once: listed with its step, and the prompt that names it gives another conditioning.
    assert runtime.embeddings.loaded["toyemb"].step == 10
    cond = runtime.conditioner_for(model)
    assert not torch.equal(cond.get_learned_conditioning(["a photo of toyemb"]),
                           cond.get_learned_conditioning(["a photo of toy"]))
    assert (_image(runtime, "a photo of toyemb") != image_before).any()  # same seed, the trained vectors


def test_preview_images_carry_infotext_and_the_embedding(runtime, toy_dataset):
    import base64
    import json

    from PIL import Image

    embedding.create_embedding(runtime, CreateEmbeddingParams(name="toyemb"))
    result = embedding.run_training(runtime, _params(toy_dataset, steps=2, create_image_every=2, save_embedding_every=0,
                                                     preview_from_txt2img=True, preview_steps=3, preview_width=64,
                                                     preview_height=64, preview_prompt="a photo of toyemb"),
                                    JobState())
    assert len(result.images) == 1 and result.images[0].endswith("images/toyemb-2.png")
    with Image.open(result.images[0]) as im:
        text = dict(im.text)
    assert "Steps: 3" in text["parameters"] and "a photo of toyemb" in text["parameters"]
    stored = json.loads(base64.b64decode(text["sd-ti-embedding"]))
    assert stored["step"] == 2 and stored["name"] == "toyemb"
    saved = torch.load(runtime.paths.embeddings_dir / "toyemb.pt", weights_only=True)["string_to_param"]["*"]
    assert torch.allclose(torch.tensor(stored["string_to_param"]["*"]["TORCHTENSOR"]), saved)
    # No txt2img output folder was written by the previews.
    assert not list((runtime.paths.data_dir / "outputs").rglob("*.png"))


def test_sd2_v_prediction_model_trains(make_runtime, data_dir, toy_dataset):
    from tests.fixtures.tiny_models import write_tiny_checkpoint

    write_tiny_checkpoint("sd2-768-v", data_dir / "models" / "Stable-diffusion", "tiny2v", seed=3)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("tiny2v.safetensors")
    assert rt.models.current.prediction_type == "v_prediction"
    embedding.create_embedding(rt, CreateEmbeddingParams(name="toyemb"))
    result = embedding.run_training(rt, _params(toy_dataset, steps=2, save_embedding_every=0), JobState())
    assert result.step == 2 and all(loss == loss and loss > 0 for _, loss in result.losses)  # finite, not NaN
    assert torch.load(rt.paths.embeddings_dir / "toyemb.pt", weights_only=True)["step"] == 2


def test_lora_in_a_preview_prompt_leaves_no_weights_behind(runtime, toy_dataset):
    from safetensors.torch import save_file

    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    gen = torch.Generator().manual_seed(0)
    runtime.paths.lora_dir.mkdir(parents=True, exist_ok=True)
    save_file({f"{key}.lora_up.weight": torch.randn(32, 2, generator=gen),
               f"{key}.lora_down.weight": torch.randn(2, 32, generator=gen)},
              str(runtime.paths.lora_dir / "side.safetensors"))
    embedding.create_embedding(runtime, CreateEmbeddingParams(name="toyemb"))
    before = snapshot(runtime.models.current)
    result = embedding.run_training(runtime, _params(toy_dataset, steps=2, create_image_every=1, save_embedding_every=0,
                                                     preview_from_txt2img=True, preview_steps=2, preview_width=64,
                                                     preview_height=64, preview_prompt="<lora:side:1> toyemb"),
                                    JobState())
    assert len(result.images) == 2
    assert_bit_exact(before, runtime.models.current)


def test_a_diverging_run_stops_and_keeps_the_saved_file(runtime, toy_dataset):
    from modules.training.core import TrainingError

    embedding.create_embedding(runtime, CreateEmbeddingParams(name="toyemb"))
    saved = (runtime.paths.embeddings_dir / "toyemb.pt").read_bytes()
    with pytest.raises(TrainingError, match="loss became"):
        embedding.run_training(runtime, _params(toy_dataset, learn_rate="1e30", steps=4, save_embedding_every=0),
                               JobState())
    assert (runtime.paths.embeddings_dir / "toyemb.pt").read_bytes() == saved
