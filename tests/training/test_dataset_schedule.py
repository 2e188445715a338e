"""Learning-rate schedule syntax, [filewords]/[name] templates, captions, buckets and the dataset's bad input."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from modules.errors import ValidationError
from modules.paths import SCRIPT_PATH
from modules.training import core, dataset
from modules.training.lr_schedule import parse_schedule


def test_schedule_as_a1111():
    s = parse_schedule("0.005:100, 1e-3:1000, 1e-5", 2000)
    assert [s.value_at(i) for i in (0, 99, 100, 999, 1000, 1999)] == [0.005, 0.005, 1e-3, 1e-3, 1e-5, 1e-5]
    assert s.value_at(2000) is None
    ended = parse_schedule("0.01:10, 0.001:20", 100)
    assert ended.value_at(19) == 0.001 and ended.value_at(20) is None  # the run stops where the schedule ends
    assert parse_schedule("0.1:-1", 50).value_at(49) == 0.1
    resumed = parse_schedule("0.005:100, 1e-3:1000", 2000, cur_step=150)
    assert resumed.pairs == ((1e-3, 1000),)
    assert parse_schedule("0.01:5000", 300).pairs == ((0.01, 300),)  # cut at max steps


@pytest.mark.parametrize("text, message", [("", "empty"), ("abc", "not a number"), ("0.1:x", "not a whole number"),
                                           ("0.1:10:20", "more than one"), ("-0.1", "positive"),
                                           ("0.1:20, 0.2:10", "increase"), ("0.1:0", "positive"),
                                           ("nan", "positive")])
def test_schedule_errors_name_the_problem(text, message):
    with pytest.raises(ValidationError, match=message) as e:
        parse_schedule(text, 100, field="learn_rate")
    assert e.value.field == "learn_rate"


def test_templates_and_filewords(tmp_path):
    folder = SCRIPT_PATH / "textual_inversion_templates"
    assert {"style.txt", "style_filewords.txt", "subject.txt", "subject_filewords.txt", "none.txt",
            "hypernetwork.txt"} <= set(dataset.list_templates(folder))
    lines = dataset.read_template(folder, "subject_filewords.txt")
    assert all("[name]" in line and "[filewords]" in line for line in lines)
    rng = random.Random(0)
    assert dataset.expand_template("a photo of [name], [filewords]", "red, square", "myemb", rng) == \
        "a photo of myemb, red, square"
    shuffled = {dataset.expand_template("[filewords]", "a,b,c,d", "x", rng, shuffle_tags=True) for _ in range(20)}
    assert len(shuffled) > 1 and all(sorted(s.split(",")) == ["a", "b", "c", "d"] for s in shuffled)
    dropped = [dataset.expand_template("[filewords]", "a,b,c,d", "x", rng, tag_drop_out=0.5) for _ in range(50)]
    assert any(len(d.split(",")) < 4 for d in dropped)
    with pytest.raises(ValidationError, match="no prompt template"):
        dataset.read_template(folder, "../../etc/passwd")
    # Captions: the .txt beside the image wins; otherwise the file name without its leading counter.
    (tmp_path / "00012-a red square.png").touch()
    (tmp_path / "b.png").touch()
    (tmp_path / "b.txt").write_text("blue circle, tag2\n")
    assert dataset.caption_for(tmp_path / "00012-a red square.png") == "a red square"
    assert dataset.caption_for(tmp_path / "b.png") == "blue circle, tag2"
    assert dataset.caption_for(tmp_path / "00012-a red square.png", r"\w+", "_") == "a_red_square"


def test_dataset_sizes_buckets_and_bad_input(tmp_path):
    Image.new("RGB", (200, 100), (255, 0, 0)).save(tmp_path / "wide.png")
    Image.new("RGBA", (64, 64), (0, 0, 255, 128)).save(tmp_path / "alpha.png")
    data = dataset.load_dataset(tmp_path, 64, 64, use_weight=True, flip=True)
    assert [e.size for e in data.entries] == [(64, 64)] * 4
    assert data.entries[0].weight is not None and tuple(data.entries[0].weight.shape) == (8, 8)
    buckets = dataset.bucket_sizes(512, 256, 1024)
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in buckets)
    assert dataset.pick_bucket((1000, 500), buckets) in {(704, 320), (768, 320), (704, 384)}
    bucketed = dataset.load_dataset(tmp_path, 64, 64, buckets=[(64, 64), (128, 64)], batch_size=2, repeats=2)
    assert sorted(e.size for e in bucketed.entries) == [(64, 64), (128, 64)]
    batches = list(bucketed.batches(random.Random(0)))
    assert all(len({e.size for e in b}) == 1 for b in batches) and sum(len(b) for b in batches) == 4
    (tmp_path / "bad.jpg").write_text("text")
    with pytest.raises(ValidationError, match="bad.jpg is not a readable image"):
        dataset.load_dataset(tmp_path, 64, 64)
    with pytest.raises(ValidationError, match="does not exist"):
        dataset.list_images(tmp_path / "nope")


def test_names_and_supported_models():
    for bad in ("a/b", "..", "../x", ".hidden", "", "a\\b"):
        with pytest.raises(ValidationError):
            core.check_name(bad, "name")
    assert core.check_name(" my emb-v2 ", "name") == "my emb-v2"
    from types import SimpleNamespace

    with pytest.raises(ValidationError, match="embedding trainer supports SD1.x and SD2.x"):
        core.model_family(SimpleNamespace(variant="sdxl-base"), "embedding")
    with pytest.raises(ValidationError, match="not inpainting or refiner"):
        core.model_family(SimpleNamespace(variant="sdxl-refiner"), "LoRA", sdxl=True)
    assert core.model_family(SimpleNamespace(variant="sdxl-base"), "LoRA", sdxl=True) == "sdxl"
    assert core.model_family(SimpleNamespace(variant="sd2-768-v"), "LoRA") == "sd2"


A1111_COMMON = dict(id_task="task(x)", learn_rate="0.005", batch_size=1, gradient_step=1, data_root="/d",
                    log_directory="textual_inversion", training_width=512, training_height=512, varsize=False,
                    steps=100, clip_grad_mode="disabled", clip_grad_value="0.1", shuffle_tags=False,
                    tag_drop_out=0.0, latent_sampling_method="once", use_weight=False, create_image_every=500,
                    template_filename="style_filewords.txt", preview_from_txt2img=False, preview_prompt="",
                    preview_negative_prompt="", preview_steps=20, preview_sampler_name="Euler a",
                    preview_cfg_scale=7.0, preview_seed=-1, preview_width=512, preview_height=512)


def test_a1111_request_bodies_are_accepted():
    from modules.params_train import CreateHypernetworkParams, TrainEmbeddingParams, TrainHypernetworkParams

    TrainEmbeddingParams(**A1111_COMMON, embedding_name="e", save_embedding_every=500,
                         save_image_with_stored_embedding=True)
    TrainHypernetworkParams(**A1111_COMMON, hypernetwork_name="h", save_hypernetwork_every=500)
    old = TrainEmbeddingParams(embedding_name="e", template_file="subject.txt", preview_sampler_index=0)
    assert old.template_filename == "subject.txt"
    CreateHypernetworkParams(name="h", enable_sizes=[768, 320, 640, 1280], overwrite_old=False, layer_structure=None,
                             activation_func=None, weight_init=None, add_layer_norm=False, use_dropout=False,
                             dropout_structure=None)


def test_kohya_folders_repeat_their_images(tmp_path):
    (tmp_path / "3_red").mkdir()
    (tmp_path / "notes").mkdir()  # not N_name: ignored
    Image.new("RGB", (64, 64), (255, 0, 0)).save(tmp_path / "3_red" / "a.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(tmp_path / "b.png")
    Image.new("RGB", (64, 64), (0, 255, 0)).save(tmp_path / "notes" / "c.png")
    data = dataset.load_dataset(tmp_path, 64, 64, kohya=True, repeats=2)
    assert sorted(e.path.name for e in data.entries) == ["a.png", "b.png"] and len(data) == 8
    names = [e.path.name for batch in data.batches(random.Random(0)) for e in batch]
    assert names.count("a.png") == 6 and names.count("b.png") == 2
    from modules.training.lora_trainer import dataset_dirs

    assert dataset_dirs(tmp_path, 2) == {tmp_path.name: {"n_repeats": 2, "img_count": 1},
                                         "3_red": {"n_repeats": 6, "img_count": 1}}
    assert [e.path.name for e in dataset.load_dataset(tmp_path, 64, 64).entries] == ["b.png"]
