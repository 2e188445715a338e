"""The built-in prompt scripts over /sdapi/v1 with A1111's positional script_args, as API clients send them."""

from __future__ import annotations

import base64
import io

from PIL import Image

from tests.api.conftest import SMALL
from tests.api.test_routes import assert_clean_error

API = "/sdapi/v1"


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_scripts_route_lists_the_builtin_scripts(client) -> None:
    body = client.get(f"{API}/scripts").json()
    assert {"prompt matrix", "prompts from file or textbox"} <= set(body["txt2img"])
    assert {"prompt matrix", "prompts from file or textbox"} <= set(body["img2img"])


def test_prompt_matrix_over_the_api(client) -> None:
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "a cat|red", "seed": 4, "script_name": "prompt matrix",
                                             "script_args": [False, False, "positive", "comma", 0]})
    assert r.status_code == 200, r.text
    pictures = [decode(x) for x in r.json()["images"]]
    assert len(pictures) == 3 and pictures[0].width == 128 and pictures[0].height > 64  # labelled grid, 2 cells


def test_prompts_from_file_over_the_api_and_its_errors(client) -> None:
    r = client.post(f"{API}/txt2img", json={**SMALL, "script_name": "prompts from file or textbox",
                                             "script_args": [False, False, "start", "one\n--prompt two --steps 1"]})
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 2
    bad = client.post(f"{API}/txt2img", json={**SMALL, "script_name": "prompts from file or textbox",
                                               "script_args": [False, False, "start", "--prompt x --bogus 1"]})
    assert_clean_error(bad, 422, "line 1", "--bogus")
    r = client.get(f"{API}/progress")  # the server is still up
    assert r.status_code == 200
