"""How extensions load: status per extension (log, API, Extensions tab), import conventions, the LDM boundary."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modules import script_callbacks, ui_extensions

GOOD = ("from modules import scripts\n"
        "class {cls}(scripts.Script):\n"
        "    def title(self):\n        return '{title}'\n"
        "    def show(self, is_img2img):\n        return scripts.AlwaysVisible\n")


@pytest.fixture(autouse=True)
def _clean_callbacks():
    yield
    script_callbacks.clear_callbacks()


def write_ext(root: Path, name: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def mixed_runtime(make_runtime, data_dir: Path, caplog):
    ext = data_dir / "extensions"
    write_ext(ext, "all-good", {"scripts/a.py": GOOD.format(cls="A", title="A"), "scripts/b.py": ""})
    write_ext(ext, "half-ldm", {"scripts/ok.py": GOOD.format(cls="Ok", title="Half ok"),
                                "scripts/needs_ldm.py": "import ldm.modules.diffusionmodules.openaimodel\n"})
    write_ext(ext, "all-broken", {"scripts/x.py": "raise RuntimeError('boom\\nsecond line')\n"})
    write_ext(ext, "no-scripts", {"style.css": "body {}"})
    write_ext(ext, "bad-class", {"scripts/c.py": GOOD.format(cls="C", title="C").replace(
        "class C(scripts.Script):\n", "class C(scripts.Script):\n    def __init__(self):\n"
        "        raise ValueError('cannot build')\n")})
    with caplog.at_level(logging.INFO, logger="modules.script_loading"):
        rt = make_runtime()
    return rt, caplog


def test_status_per_extension_fully_partly_not_at_all(mixed_runtime) -> None:
    rt, caplog = mixed_runtime
    by = {e.name: e for e in rt.extensions}
    assert by["all-good"].load_status == "fully" and by["all-good"].scripts_loaded == ["a.py", "b.py"]
    assert by["no-scripts"].load_status == "fully"
    half = by["half-ldm"]
    assert half.load_status == "partly" and list(half.scripts_failed) == ["needs_ldm.py"]
    reason = half.scripts_failed["needs_ldm.py"]
    assert "'half-ldm'" in reason and "original LDM back end" in reason and "\n" not in reason
    assert "Half ok" in [s.title() for s in rt.scripts_txt2img.scripts]  # its other script still works
    assert by["all-broken"].load_status == "not at all"
    assert by["all-broken"].scripts_failed["x.py"] == "RuntimeError: boom"  # one line
    assert by["bad-class"].load_status == "not at all" and "cannot build" in by["bad-class"].scripts_failed["c.py"]
    lines = [r.getMessage() for r in caplog.get_records("setup") if r.name == "modules.script_loading"
             and r.getMessage().startswith("Extension ")]
    assert "Extension all-good: loaded fully (2 scripts)" in lines
    assert any(m.startswith("Extension half-ldm: loaded partly: needs_ldm.py: LDMInternalsImportError") for m in lines)
    assert any(m.startswith("Extension all-broken: not loaded at all: x.py: RuntimeError: boom") for m in lines)


def test_status_in_the_api_and_the_extensions_tab(mixed_runtime) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules.api import mount

    rt, _ = mixed_runtime
    app = FastAPI()
    mount(app, rt)
    items = {i["name"]: i for i in TestClient(app).get("/sdapi/v1/extensions").json()}
    assert items["half-ldm"]["load_status"] == "partly" and "needs_ldm.py" in items["half-ldm"]["scripts_failed"]
    assert items["all-broken"]["load_status"] == "not at all" and items["all-good"]["load_status"] == "fully"
    assert items["all-good"]["remote"] == "" and not any(i["is_builtin"] for i in items.values())
    table = ui_extensions.installed_table(rt)
    assert 'data-load-status="partly"' in table and "loaded partly: needs_ldm.py" in table
    ui_extensions.refresh(rt)  # a rescan (after an install) keeps what start-up found
    assert 'data-load-status="not at all"' in ui_extensions.installed_table(rt)


def test_scripts_namespace_prefers_the_callers_own_helper(make_runtime, data_dir: Path) -> None:
    ext = data_dir / "extensions"
    for name, value in (("ext-a", "A"), ("ext-b", "B")):
        write_ext(ext, name, {
            "scripts/helper.py": f"VALUE = {value!r}\n",
            f"scripts/main_{name[-1]}.py": "import scripts.helper\nfrom scripts import helper\n"
            "SEEN = (scripts.helper.VALUE, helper.VALUE)\n" + GOOD.format(cls=f"M{value}", title=f"M{value}"),
        })
    write_ext(ext, "ext-c", {"scripts/cross.py": "import importlib\n"
                             "m = importlib.import_module('extensions.ext-a.scripts.helper')\nVALUE = m.VALUE\n"})
    rt = make_runtime()
    from modules import scripts

    mods = {Path(d.path).name: d.module for d in scripts.scripts_data}
    assert mods["main_a.py"].SEEN == ("A", "A") and mods["main_b.py"].SEEN == ("B", "B")
    cross = [e for e in rt.extensions if e.name == "ext-c"][0]
    assert cross.load_status == "fully"
    import sys

    assert sys.modules["extensions.ext-a.scripts.helper"].VALUE == "A"
