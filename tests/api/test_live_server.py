"""The real server (webui.py under uvicorn on loopback) driven by raw HTTP and by the third-party webuiapi client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("live")
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion", "tiny", seed=7)
    with LiveServer(data, "--api", "--no-half", "--api-auth", "bot:pw") as url:
        yield url, data


def _wait_for_model(api) -> None:
    deadline = time.monotonic() + 60
    while not api.get_options().get("sd_model_checkpoint"):
        if time.monotonic() > deadline:
            raise AssertionError("the initial model did not load")
        time.sleep(0.2)


def test_raw_http_on_loopback(server) -> None:
    url, data = server
    req = urllib.request.Request(f"{url}/sdapi/v1/samplers")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401
    req.add_header("Authorization", "Basic Ym90OnB3")  # bot:pw
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and "x-process-time" in r.headers
        assert json.loads(r.read())[0]["name"] == "DPM++ 2M"
    bad = urllib.request.Request(
        f"{url}/sdapi/v1/png-info",
        data=b'{"image": "aGVs*bG8="}',
        method="POST",
        headers={"Authorization": "Basic Ym90OnB3", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=10)
    assert err.value.code == 422 and "base64" in json.loads(err.value.read())["errors"]


def test_webuiapi_client(server) -> None:
    import webuiapi

    url, data = server
    port = int(url.rsplit(":", 1)[1])
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port, sampler="Euler", steps=3, username="bot", password="pw")
    _wait_for_model(api)

    titles = api.util_get_model_names()
    assert len(titles) == 1 and titles[0].startswith("tiny.safetensors")
    assert api.util_get_current_model() == titles[0]
    assert "Euler a" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()

    result = api.txt2img(prompt="a red cube", negative_prompt="blurry", seed=123, width=64, height=64, cfg_scale=5)
    assert result.image.size == (64, 64)
    assert result.info["all_seeds"] == [123] and result.info["sampler_name"] == "Euler"
    assert result.parameters["prompt"] == "a red cube"
    assert not list((data / "outputs").rglob("*.png"))  # save_images=False by default

    info = api.png_info(result.image)
    assert info.json["info"] == result.info["infotexts"][0]
    assert info.json["parameters"]["Seed"] == "123" and info.json["parameters"]["Prompt"] == "a red cube"

    api.set_options({"CLIP_stop_at_last_layers": 2})
    assert api.get_options()["CLIP_stop_at_last_layers"] == 2
    again = api.txt2img(prompt="a red cube", seed=123, width=64, height=64)
    assert "Clip skip: 2" in again.info["infotexts"][0]
    refused = api.set_options({"outdir_samples": "/tmp/elsewhere"})  # webuiapi returns the JSON body
    assert refused["error"] == "ValidationError" and "outdir_samples" in refused["errors"]
    assert api.get_options()["outdir_samples"] == ""

    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
    api.util_wait_for_ready(check_interval=0.1)
    assert Path(data / "config.json").is_file()
