"""Settings store: A1111 keys, validation, atomic save, corrupt-file recovery, per-job overlay."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from modules.errors import SettingsError
from modules.options import Options
from modules.shared_options import RESTRICTED_OPTS, build_options_table


def make(**kw) -> Options:
    return Options(build_options_table(), **kw)


def test_a1111_keys_and_defaults() -> None:
    o = make()
    assert o.samples_format == "png" and o.CLIP_stop_at_last_layers == 1 and o.eta_noise_seed_delta == 0
    assert o.outdir_txt2img_samples == "outputs/txt2img-images" and o.quicksettings_list == ["sd_model_checkpoint"]
    assert o.randn_source == "GPU" and o.sd_vae == "Automatic" and o.emphasis == "Original"


def test_save_is_atomic_json_and_reloads(tmp_path: Path) -> None:
    o = make()
    o.set("samples_format", "jpg")
    o.set("CLIP_stop_at_last_layers", 2)
    path = tmp_path / "config.json"
    o.save(path)
    assert json.loads(path.read_text())["samples_format"] == "jpg"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    o2 = make()
    o2.load(path)
    assert o2.samples_format == "jpg" and o2.CLIP_stop_at_last_layers == 2 and not o2.load_warnings


def test_unknown_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"some_extension_key": 5}))
    o = make()
    o.load(path)
    o.save(path)
    assert json.loads(path.read_text())["some_extension_key"] == 5


def test_corrupt_file_backed_up_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"samples_format": "jpg", broken')
    o = make()
    o.load(path)
    assert o.samples_format == "png"
    assert o.load_warnings and "could not be read" in o.load_warnings[0]
    backups = list(tmp_path.glob("config.json.corrupt-*.bak"))
    assert len(backups) == 1 and "broken" in backups[0].read_text()


def test_wrong_type_value_in_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"samples_save": "yes", "jpeg_quality": 90}))
    o = make()
    o.load(path)
    assert o.samples_save is True and o.jpeg_quality == 90
    assert any("samples_save" in w for w in o.load_warnings)


def test_validation_names_the_key() -> None:
    o = make()
    with pytest.raises(SettingsError, match="samples_save"):
        o.set("samples_save", "no")
    with pytest.raises(SettingsError, match="randn_source"):
        o.set("randn_source", "Quantum")


def test_frozen_and_restricted() -> None:
    o = make(frozen_all=True)
    with pytest.raises(SettingsError, match="frozen"):
        o.set("samples_format", "jpg")
    o = make(restricted_keys=RESTRICTED_OPTS)
    with pytest.raises(SettingsError):
        o.set("outdir_samples", "/etc")
    o = make()
    with pytest.raises(SettingsError, match="API"):
        o.set("outdir_txt2img_samples", "/tmp/x", is_api=True)


def test_override_is_per_context_and_restored() -> None:
    o = make()
    seen = {}

    def other_thread() -> None:
        seen["other"] = o.CLIP_stop_at_last_layers

    with o.override({"CLIP_stop_at_last_layers": 2}):
        assert o.CLIP_stop_at_last_layers == 2
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen["other"] == 1 and o.CLIP_stop_at_last_layers == 1


def test_onchange_failure_rolls_back() -> None:
    o = make()

    def boom() -> None:
        raise RuntimeError("no")

    o.data_labels["sd_vae"].onchange = boom
    with pytest.raises(RuntimeError):
        o.set("sd_vae", "x.safetensors")
    assert o.sd_vae == "Automatic"
