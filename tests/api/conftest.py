"""Fixtures for the API tests: one data folder with two tiny SD1 checkpoints, a runtime and a TestClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint


@pytest.fixture(scope="module")
def api_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("api-data")
    ckpts = d / "models" / "Stable-diffusion"
    write_tiny_checkpoint("sd1", ckpts, "tiny", seed=7)
    write_tiny_checkpoint("sd1", ckpts, "tiny2", seed=8)
    return d


def build_runtime(data_dir: Path, *flags: str):
    from modules.initialize import create_runtime

    return create_runtime(["--data-dir", str(data_dir), "--no-half", *flags], environ={})


@pytest.fixture(scope="module")
def api_runtime(api_data_dir: Path):
    rt = build_runtime(api_data_dir, "--api", "--nowebui")
    rt.switch_checkpoint("tiny.safetensors")
    return rt


@pytest.fixture(scope="module")
def client(api_runtime):
    from fastapi.testclient import TestClient

    from webui import create_app

    with TestClient(create_app(api_runtime)) as c:
        yield c


def output_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "outputs").rglob("*") if p.is_file())


SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler"}
