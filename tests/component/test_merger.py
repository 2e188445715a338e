"""Checkpoint Merger on tiny checkpoints in the real single-file layout: every mode against its formula, tensor
by tensor; inpainting, SDXL, VAE baking, discard, metadata, refusals, interrupt; the result loads and generates."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from modules.errors import ValidationError, WebUIError
from modules.ldm_export import vae_to_ldm
from modules.merge_plan import SKIP_ON_MERGE
from modules.merger import MergeInterrupted, run_merge
from modules.params_merger import MergeParams
from modules.safe_load import load_state_dict
from modules.state import JobState
from tests.fixtures.tiny_models import build_tiny_components, write_tiny_checkpoint

UNET_KEY = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
TE_KEY = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
VAE_KEY = "first_stage_model.decoder.conv_in.weight"
IN_CONV = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.fixture(scope="module")
def merge_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("merge-data")
    ckpts = d / "models" / "Stable-diffusion"
    for variant, name, seed in [("sd1", "a", 1), ("sd1", "b", 2), ("sd1", "c", 3), ("sd1-inpainting", "inp", 4),
                                ("sdxl-base", "xa", 5), ("sdxl-base", "xb", 6), ("sd2-512", "s2a", 7),
                                ("sd2-512", "s2b", 8)]:
        write_tiny_checkpoint(variant, ckpts, name, seed=seed)
    vae = build_tiny_components("sd1", seed=9)["vae"].state_dict()
    (d / "models" / "VAE").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae).items()}, str(d / "models" / "VAE" / "ldm.safetensors"))
    save_file({k: v.contiguous() for k, v in vae.items()}, str(d / "models" / "VAE" / "diffusers.safetensors"))
    # A checkpoint that is itself a merge, with metadata of its own.
    sd = load_state_dict(ckpts / "a.safetensors")
    meta = {"format": "pt", "ss_title": "tiny merged", "sd_merge_recipe": json.dumps({"type": "webui", "x": 1}),
            "sd_merge_models": json.dumps({"f" * 64: {"name": "old.safetensors", "legacy_hash": "00000000",
                                                      "sd_merge_recipe": None}})}
    save_file(sd, str(ckpts / "withmeta.safetensors"), metadata=meta)
    return d


@pytest.fixture(scope="module")
def rt(merge_data: Path):
    from modules.initialize import create_runtime

    runtime = create_runtime(["--data-dir", str(merge_data), "--no-half"], environ={})
    runtime.refresh_checkpoints()
    return runtime


def ckpt_dir(rt) -> Path:
    return rt.paths.ckpt_dir


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_state_dict(path)


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def merge(rt, **kw) -> object:
    kw.setdefault("overwrite", True)
    return run_merge(rt, MergeParams(**kw), JobState())


def folder_listing(rt) -> list[str]:
    return sorted(p.name for p in ckpt_dir(rt).iterdir())


def test_weighted_sum_is_the_formula_tensor_by_tensor(rt) -> None:
    result = merge(rt, primary_model_name="a", secondary_model_name="b", multiplier=0.3)
    path = Path(result.filename)
    assert path.name == "0.7(a) + 0.3(b).safetensors"  # A1111's default name
    a, b, out = tensors(ckpt_dir(rt) / "a.safetensors"), tensors(ckpt_dir(rt) / "b.safetensors"), tensors(path)
    assert list(out) == list(a) or set(out) == set(a)
    merged = 0
    for key, ta in a.items():
        if key in SKIP_ON_MERGE or not ta.is_floating_point():
            assert torch.equal(out[key], ta), key
            continue
        expected = (ta.float() * 0.7 + b[key].float() * 0.3).to(ta.dtype)
        torch.testing.assert_close(out[key], expected, rtol=1e-6, atol=1e-7, msg=key)
        merged += 1
    assert merged > 500
    assert not torch.equal(out[UNET_KEY], a[UNET_KEY])
    # Listed at once, with its hash.
    info = rt.registry.get(path.name)
    assert info is not None and info.sha256 and result.title == info.title and info.shorthash in result.title


def test_add_difference_is_a_plus_b_minus_c_times_m(rt) -> None:
    result = merge(rt, primary_model_name="a", secondary_model_name="b", tertiary_model_name="c",
                   interp_method="Add difference", multiplier=0.5)
    assert Path(result.filename).name == "a + 0.5(b - c).safetensors"
    a, b, c = (tensors(ckpt_dir(rt) / f"{n}.safetensors") for n in "abc")
    out = tensors(Path(result.filename))
    for key in (UNET_KEY, TE_KEY, VAE_KEY):
        expected = a[key].float() + (b[key].float() - c[key].float()) * 0.5
        torch.testing.assert_close(out[key], expected, rtol=1e-6, atol=1e-6)


def test_no_interpolation_save_as_half_converts_every_float(rt) -> None:
    result = merge(rt, primary_model_name="a", interp_method="No interpolation", save_as_half=True,
                   custom_name="a-half")
    a, out = tensors(ckpt_dir(rt) / "a.safetensors"), tensors(Path(result.filename))
    assert set(out) == set(a)
    for key, ta in a.items():
        want = ta.half() if ta.dtype == torch.float32 else ta
        assert out[key].dtype == want.dtype and torch.equal(out[key], want), key


def test_fp16_files_merge_like_the_float32_formula(rt) -> None:
    for name in ("a", "b"):
        merge(rt, primary_model_name=name, interp_method="No interpolation", save_as_half=True,
              custom_name=f"{name}16")
    result = merge(rt, primary_model_name="a16", secondary_model_name="b16", multiplier=0.3, custom_name="half-merge")
    a, b = tensors(ckpt_dir(rt) / "a16.safetensors"), tensors(ckpt_dir(rt) / "b16.safetensors")
    out = tensors(Path(result.filename))
    for key in (UNET_KEY, TE_KEY, VAE_KEY):
        assert out[key].dtype == torch.float16
        expected = (a[key].float() * 0.7 + b[key].float() * 0.3).half()
        torch.testing.assert_close(out[key], expected, rtol=1e-3, atol=1e-3)
        assert not torch.equal(out[key], a[key]) and not torch.equal(out[key], b[key])


def test_inpainting_a_with_normal_b_merges_the_shared_channels(rt) -> None:
    result = merge(rt, primary_model_name="inp", secondary_model_name="b", multiplier=0.25)
    path = Path(result.filename)
    assert path.name == "0.75(inp) + 0.25(b).inpainting.safetensors"
    a, b, out = tensors(ckpt_dir(rt) / "inp.safetensors"), tensors(ckpt_dir(rt) / "b.safetensors"), tensors(path)
    assert out[IN_CONV].shape[1] == 9
    torch.testing.assert_close(out[IN_CONV][:, :4], a[IN_CONV][:, :4] * 0.75 + b[IN_CONV] * 0.25)
    assert torch.equal(out[IN_CONV][:, 4:], a[IN_CONV][:, 4:])  # the mask and masked-image channels stay A's
    torch.testing.assert_close(out[UNET_KEY], a[UNET_KEY] * 0.75 + b[UNET_KEY] * 0.25)
    recipe = json.loads(metadata(path)["sd_merge_recipe"])
    assert recipe["is_inpainting"] is True and recipe["is_instruct_pix2pix"] is False


def test_instruct_pix2pix_a_keeps_its_extra_channels(rt) -> None:
    # An instruct-pix2pix checkpoint is SD1 with an 8-channel input convolution (latent + image latent).
    sd = load_state_dict(ckpt_dir(rt) / "c.safetensors")
    gen = torch.Generator().manual_seed(11)
    sd[IN_CONV] = torch.cat([sd[IN_CONV], torch.randn(sd[IN_CONV].shape, generator=gen) * 0.1], dim=1).contiguous()
    save_file(sd, str(ckpt_dir(rt) / "ip2p.safetensors"))
    rt.refresh_checkpoints()
    result = merge(rt, primary_model_name="ip2p", secondary_model_name="b", multiplier=0.5)
    path = Path(result.filename)
    assert path.name == "0.5(ip2p) + 0.5(b).instruct-pix2pix.safetensors"
    b, out = tensors(ckpt_dir(rt) / "b.safetensors"), tensors(path)
    torch.testing.assert_close(out[IN_CONV][:, :4], (sd[IN_CONV][:, :4] + b[IN_CONV]) * 0.5)
    assert torch.equal(out[IN_CONV][:, 4:], sd[IN_CONV][:, 4:])
    assert json.loads(metadata(path)["sd_merge_recipe"])["is_instruct_pix2pix"] is True
    with pytest.raises(ValidationError, match="A must be the instruct-pix2pix model"):
        merge(rt, primary_model_name="b", secondary_model_name="ip2p")


def test_normal_a_with_inpainting_b_is_refused_before_writing(rt) -> None:
    before = folder_listing(rt)
    with pytest.raises(ValidationError, match="A must be the inpainting model"):
        merge(rt, primary_model_name="b", secondary_model_name="inp")
    assert folder_listing(rt) == before


def test_sdxl_merges_both_text_encoders(rt) -> None:
    result = merge(rt, primary_model_name="xa", secondary_model_name="xb", multiplier=0.5)
    a, b = tensors(ckpt_dir(rt) / "xa.safetensors"), tensors(ckpt_dir(rt) / "xb.safetensors")
    out = tensors(Path(result.filename))
    assert set(out) == set(a)
    for prefix in ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.", "model.diffusion_model."):
        key = next(k for k in a if k.startswith(prefix) and k.endswith("weight") and a[k].ndim == 2)
        torch.testing.assert_close(out[key], (a[key] + b[key]) * 0.5, msg=key)


def test_sd2_merges_its_openclip_text_encoder(rt) -> None:
    result = merge(rt, primary_model_name="s2a", secondary_model_name="s2b", multiplier=0.2)
    a, b = tensors(ckpt_dir(rt) / "s2a.safetensors"), tensors(ckpt_dir(rt) / "s2b.safetensors")
    out = tensors(Path(result.filename))
    key = next(k for k in a if k.startswith("cond_stage_model.model.") and k.endswith("in_proj_weight"))
    torch.testing.assert_close(out[key], a[key] * 0.8 + b[key] * 0.2)
    with pytest.raises(ValidationError, match="SD2 .*SD1|SD1 .*SD2"):
        merge(rt, primary_model_name="a", secondary_model_name="s2b")


def test_sd1_with_sdxl_is_refused_naming_families_and_key(rt) -> None:
    before = folder_listing(rt)
    with pytest.raises(ValidationError) as e:
        merge(rt, primary_model_name="a", secondary_model_name="xb")
    msg = str(e.value)
    assert "SD1" in msg and "SDXL" in msg and "model.diffusion_model." in msg and " in A and " in msg, msg
    assert folder_listing(rt) == before


@pytest.mark.parametrize("vae", ["ldm.safetensors", "diffusers.safetensors"])
def test_bake_in_vae_replaces_first_stage_model(rt, vae: str) -> None:
    result = merge(rt, primary_model_name="a", secondary_model_name="b", bake_in_vae=vae, custom_name=f"baked-{vae}")
    out = tensors(Path(result.filename))
    ldm_vae = vae_to_ldm(build_tiny_components("sd1", seed=9)["vae"].state_dict())
    vae_keys = [k for k in out if k.startswith("first_stage_model.")]
    assert len(vae_keys) == len(ldm_vae)
    for key, value in ldm_vae.items():
        assert torch.equal(out["first_stage_model." + key], value), key
    assert json.loads(metadata(Path(result.filename))["sd_merge_recipe"])["bake_in_vae"] == vae


def test_discard_regex_is_applied_last(rt) -> None:
    result = merge(rt, primary_model_name="a", secondary_model_name="b", bake_in_vae="ldm.safetensors",
                   discard_weights=r"^first_stage_model\.|mlp\.fc1", custom_name="discarded")
    out = tensors(Path(result.filename))
    assert not any(k.startswith("first_stage_model.") or "mlp.fc1" in k for k in out)
    assert UNET_KEY in out
    before = folder_listing(rt)
    with pytest.raises(ValidationError, match="discard_weights: is not a valid regular expression"):
        merge(rt, primary_model_name="a", secondary_model_name="b", discard_weights="(unclosed")
    assert folder_listing(rt) == before


def test_metadata_copy_json_and_recipe(rt) -> None:
    result = merge(rt, primary_model_name="withmeta", secondary_model_name="b", custom_name="meta",
                   metadata_json=json.dumps({"modelspec.title": "Mine", "n": 3}))
    meta = metadata(Path(result.filename))
    assert meta["ss_title"] == "tiny merged" and meta["modelspec.title"] == "Mine" and meta["n"] == "3"
    assert meta["format"] == "pt"
    recipe = json.loads(meta["sd_merge_recipe"])
    a_info, b_info = rt.registry.get("withmeta.safetensors"), rt.registry.get("b.safetensors")
    assert recipe == {"type": "webui", "primary_model_hash": a_info.sha256, "secondary_model_hash": b_info.sha256,
                      "tertiary_model_hash": None, "interp_method": "Weighted sum", "multiplier": 0.3,
                      "save_as_half": False, "custom_name": "meta", "config_source": 0, "bake_in_vae": "None",
                      "discard_weights": "", "is_inpainting": False, "is_instruct_pix2pix": False}
    models = json.loads(meta["sd_merge_models"])
    assert models[a_info.sha256] == {"name": "withmeta.safetensors", "legacy_hash": a_info.hash,
                                     "sd_merge_recipe": {"type": "webui", "x": 1}}
    assert models[b_info.sha256]["name"] == "b.safetensors"
    assert models["f" * 64]["name"] == "old.safetensors"  # the nested merge history is carried on
    plain = merge(rt, primary_model_name="a", secondary_model_name="b", custom_name="nometa", save_metadata=False)
    assert metadata(Path(plain.filename)) == {}
    with pytest.raises(ValidationError, match="metadata_json"):
        merge(rt, primary_model_name="a", secondary_model_name="b", metadata_json="{not json")


def test_read_metadata_from_selected_checkpoints(rt) -> None:
    from modules.merger import read_metadata

    text = read_metadata(rt, ["withmeta", "b", None])
    data = json.loads(text)
    assert data["ss_title"] == "tiny merged" and data["format"] == "pt"
    assert data["sd_merge_recipe"] == {"type": "webui", "x": 1}  # JSON values shown parsed, as A1111 does


def test_block_weights_take_unet_from_b_and_the_rest_from_a(rt) -> None:
    weights = ",".join(["0"] + ["1"] * 25)  # BASE 0: text encoder and VAE from A; every UNet block from B
    result = merge(rt, primary_model_name="a", secondary_model_name="b", block_weights=weights, custom_name="blocks")
    a, b = tensors(ckpt_dir(rt) / "a.safetensors"), tensors(ckpt_dir(rt) / "b.safetensors")
    out = tensors(Path(result.filename))
    assert torch.equal(out[UNET_KEY], b[UNET_KEY]) and torch.equal(out[TE_KEY], a[TE_KEY])
    assert torch.equal(out["model.diffusion_model.time_embed.0.weight"], b["model.diffusion_model.time_embed.0.weight"])
    input_only = merge(rt, primary_model_name="a", secondary_model_name="b", block_weights="INPUT_ONLY",
                       custom_name="inputs")
    out = tensors(Path(input_only.filename))
    out_key = next(k for k in a if k.startswith("model.diffusion_model.output_blocks.0."))
    assert torch.equal(out[UNET_KEY], b[UNET_KEY]) and torch.equal(out[out_key], a[out_key])
    with pytest.raises(ValidationError, match="takes 26 values"):
        merge(rt, primary_model_name="a", secondary_model_name="b", block_weights="1,2,3")


def test_copy_config_from_b_or_not_at_all(rt) -> None:
    shutil.copy(ckpt_dir(rt) / "c.safetensors", ckpt_dir(rt) / "cy.safetensors")
    (ckpt_dir(rt) / "cy.yaml").write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n")
    rt.refresh_checkpoints()
    result = merge(rt, primary_model_name="a", secondary_model_name="cy", config_source=1, custom_name="cfg")
    assert (ckpt_dir(rt) / "cfg.yaml").read_text() == (ckpt_dir(rt) / "cy.yaml").read_text()
    assert "config copied" in result.message
    merge(rt, primary_model_name="a", secondary_model_name="cy", config_source="Don't", custom_name="nocfg")
    assert not (ckpt_dir(rt) / "nocfg.yaml").exists() and not (ckpt_dir(rt) / "nocfg").exists()


def test_ckpt_format_holds_the_same_tensors(rt) -> None:
    st = merge(rt, primary_model_name="a", secondary_model_name="b", custom_name="fmt")
    ck = merge(rt, primary_model_name="a", secondary_model_name="b", custom_name="fmt", checkpoint_format="ckpt")
    assert Path(ck.filename).suffix == ".ckpt"
    x, y = tensors(Path(st.filename)), tensors(Path(ck.filename))
    assert set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in x)
    assert not [p for p in ckpt_dir(rt).iterdir() if p.name.endswith(".tmp")]


def test_interrupt_leaves_no_file(rt) -> None:
    before = folder_listing(rt)
    state = JobState()
    state.interrupt()
    with pytest.raises(MergeInterrupted):
        run_merge(rt, MergeParams(primary_model_name="a", secondary_model_name="b", custom_name="stopped"), state)
    assert folder_listing(rt) == before


@pytest.mark.parametrize(("kw", "field"), [
    ({"secondary_model_name": "nope"}, "secondary_model_name: checkpoint 'nope' not found"),
    ({"interp_method": "Add difference"}, "tertiary_model_name: the tertiary model (C) is required"),
    ({"custom_name": "../escape"}, "custom_name"),
    ({"custom_name": "sub/dir"}, "custom_name"),
    ({"custom_name": "/abs/path"}, "custom_name"),
])
def test_bad_requests_are_refused_before_writing(rt, kw: dict, field: str) -> None:
    before = folder_listing(rt)
    with pytest.raises(ValidationError) as e:
        merge(rt, **{"primary_model_name": "a", "secondary_model_name": "b", **kw})
    assert field in str(e.value)
    assert folder_listing(rt) == before


def test_existing_name_refused_unless_overwrite(rt) -> None:
    first = merge(rt, primary_model_name="a", secondary_model_name="b", custom_name="taken")
    stamp = Path(first.filename).stat().st_mtime_ns
    with pytest.raises(ValidationError, match="already exists"):
        merge(rt, primary_model_name="a", secondary_model_name="c", custom_name="taken", overwrite=False)
    assert Path(first.filename).stat().st_mtime_ns == stamp
    second = merge(rt, primary_model_name="a", secondary_model_name="c", custom_name="taken", overwrite=True)
    assert second.sha256 != first.sha256


def test_truncated_input_is_refused(rt) -> None:
    bad = ckpt_dir(rt) / "broken.safetensors"
    data = (ckpt_dir(rt) / "b.safetensors").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    try:
        rt.refresh_checkpoints()
        before = folder_listing(rt)
        with pytest.raises(ValidationError, match="truncated"):
            merge(rt, primary_model_name="a", secondary_model_name="broken")
        assert folder_listing(rt) == before
    finally:
        bad.unlink()
        rt.refresh_checkpoints()


def test_full_disk_is_refused(rt, tmp_path: Path, make_runtime) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        for name in ("a", "b"):
            shutil.copy(ckpt_dir(rt) / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
        runtime = make_runtime("--no-half", "--ckpt-dir", str(small))
        for name in ("a", "b"):
            shutil.copy(tmp_path / f"{name}.safetensors", runtime.paths.ckpt_dir / f"{name}.safetensors")
        runtime.refresh_checkpoints()
        with pytest.raises(ValidationError, match="not enough free disk space"):
            run_merge(runtime, MergeParams(primary_model_name="a", secondary_model_name="b"), JobState())
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_merged_checkpoint_loads_and_generates(rt) -> None:
    from modules import job_runner
    from modules.params import Txt2ImgParams

    result = merge(rt, primary_model_name="a", secondary_model_name="b", custom_name="runs")
    assert (ckpt_dir(rt) / "runs").is_dir()  # A's config folder copied beside it ("Copy config from" A, B or C)
    rt.switch_checkpoint(result.title)
    assert rt.current_title() == result.title
    params = Txt2ImgParams(prompt="a cat", width=64, height=64, steps=2, sampler_name="Euler")
    processed = job_runner.run_now(rt, job_runner.JobRequest(params))
    assert len(processed.images) == 1 and processed.images[0].size == (64, 64)


def test_run_on_the_queue_reports_progress_over_tensors(rt) -> None:
    params = MergeParams(primary_model_name="a", secondary_model_name="b", custom_name="queued", overwrite=True)
    job = rt.jobs.submit("merge", lambda state: run_merge(rt, params, state))
    result = rt.jobs.wait(job, timeout=120)
    assert Path(result.filename).is_file()
    n = len(tensors(Path(result.filename)))
    assert job.state.sampling_steps == n and job.state.sampling_step == n and job.state.textinfo == "Checkpoint saved"


def test_error_is_a_webui_error(rt) -> None:
    with pytest.raises(WebUIError):
        merge(rt, primary_model_name="")
