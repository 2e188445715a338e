"""The core never pulls in the UI or web frameworks; nothing heavy happens at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_after(module: str) -> set[str]:
    code = f"import sys; import {module}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_processing_does_not_import_gradio_or_fastapi() -> None:
    for module in ("modules.processing", "modules.sampling_run", "modules.txt2img", "modules.runtime",
                   "modules.initialize"):
        loaded = _imported_after(module)
        assert not {"gradio", "fastapi", "starlette", "uvicorn"} & loaded, module
    assert "torch" in _imported_after("modules.sampling_run")  # the check runs on the real module graph


def test_l0_modules_do_not_import_torch() -> None:
    for module in ("modules.options", "modules.infotext", "modules.prompt_parser", "modules.paths",
                   "modules.hashes", "modules.cmd_args", "modules.styles"):
        assert "torch" not in _imported_after(module), module


def test_every_core_module_is_under_the_no_ui_frameworks_contract() -> None:
    """A new module under modules/ is covered by the import-linter contract unless it is an adapter (ui*, api)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    listed = set(cfg["importlinter:contract:no-ui-frameworks-in-core"]["source_modules"].split())
    core = {f"modules.{p.stem if p.is_file() else p.name}" for p in (ROOT / "modules").iterdir()
            if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
            and p.stem != "__init__" and not p.stem.startswith("ui") and p.name != "api"}
    # These two are A1111's facades for extensions: they bind "Send to" buttons through modules.ui_common lazily.
    adapters = {"modules.infotext_utils", "modules.generation_parameters_copypaste"}
    assert sorted(core - listed - adapters) == []
