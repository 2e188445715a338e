"""POST /sdapi/v1/checkpoint-merger over real HTTP (TestClient): A1111's run_modelmerger names, refusals as 422."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open


def ckpts(api_runtime) -> list[str]:
    return sorted(p.name for p in api_runtime.paths.ckpt_dir.iterdir())


def test_merge_over_the_api_lists_the_new_checkpoint(client, api_runtime) -> None:
    body = {"primary_model_name": "tiny", "secondary_model_name": "tiny2", "interp_method": "Weighted sum",
            "multiplier": 0.5, "save_as_half": True, "custom_name": "api-merge", "checkpoint_format": "safetensors",
            "config_source": 0, "bake_in_vae": "None", "discard_weights": "", "save_metadata": True,
            "add_merge_recipe": True, "copy_metadata_fields": True, "metadata_json": '{"note": "from the API"}',
            "block_weights": "GRAD_V"}
    r = client.post("/sdapi/v1/checkpoint-merger", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    path = Path(data["filename"])
    assert path.name == "api-merge.safetensors" and data["info"].startswith(f"Checkpoint saved to {path}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} <= {"F16", "I64"}  # noqa: SIM118
    assert meta["note"] == "from the API"
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["multiplier"] == 0.5 and recipe["save_as_half"] is True and recipe["block_weights"].count(",") == 25
    models = client.get("/sdapi/v1/sd-models").json()
    listed = [m for m in models if m["model_name"] == "api-merge"]
    assert listed and listed[0]["title"] == data["title"] and listed[0]["sha256"] == data["sha256"]


@pytest.mark.parametrize(("body", "text"), [
    ({"primary_model_name": "tiny", "secondary_model_name": "tiny2", "interp_method": "Add difference"},
     "tertiary_model_name"),
    ({"primary_model_name": "tiny", "secondary_model_name": "tiny2", "custom_name": "../../evil"}, "custom_name"),
    ({"primary_model_name": "missing", "secondary_model_name": "tiny2"}, "primary_model_name"),
    ({"primary_model_name": "tiny", "secondary_model_name": "tiny2", "discard_weights": "[a-"}, "discard_weights"),
    ({"primary_model_name": "tiny", "secondary_model_name": "tiny2", "block_weights": "1,2"}, "block_weights"),
    ({"primary_model_name": "tiny", "interp_method": "Sideways"}, "interp_method"),
    ({"primary_model_name": "tiny", "no_such_field": 1}, "no_such_field"),
])
def test_bad_requests_are_422_and_write_nothing(client, api_runtime, body: dict, text: str) -> None:
    before = ckpts(api_runtime)
    r = client.post("/sdapi/v1/checkpoint-merger", json=body)
    assert r.status_code == 422, r.text
    assert text in r.json()["errors"] and "Traceback" not in r.text
    assert ckpts(api_runtime) == before
