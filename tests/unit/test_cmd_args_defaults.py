"""A1111's defaults on cmd_opts: every folder flag has its default path, derived from --data-dir/--models-dir."""

from __future__ import annotations

import os
from pathlib import Path

from modules import cmd_args
from modules.paths import SCRIPT_PATH, build_paths


def test_folder_flags_default_under_data_and_models(tmp_path: Path) -> None:
    opts = cmd_args.parse_args(["--data-dir", str(tmp_path)], environ={})
    data, models = str(tmp_path.resolve()), str(tmp_path.resolve() / "models")
    assert opts.embeddings_dir == os.path.join(data, "embeddings")
    assert opts.ui_config_file == os.path.join(data, "ui-config.json")
    assert opts.ui_settings_file == os.path.join(data, "config.json")
    assert opts.hypernetwork_dir == os.path.join(models, "hypernetworks")
    assert opts.lora_dir == os.path.join(models, "Lora") and opts.lyco_dir_backcompat == os.path.join(models, "LyCORIS")
    expected = {"codeformer": "Codeformer", "gfpgan": "GFPGAN", "esrgan": "ESRGAN", "bsrgan": "BSRGAN",
                "realesrgan": "RealESRGAN", "dat": "DAT", "scunet": "ScuNET", "swinir": "SwinIR", "ldsr": "LDSR"}
    for flag, folder in expected.items():
        assert getattr(opts, f"{flag}_models_path") == os.path.join(models, folder)
    assert opts.localizations_dir == str(SCRIPT_PATH / "localizations")
    # A1111 leaves these unset: extra folders only when given
    assert (opts.ckpt_dir, opts.vae_dir, opts.clip_models_path, opts.models_dir) == (None, None, None, None)


def test_models_dir_and_explicit_flags_win(tmp_path: Path) -> None:
    opts = cmd_args.parse_args(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "m"),
                                "--embeddings-dir", str(tmp_path / "emb")], environ={})
    assert opts.lora_dir == str((tmp_path / "m" / "Lora").resolve()) and opts.embeddings_dir == str(tmp_path / "emb")


def test_typed_a1111_defaults_and_missing_flags(tmp_path: Path) -> None:
    opts = cmd_args.parse_args(["--data-dir", str(tmp_path)], environ={})
    assert (opts.sub_quad_q_chunk_size, opts.sub_quad_kv_chunk_size, opts.max_batch_count) == (1024, None, 16)
    assert (opts.ngrok_region, opts.ngrok_options, opts.disable_tls_verify, opts.styles_file) == ("", {}, True, [])
    assert opts.data_dir == str(tmp_path) and opts.port == 7860
    assert getattr(opts, "controlnet_dir", "default") == "default"  # unknown -> AttributeError, as A1111
    assert cmd_args.parser.get_default("precision") == "autocast"


def test_paths_resolve_the_same_with_defaults_filled(tmp_path: Path) -> None:
    """modules.paths builds the same folders whether the defaults are filled in or not."""
    raw, _ = cmd_args.build_parser().parse_known_args(["--data-dir", str(tmp_path)])
    filled = cmd_args.parse_args(["--data-dir", str(tmp_path)], environ={})
    assert build_paths(raw) == build_paths(filled)
