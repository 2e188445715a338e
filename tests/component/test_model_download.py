"""The explicit SD1.5 download: fails fast and plainly offline, lands atomically when it works."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

from modules.errors import WebUIError
from modules.model_download import DEFAULT_MODEL_FILE, DownloadError, download_default_model
from tests.live_server import free_port


def test_offline_fails_fast_with_plain_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/model.safetensors"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(DownloadError) as e:
        download_default_model(tmp_path, url=url, timeout=3)
    assert time.monotonic() - start < 5
    assert "put it into" in str(e.value) and str(tmp_path) in str(e.value)
    assert not list(tmp_path.iterdir())


def _serve(folder: Path) -> tuple[http.server.HTTPServer, str]:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def test_download_and_bad_content(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    save_file({"x": torch.zeros(3)}, str(src / "good.safetensors"))
    (src / "page.html").write_text("<html>not a model</html>")
    server, base = _serve(src)
    try:
        dest = tmp_path / "ckpt"
        seen = []
        path = download_default_model(dest, url=f"{base}/good.safetensors", progress=lambda d, t: seen.append(d))
        assert path == dest / DEFAULT_MODEL_FILE and path.read_bytes() == (src / "good.safetensors").read_bytes()
        assert seen
        other = tmp_path / "other"
        with pytest.raises(DownloadError, match="not a valid checkpoint|corrupt"):
            download_default_model(other, url=f"{base}/page.html")
        assert not list(other.iterdir())
    finally:
        server.shutdown()


def test_runtime_refuses_when_disabled(make_runtime) -> None:
    rt = make_runtime("--no-download-sd-model")
    with pytest.raises(WebUIError, match="disabled"):
        rt.download_default_model()
