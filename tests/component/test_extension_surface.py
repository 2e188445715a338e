"""The A1111 extension surface: probe extensions (tests/fixtures/compat_extensions) loaded by the real loader."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import gradio as gr
import pytest

from modules import script_callbacks, ui_scripts
from tests.fixtures.tiny_models import write_tiny_checkpoint

PROBES = Path(__file__).resolve().parent.parent / "fixtures" / "compat_extensions"


def install_probes(data_dir: Path) -> None:
    for folder in sorted(PROBES.iterdir()):
        if folder.is_dir():
            shutil.copytree(folder, data_dir / "extensions" / folder.name)


def run_probes(make_runtime, data_dir: Path) -> tuple[object, dict]:
    """Load every probe extension, run the load/ui/model phases; returns the runtime and the results."""
    install_probes(data_dir)
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "tiny", seed=7)
    rt = make_runtime("--no-half")
    registry = sys.modules["scripts.probe_registry"]
    with gr.Blocks():
        ui_scripts.create_script_ui(rt.scripts_txt2img)
        registry.run_phase("ui")
    rt.switch_checkpoint("tiny.safetensors")
    registry.run_phase("model")
    return rt, registry.RESULTS


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    from modules.initialize import create_runtime

    data_dir = tmp_path_factory.mktemp("surface") / "data"
    data_dir.mkdir()

    def make(*flags: str):
        return create_runtime(["--data-dir", str(data_dir), *flags], environ={})

    rt, results = run_probes(make, data_dir)
    yield rt, results, data_dir
    script_callbacks.clear_callbacks()
    from modules import shared

    shared.unbind()


def test_every_probe_works_or_fails_by_design(probed) -> None:
    _rt, results, _ = probed
    failed = {k: v[1] for k, v in results.items() if v[0] == "FAILED"}
    assert not failed, "\n\n".join(f"{m}.{a}: {msg}" for (m, a), msg in failed.items())
    assert len(results) >= 80  # every check of every probe extension ran
    statuses = {v[0] for v in results.values()}
    assert "works" in statuses and "error by design" in statuses


def test_ldm_probes_name_the_extension(probed) -> None:
    _rt, results, _ = probed
    ldm = results[("ldm.*", "import ldm.modules.attention")]
    assert ldm[0] == "error by design" and "'probe-ldm'" in ldm[1] and "original LDM back end" in ldm[1]
    assert results[("modules.shared", "sd_model.cond_stage_model")][0] == "error by design"


def test_every_probe_extension_loaded_fully(probed) -> None:
    rt, _results, _ = probed
    probes = [e for e in rt.extensions if e.name.startswith("probe-")]
    assert len(probes) == len([p for p in PROBES.iterdir() if p.is_dir()])
    assert {e.name: e.load_status for e in probes if e.load_status != "fully"} == {}


def test_scripts_namespace_is_one_module_per_file(probed) -> None:
    """`scripts.probe_registry` imported by 35 other probes is the module the loader ran once."""
    rt, _results, _ = probed
    registry = sys.modules["scripts.probe_registry"]
    assert registry.__file__.endswith("probe-registry/scripts/probe_registry.py")
    loaded = [d.module for d in __import__("modules.scripts", fromlist=["x"]).scripts_data
              if d.path.endswith("probe_scripts.py")]
    assert loaded and loaded[0] is sys.modules["scripts.probe_scripts"]


def test_readme_table_matches_the_probes(probed) -> None:
    from tools.compat_table import render_table, replace_section

    _rt, results, _ = probed
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert replace_section(text, render_table(results)) == text, \
        "README's compatibility table is stale: run `venv/bin/python -m tools.compat_table --write`"
