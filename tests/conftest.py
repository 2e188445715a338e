"""Shared fixtures: offline environment, temporary data folders, runtimes built from real flags."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Offline, with an empty hub cache, so that a cached file can never hide a missing bundled config.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="empty-hf-home-")
os.environ.pop("COMMANDLINE_ARGS", None)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh --data-dir with the A1111 folder layout created by the runtime."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def make_runtime(data_dir: Path):
    """Build a Runtime from command-line flags, with --data-dir pointing at a temporary folder."""
    from modules.initialize import create_runtime

    def make(*flags: str):
        return create_runtime(["--data-dir", str(data_dir), *flags], environ={})

    return make


@pytest.fixture
def runtime(make_runtime, data_dir: Path):
    """A fp32 runtime with a tiny SD1 checkpoint (`tiny.safetensors`, seed 7) loaded."""
    from tests.fixtures.tiny_models import write_tiny_checkpoint

    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "tiny", seed=7)
    rt = make_runtime("--no-half")
    rt.switch_checkpoint("tiny.safetensors")
    return rt
