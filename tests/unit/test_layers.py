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
