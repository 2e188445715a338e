"""Command-line flags: A1111 names, COMMANDLINE_ARGS, derived values, clear errors for unknown flags."""

from __future__ import annotations

import pytest

from modules.cmd_args import ArgumentError, parse_args


def test_a1111_flags_parse() -> None:
    o = parse_args(["--listen", "--port", "9000", "--ckpt", "x.safetensors", "--no-half", "--no-half-vae",
                    "--precision", "full", "--use-cpu", "all", "--api", "--gradio-auth", "u:p",
                    "--freeze-settings", "--skip-install", "--no-download-sd-model", "--device-id", "1",
                    "--ui-settings-file", "c.json", "--lora-dir", "L", "--embeddings-dir", "E", "--vae-dir", "V",
                    "--ckpt-dir", "C", "--models-dir", "M", "--data-dir", "D", "--autolaunch",
                    "--server-name", "h", "--nowebui"], environ={})
    assert o.listen and o.port == 9000 and o.ckpt == "x.safetensors" and o.no_half and o.no_half_vae
    assert o.use_cpu == ["all"] and o.api and o.gradio_auth == "u:p" and o.freeze_settings and o.nowebui
    assert o.webui_is_non_local and o.disable_extension_access


def test_default_port_and_local() -> None:
    o = parse_args([], environ={})
    assert o.port == 7860 and not o.webui_is_non_local and not o.disable_extension_access
    assert parse_args(["--nowebui"], environ={}).port == 7861


def test_commandline_args_env_appended() -> None:
    o = parse_args(["--api"], environ={"COMMANDLINE_ARGS": "--port 1234 --listen"})
    assert o.api and o.port == 1234 and o.listen


def test_unknown_flag_is_a_clear_error() -> None:
    with pytest.raises(ArgumentError) as e:
        parse_args(["--no-such-flag"], environ={})
    assert "--no-such-flag" in str(e.value) and "--help" in str(e.value)


def test_unknown_flag_tolerated_with_env() -> None:
    o = parse_args(["--no-such-flag", "--api"], environ={"IGNORE_CMD_ARGS_ERRORS": "1"})
    assert o.api


def test_insecure_extension_access_flag() -> None:
    o = parse_args(["--listen", "--enable-insecure-extension-access"], environ={})
    assert o.webui_is_non_local and not o.disable_extension_access


def test_disable_safe_unpickle_refused() -> None:
    with pytest.raises(ArgumentError, match="refused"):
        parse_args(["--disable-safe-unpickle"], environ={})
