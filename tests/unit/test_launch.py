"""The launchers: webui.sh with an existing venv, flag errors, and launch.py's requirement check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import launch

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def _webui_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "venv_dir": str(VENV), "WEBUI_ALLOW_ROOT": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("COMMANDLINE_ARGS", None)
    return subprocess.run(["bash", str(ROOT / "webui.sh"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_webui_sh_help_lists_a1111_flags() -> None:
    r = _webui_sh("--help")
    assert r.returncode == 0, r.stderr
    for flag in ("--ckpt-dir", "--listen", "--no-half-vae", "--gradio-auth", "--ui-settings-file"):
        assert flag in r.stdout


def test_webui_sh_unknown_flag_is_a_clear_error() -> None:
    r = _webui_sh("--definitely-not-a-flag")
    assert r.returncode == 2
    assert "--definitely-not-a-flag" in r.stderr and "Traceback" not in r.stderr


def test_webui_sh_refuses_old_python(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "python_cmd": str(fake), "venv_dir": str(tmp_path / "v"), "WEBUI_ALLOW_ROOT": "1"}
    r = subprocess.run(["bash", str(ROOT / "webui.sh")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "3.10" in r.stderr
    assert not (tmp_path / "v").exists()


def test_missing_requirements_detects_pins(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("# comment\npytest==0.0.1\nnot-a-real-package-xyz==1.0\nlark==" + __import__("lark").__version__
                   + "\n")
    missing = launch.missing_requirements(req)
    assert "pytest==0.0.1" in missing and "not-a-real-package-xyz==1.0" in missing
    assert not any(m.startswith("lark") for m in missing)
    assert launch.missing_requirements(ROOT / "requirements.txt") == []
    assert launch.is_installed("torch") and not launch.is_installed("not-a-real-package-xyz")
