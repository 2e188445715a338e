"""Apply and restart: the real server started by launch.py / webui.sh stops on request and comes back with the new set."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules import restart, ui_extensions
from tests.live_server import ROOT, free_port

PROBE = "import os\nopen({path!r}, 'a').write(str(os.getpid()) + '\\n')\n"


def _post_restart(url: str) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/internal/restart", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server not up in {timeout}s:\n{log.read_text()}")


def wait_down(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            time.sleep(0.2)
        except OSError:
            return
    raise AssertionError("the server did not stop after the restart request")


@contextlib.contextmanager
def launched(tmp_path: Path, starter: str = "launch.py") -> Iterator[tuple[str, subprocess.Popen, Path, Path, Path]]:
    """The real server through launch.py or webui.sh, with a disabled 'probe' extension that logs each load."""
    data = tmp_path / "data"
    probe_log = tmp_path / "probe.txt"
    ext = data / "extensions" / "probe" / "scripts"
    ext.mkdir(parents=True)
    (ext / "probe.py").write_text(PROBE.format(path=str(probe_log)))
    (data / "config.json").write_text(json.dumps({"disabled_extensions": ["probe"]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flags = ["--skip-prepare-environment", "--data-dir", str(data), "--port", str(port), "--no-half"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for key in ("COMMANDLINE_ARGS", "SD_WEBUI_RESTART", "SD_WEBUI_RESTART_EXEC"):
        env.pop(key, None)
    if starter == "webui.sh":
        env.update(venv_dir=str(Path(sys.executable).parent.parent), WEBUI_ALLOW_ROOT="1",
                   SD_WEBUI_RESTART=str(tmp_path / "restart-marker"))
        cmd = ["bash", str(ROOT / "webui.sh"), *flags]
    else:
        cmd = [sys.executable, str(ROOT / "launch.py"), *flags]
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_up(url, proc, log)
            yield url, proc, log, probe_log, data
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)  # the session holds only this test's server (and webui.sh's shell)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)


@pytest.mark.parametrize("starter", ["launch.py", "webui.sh"])
def test_restart_comes_back_with_the_new_extension_set(tmp_path: Path, starter: str) -> None:
    with launched(tmp_path, starter) as (url, proc, log, probe_log, data):
        assert not probe_log.exists()  # disabled: its script was not loaded
        (data / "config.json").write_text(json.dumps({"disabled_extensions": []}))  # what Apply saves
        status, body = _post_restart(url)
        assert status == 200 and body == {"restarting": True}, body
        wait_down(url)
        wait_up(url, proc, log)
        assert probe_log.exists(), log.read_text()  # the restarted server loaded the newly enabled extension
        assert proc.poll() is None
        assert "Restarting the web UI" in log.read_text()


def test_apply_and_restart_refuses_while_a_job_runs(make_runtime, monkeypatch, tmp_path: Path) -> None:
    rt = make_runtime()
    marker = tmp_path / "restart"
    monkeypatch.setenv("SD_WEBUI_RESTART", str(marker))
    stops = []
    restart.set_stopper(lambda: stops.append(1))
    try:
        release = threading.Event()
        job = rt.jobs.submit("busy", lambda state: release.wait(10))
        msg = ui_extensions.apply_and_restart(rt, [], "none")
        assert "Not restarted" in msg and "running" in msg and stops == [] and not marker.exists()
        assert rt.opts.get("disable_all_extensions") == "none"  # the set was still saved
        release.set()
        rt.jobs.wait(job, 10)
        msg = ui_extensions.apply_and_restart(rt, [], "none")
        assert "Restarting" in msg and stops == [1] and marker.exists() and restart.restart_requested()
        monkeypatch.delenv("SD_WEBUI_RESTART")
        with pytest.raises(restart.RestartError, match="restart it yourself"):
            restart.request_restart(rt.jobs)
    finally:
        restart.set_stopper(None)
