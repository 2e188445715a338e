"""LoRA on the tiny models: every network type in kohya key layout changes weights and restores them exactly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from modules import lora
from tests.fixtures.tiny_models import build_tiny_components

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # Linear 32x32
CONV = "down_blocks.1.resnets.0.conv1"  # Conv2d 64x32x3x3
TE = "text_model.encoder.layers.0.self_attn.q_proj"  # Linear 32x32
NORM = "down_blocks.0.attentions.0.transformer_blocks.0.norm1"


def kohya(path: str, te: bool = False, prefix: str | None = None) -> str:
    return (prefix or ("lora_te_" if te else "lora_unet_")) + path.replace(".", "_")


@pytest.fixture(scope="module")
def components() -> dict:
    return build_tiny_components("sd1", seed=3)


@pytest.fixture
def model(components):
    pipe = SimpleNamespace(unet=components["unet"], text_encoder=components["text_encoder"])
    m = SimpleNamespace(pipe=pipe, extra={}, variant="sd1")
    yield m
    # Leave the shared components clean for the next test.
    if "model_patcher" in m.extra:
        m.extra["model_patcher"].restore()


def snapshot(model) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in ("unet", "text_encoder")
            for k, v in getattr(model.pipe, n).state_dict().items()}


def weight(model, component: str, path: str) -> torch.Tensor:
    return getattr(model.pipe, component).get_submodule(path.removeprefix("text_model.")).weight.data


def g(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.1


def write(folder: Path, name: str, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    return path


NETWORKS = {
    "lora": lambda: {f"{kohya(ATTN)}.lora_up.weight": g(32, 4), f"{kohya(ATTN)}.lora_down.weight": g(4, 32, seed=1),
                     f"{kohya(ATTN)}.alpha": torch.tensor(2.0),
                     f"{kohya(TE, te=True)}.lora_up.weight": g(32, 2, seed=2),
                     f"{kohya(TE, te=True)}.lora_down.weight": g(2, 32, seed=3)},
    "locon": lambda: {f"{kohya(CONV)}.lora_up.weight": g(64, 4, 1, 1), f"{kohya(CONV)}.lora_down.weight":
                      g(4, 32, 3, 3, seed=1), f"{kohya(CONV)}.alpha": torch.tensor(4.0)},
    "locon_cp": lambda: {f"{kohya(CONV)}.lora_up.weight": g(64, 4, 1, 1), f"{kohya(CONV)}.lora_down.weight":
                         g(4, 32, 1, 1, seed=1), f"{kohya(CONV)}.lora_mid.weight": g(4, 4, 3, 3, seed=2)},
    "loha": lambda: {f"{kohya(ATTN)}.hada_w1_a": g(32, 4), f"{kohya(ATTN)}.hada_w1_b": g(4, 32, seed=1),
                     f"{kohya(ATTN)}.hada_w2_a": g(32, 4, seed=2), f"{kohya(ATTN)}.hada_w2_b": g(4, 32, seed=3),
                     f"{kohya(ATTN)}.alpha": torch.tensor(4.0)},
    "lokr": lambda: {f"{kohya(CONV)}.lokr_w1": g(8, 4), f"{kohya(CONV)}.lokr_w2_a": g(8, 2, seed=1),
                     f"{kohya(CONV)}.lokr_w2_b": g(2, 72, seed=2), f"{kohya(CONV)}.alpha": torch.tensor(1.0)},
    "ia3": lambda: {f"{kohya(ATTN)}.weight": g(32), f"{kohya(ATTN)}.on_input": torch.tensor(0.0)},
    "full": lambda: {f"{kohya(CONV)}.diff": g(64, 32, 3, 3), f"{kohya(CONV)}.diff_b": g(64, seed=5)},
    "norm": lambda: {f"{kohya(NORM)}.w_norm": g(32), f"{kohya(NORM)}.b_norm": g(32, seed=1)},
    "dora": lambda: {f"{kohya(ATTN)}.lora_up.weight": g(32, 4), f"{kohya(ATTN)}.lora_down.weight":
                     g(4, 32, seed=1), f"{kohya(ATTN)}.dora_scale": g(1, 32, seed=2).abs() + 1.0},
    "peft": lambda: {f"unet.{ATTN}.lora_A.weight": g(4, 32, seed=1), f"unet.{ATTN}.lora_B.weight": g(32, 4),
                     f"text_encoder.{TE}.lora_A.weight": g(2, 32, seed=3),
                     f"text_encoder.{TE}.lora_B.weight": g(32, 2, seed=2)},
}


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_each_type_changes_weights_and_restores_exactly(model, tmp_path: Path, kind: str) -> None:
    write(tmp_path, kind, NETWORKS[kind]())
    db = lora.LoraDatabase([tmp_path])
    before = snapshot(model)
    result = lora.activate(model, db, [lora.LoraRequest(kind, 0.7, 0.7)])
    assert result.errors == {} and result.written
    during = snapshot(model)
    changed = [k for k in before if not torch.equal(before[k], during[k])]
    assert changed, kind
    lora.activate(model, db, [])
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_lora_delta_matches_kohya_formula_and_multipliers(model, tmp_path: Path) -> None:
    tensors = NETWORKS["lora"]()
    write(tmp_path, "x", tensors)
    db = lora.LoraDatabase([tmp_path])
    w_unet, w_te = weight(model, "unet", ATTN).clone(), weight(model, "text_encoder", TE).clone()
    lora.activate(model, db, [lora.LoraRequest("x", te=0.5, unet=2.0)])
    up, down = tensors[f"{kohya(ATTN)}.lora_up.weight"], tensors[f"{kohya(ATTN)}.lora_down.weight"]
    torch.testing.assert_close(weight(model, "unet", ATTN), w_unet + up @ down * (2.0 / 4) * 2.0)
    up_t, down_t = tensors[f"{kohya(TE, te=True)}.lora_up.weight"], tensors[f"{kohya(TE, te=True)}.lora_down.weight"]
    torch.testing.assert_close(weight(model, "text_encoder", TE), w_te + up_t @ down_t * 0.5)
    # dyn keeps only the first rows/columns of the rank.
    lora.activate(model, db, [lora.LoraRequest("x", te=0.0, unet=1.0, dyn=2)])
    torch.testing.assert_close(weight(model, "unet", ATTN), w_unet + up[:, :2] @ down[:2] * (2.0 / 2))


def test_peft_and_kohya_spellings_hit_the_same_modules(model, tmp_path: Path) -> None:
    t = NETWORKS["lora"]()
    write(tmp_path, "k", {k: v for k, v in t.items() if "alpha" not in k})
    write(tmp_path, "p", {f"unet.{ATTN}.lora_A.weight": t[f"{kohya(ATTN)}.lora_down.weight"],
                          f"unet.{ATTN}.lora_B.weight": t[f"{kohya(ATTN)}.lora_up.weight"],
                          f"text_encoder.{TE}.lora_A.weight": t[f"{kohya(TE, te=True)}.lora_down.weight"],
                          f"text_encoder.{TE}.lora_B.weight": t[f"{kohya(TE, te=True)}.lora_up.weight"]})
    db = lora.LoraDatabase([tmp_path])
    lora.activate(model, db, [lora.LoraRequest("k")])
    a = snapshot(model)
    lora.activate(model, db, [lora.LoraRequest("p")])
    b = snapshot(model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ldm_style_unet_names_map_to_diffusers_modules(model) -> None:
    index = lora.module_index(model)
    # down_blocks.1.resnets.0.conv1 is LDM input_blocks.3.0.in_layers.2 with one layer per block.
    assert index["lora_unet_input_blocks_3_0_in_layers_2"][0] == f"unet.{CONV}"
    assert index["lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q"][0] == f"unet.{ATTN}"
    assert index["lora_te_text_model_encoder_layers_0_self_attn_q_proj"][0] == "text_encoder.encoder.layers.0" \
                                                                               ".self_attn.q_proj"


def test_several_loras_are_summed_and_unchanged_set_is_free(model, tmp_path: Path) -> None:
    write(tmp_path, "a", NETWORKS["lora"]())
    write(tmp_path, "b", NETWORKS["ia3"]())
    db = lora.LoraDatabase([tmp_path])
    w0 = weight(model, "unet", ATTN).clone()
    lora.activate(model, db, [lora.LoraRequest("a")])
    da = weight(model, "unet", ATTN) - w0
    lora.activate(model, db, [lora.LoraRequest("b")])
    db_ = weight(model, "unet", ATTN) - w0
    first = lora.activate(model, db, [lora.LoraRequest("a"), lora.LoraRequest("b")])
    torch.testing.assert_close(weight(model, "unet", ATTN) - w0, da + db_)
    assert first.written
    again = lora.activate(model, db, [lora.LoraRequest("a"), lora.LoraRequest("b")])
    assert not again.written


def test_sdxl_lora_on_sd1_model_is_reported_and_nothing_applied(model, tmp_path: Path) -> None:
    write(tmp_path, "good", NETWORKS["lora"]())
    write(tmp_path, "xl", {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": g(32, 2),
                           "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": g(2, 32),
                           f"{kohya(ATTN)}.lora_up.weight": g(32, 2), f"{kohya(ATTN)}.lora_down.weight": g(2, 32)},
          {"ss_base_model_version": "sdxl_base_v1-0"})
    db = lora.LoraDatabase([tmp_path])
    before = snapshot(model)
    result = lora.activate(model, db, [lora.LoraRequest("xl")])
    assert "xl" in result.errors and "SDXL" in result.errors["xl"]
    assert all(torch.equal(before[k], v) for k, v in snapshot(model).items())
    # The good one still applies beside the bad one; the bad one never half-applies.
    both = lora.activate(model, db, [lora.LoraRequest("good"), lora.LoraRequest("xl")])
    assert list(both.errors) == ["xl"]
    lora.activate(model, db, [lora.LoraRequest("good")])
    only_good = snapshot(model)
    lora.activate(model, db, [lora.LoraRequest("good"), lora.LoraRequest("xl")])
    assert all(torch.equal(only_good[k], v) for k, v in snapshot(model).items())
    assert db.files["xl"].sd_version == "SDXL"


def test_wrong_shapes_reported_by_name(model, tmp_path: Path) -> None:
    write(tmp_path, "bad", {f"{kohya(ATTN)}.lora_up.weight": g(64, 4), f"{kohya(ATTN)}.lora_down.weight": g(4, 32)})
    db = lora.LoraDatabase([tmp_path])
    result = lora.activate(model, db, [lora.LoraRequest("bad"), lora.LoraRequest("missing")])
    assert "does not fit" in result.errors["bad"] and result.errors["bad"].startswith("bad:")
    assert "not found" in result.errors["missing"]


def test_discovery_is_recursive_with_alias_and_pt(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "deep", "file_a", NETWORKS["lora"](), {"ss_output_name": "nice"})
    torch.save(NETWORKS["ia3"](), tmp_path / "old.pt")
    db = lora.LoraDatabase([tmp_path])
    names = {f.name: f.folder for f in db.refresh()}
    assert names == {"file_a": "sub/deep", "old": ""}
    assert db.find("nice").name == "file_a" and db.find("old") is not None
    assert "weight" in next(iter(db.groups(db.find("old")).values()))


def test_request_parsing_a1111_args() -> None:
    from modules.extra_networks_syntax import ExtraNetworkParams as P

    r = lora.LoraRequest.from_params(P(["x", "0.8"]))
    assert (r.te, r.unet, r.dyn) == (0.8, 0.8, None)
    r = lora.LoraRequest.from_params(P(["x", "1", "0.5", "8"]))
    assert (r.te, r.unet, r.dyn) == (1.0, 0.5, 8)
    r = lora.LoraRequest.from_params(P(["x", "unet=0.3", "te=1", "dyn=4"]))
    assert (r.te, r.unet, r.dyn) == (1.0, 0.3, 4)
    with pytest.raises(lora.LoraError, match="bad multiplier"):
        lora.LoraRequest.from_params(P(["x", "abc"]))


def generate(rt, prompt: str):
    from modules import job_runner
    from modules.params import Txt2ImgParams

    params = Txt2ImgParams(prompt=prompt, width=64, height=64, steps=3, seed=5, sampler_name="Euler",
                           do_not_save_samples=True, do_not_save_grid=True)
    return job_runner.run_now(rt, job_runner.JobRequest(params))


def test_prompt_tag_changes_image_writes_hashes_and_restores(runtime, data_dir: Path) -> None:
    import numpy as np

    from modules.hashes import addnet_hash_safetensors
    from modules.infotext import parse_generation_parameters

    path = write(data_dir / "models" / "Lora" / "styles", "mystyle", {
        k: v * 20 for k, v in NETWORKS["lora"]().items() if "alpha" not in k})
    write(data_dir / "models" / "Lora", "xl", {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight":
                                               g(32, 2), "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"
                                               ".lora_down.weight": g(2, 32)})
    base = generate(runtime, "a cat")
    with_lora = generate(runtime, "a cat <lora:mystyle:1>")
    pix = lambda r: np.asarray(r.images[0], dtype=np.int16)  # noqa: E731
    assert np.abs(pix(base) - pix(with_lora)).max() > 0
    params = parse_generation_parameters(with_lora.info)
    assert params["Lora hashes"] == f"mystyle: {addnet_hash_safetensors(path)[:12]}"
    assert "Lora hashes" not in parse_generation_parameters(base.info)
    # <lyco:...> is the same network; unchanged set is not re-applied.
    patcher = runtime.models.current.extra["model_patcher"]
    count = patcher.applied_count
    again = generate(runtime, "a cat <lyco:mystyle:1>")
    assert patcher.applied_count == count
    assert np.array_equal(pix(again), pix(with_lora))
    restored = generate(runtime, "a cat")
    assert np.array_equal(pix(restored), pix(base))
    bad = generate(runtime, "a cat <lora:xl:1>")
    assert "xl:" in bad.comments and "SDXL" in bad.comments
    assert "Lora hashes" not in parse_generation_parameters(bad.info)  # only applied LoRAs are listed
    assert np.array_equal(pix(bad), pix(base))


# --- hypernetworks (A1111 .pt) ----------------------------------------------------------------------------


def write_hypernet(path: Path, width: int, seed: int = 0) -> dict:
    def module() -> dict:
        return {"linear.0.weight": g(2 * width, width, seed=seed), "linear.0.bias": g(2 * width, seed=seed + 1),
                "linear.2.weight": g(width, 2 * width, seed=seed + 2), "linear.2.bias": g(width, seed=seed + 3)}

    data = {width: [module(), module()], "activation_func": "relu", "layer_structure": [1, 2, 1],
            "is_layer_norm": False, "activate_output": False, "name": path.stem, "step": 100}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def test_hypernetwork_module_matches_a1111_math(tmp_path: Path) -> None:
    from modules.hypernetworks import load_hypernetwork

    data = write_hypernet(tmp_path / "h.pt", 8)
    net = load_hypernetwork(tmp_path / "h.pt")
    k = net.layers[8][0]
    k.multiplier = 0.5
    x = torch.randn(2, 3, 8)
    sd = data[8][0]
    hidden = torch.relu(x @ sd["linear.0.weight"].T + sd["linear.0.bias"])
    expected = x + (hidden @ sd["linear.2.weight"].T + sd["linear.2.bias"]) * 0.5
    torch.testing.assert_close(k(x), expected)


def test_hypernet_tag_changes_image_and_is_removed(runtime, data_dir: Path) -> None:
    import numpy as np

    write_hypernet(data_dir / "models" / "hypernetworks" / "anime.pt", 32)
    write_hypernet(data_dir / "models" / "hypernetworks" / "sd1big.pt", 768)
    write(data_dir / "models" / "Lora", "mystyle", {k: v * 20 for k, v in NETWORKS["lora"]().items()})
    pix = lambda r: np.asarray(r.images[0], dtype=np.int16)  # noqa: E731
    base = generate(runtime, "a cat")
    hyper = generate(runtime, "a cat <hypernet:anime:1>")
    assert np.abs(pix(base) - pix(hyper)).max() > 0
    assert np.array_equal(pix(generate(runtime, "a cat <hypernet:anime:0>")), pix(base))
    # Together with a LoRA on the same cross-attention layers, then both gone.
    both = generate(runtime, "a cat <hypernet:anime:1> <lora:mystyle:1>")
    assert both.comments == "" and np.abs(pix(both) - pix(hyper)).max() > 0
    assert np.array_equal(pix(generate(runtime, "a cat")), pix(base))
    wrong = generate(runtime, "a cat <hypernet:sd1big:1>")
    assert "sd1big" in wrong.comments and np.array_equal(pix(wrong), pix(base))


def test_sdxl_names_te1_te2_and_ldm_unet() -> None:
    c = build_tiny_components("sdxl-base", seed=1)
    model = SimpleNamespace(pipe=SimpleNamespace(unet=c["unet"], text_encoder=c["text_encoder"],
                                                 text_encoder_2=c["text_encoder_2"]), extra={})
    index = lora.module_index(model)
    assert index["lora_te1_text_model_encoder_layers_0_self_attn_q_proj"][0].startswith("text_encoder.")
    assert index["lora_te2_text_model_encoder_layers_0_mlp_fc1"][0].startswith("text_encoder_2.")
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" not in index  # SD1 names do not hit SDXL
    ldm = [k for k in index if k.startswith("lora_unet_input_blocks_") and k.endswith("attn2_to_k")]
    diffusers_names = [k for k in index if k.startswith("lora_unet_down_blocks_") and k.endswith("attn2_to_k")]
    assert ldm and len(ldm) == len(diffusers_names)
    assert {index[k][0] for k in ldm} == {index[k][0] for k in diffusers_names}


def test_lora_cards_hide_other_families_and_toggle(runtime, data_dir: Path) -> None:
    from modules import ui_extra_networks as ui

    write(data_dir / "models" / "Lora", "sd1net", NETWORKS["lora"](), {"ss_base_model_version": "sd_v1"})
    write(data_dir / "models" / "Lora", "xlnet", NETWORKS["lora"](), {"ss_base_model_version": "sdxl_base_v1-0"})
    page = ui.LoraPage(runtime)
    page.refresh()
    assert [c.name for c in page.items()] == ["sd1net"]
    runtime.opts.set("lora_show_all", True)
    assert sorted(c.name for c in page.items()) == ["sd1net", "xlnet"]
    assert ui.toggle_in_prompt("a cat", "<lora:x:1>") == "a cat <lora:x:1>"
    assert ui.toggle_in_prompt("a cat <lora:x:0.4>", "<lora:x:1>") == "a cat"
    html_text = ui.render_cards("p", [ui.Card("<b>", Path("x"), description="<script>alert(1)</script>")])
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text and "<b>" not in html_text
