"""The Train routes over real HTTP (TestClient): create, train with a task id, progress, interrupt, bad input."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from tests.training.conftest import write_toy_dataset


@pytest.fixture
def runtime(make_runtime, data_dir):
    from tests.fixtures.tiny_models import write_tiny_checkpoint

    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "tiny", seed=7)
    rt = make_runtime("--no-half", "--api", "--nowebui")
    rt.switch_checkpoint("tiny.safetensors")
    return rt


@pytest.fixture
def client(runtime):
    from fastapi.testclient import TestClient

    from webui import create_app

    with TestClient(create_app(runtime)) as c:
        yield c


def _train_body(dataset, **kw):
    body = {"embedding_name": "apiemb", "learn_rate": "0.01", "data_root": str(dataset), "training_width": 64,
            "training_height": 64, "steps": 2, "create_image_every": 0, "save_embedding_every": 0,
            "template_filename": "subject.txt", "seed": 4}
    body.update(kw)
    return body


def _idle(runtime) -> bool:
    return runtime.jobs.current is None and not runtime.jobs.pending()


def test_bad_input_is_refused_before_any_job(client, runtime, tmp_path):
    r = client.post("/sdapi/v1/create/embedding", json={"name": "apiemb", "num_vectors_per_token": 2})
    assert r.status_code == 200 and r.json()["info"].endswith("apiemb.pt")
    saved = (runtime.paths.embeddings_dir / "apiemb.pt").read_bytes()
    r = client.post("/sdapi/v1/create/embedding", json={"name": "apiemb"})
    assert r.status_code == 422 and "already exists" in r.json()["detail"]
    assert (runtime.paths.embeddings_dir / "apiemb.pt").read_bytes() == saved  # nothing saved is lost
    assert client.post("/sdapi/v1/create/embedding", json={"name": "../up"}).status_code == 422
    dataset = write_toy_dataset(tmp_path / "ok", count=1)
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png at all")
    cases = [(_train_body(dataset, learn_rate="0.005:abc"), "learn_rate"),
             (_train_body(tmp_path / "missing"), "does not exist"),
             (_train_body(tmp_path / "empty"), "holds no images"),
             (_train_body(broken), "a.png is not a readable image"),
             (_train_body(dataset, steps=0), "steps"),
             (_train_body(dataset, embedding_name="a/../b"), "embedding_name"),
             (_train_body(dataset, template_filename="../../etc/passwd"), "no prompt template")]
    for body, message in cases:
        r = client.post("/sdapi/v1/train/embedding", json=body)
        assert r.status_code == 422, (body, r.text)
        assert message in r.text, r.text
        assert _idle(runtime)
    assert (runtime.paths.embeddings_dir / "apiemb.pt").read_bytes() == saved
    r = client.post("/sdapi/v1/create/hypernetwork", json={"name": "apihn", "enable_sizes": [32]})
    assert r.status_code == 200 and (runtime.paths.hypernetwork_dir / "apihn.pt").is_file()
    hn = {"hypernetwork_name": "nothere", "data_root": str(dataset), "training_width": 64, "training_height": 64,
          "steps": 1, "template_filename": "hypernetwork.txt"}
    r = client.post("/sdapi/v1/train/hypernetwork", json=hn)
    assert r.status_code == 422 and "no hypernetwork named 'nothere'" in r.json()["detail"]
    lora = {"lora_name": "apilora", "data_root": str(dataset), "resolution": 64, "min_bucket_reso": 64,
            "steps": 1, "unet_lr": "1e-4:x", "create_image_every": 0, "save_every": 0}
    assert "unet_lr" in client.post("/sdapi/v1/train/lora", json=lora).json()["detail"]
    assert _idle(runtime)
    r = client.post("/sdapi/v1/train/lora", json={**lora, "unet_lr": "1e-4"})
    assert r.status_code == 200 and r.json()["step"] == 1
    assert [x["alias"] for x in client.get("/sdapi/v1/loras").json()] == ["apilora"]
    r = client.post("/sdapi/v1/train/lora", json={**lora, "unet_lr": "1e-4"})
    assert r.status_code == 422 and "already exists" in r.json()["detail"]  # no silent overwrite


def test_train_reports_progress_and_interrupt_saves(client, runtime, tmp_path):
    dataset = write_toy_dataset(tmp_path / "ds", count=1)
    client.post("/sdapi/v1/create/embedding", json={"name": "apiemb"})
    out: dict = {}
    body = _train_body(dataset, steps=10_000, force_task_id="task(train-1)")
    thread = threading.Thread(target=lambda: out.setdefault("r", client.post("/sdapi/v1/train/embedding", json=body)))
    thread.start()
    seen = None
    while thread.is_alive() and seen is None:
        p = client.get("/sdapi/v1/progress", params={"id_task": "task(train-1)"})
        if p.status_code == 200 and "loss" in (p.json().get("textinfo") or ""):
            seen = p.json()
        time.sleep(0.05)
    assert seen is not None and seen["id_task"] == "task(train-1)" and 0 < seen["progress"] < 1
    # Generation waits for the run: a job queued now only starts after the training job has finished.
    training_job = runtime.jobs.get("task(train-1)")
    probe = runtime.jobs.submit("probe", lambda state: training_job.done.is_set())
    assert runtime.jobs.position(probe) >= 1
    assert client.post("/sdapi/v1/interrupt", params={"id_task": "task(train-1)"}).status_code == 200
    thread.join()
    assert runtime.jobs.wait(probe) is True
    r = out["r"].json()
    assert out["r"].status_code == 200 and r["interrupted"] and r["id_task"] == "task(train-1)"
    assert 1 <= r["step"] < 10_000 and "train embedding complete" in r["info"]
    data = torch.load(runtime.paths.embeddings_dir / "apiemb.pt", weights_only=True)
    assert data["step"] == r["step"]  # the last state was saved
    listed = client.get("/sdapi/v1/embeddings").json()["loaded"]
    assert listed["apiemb"]["step"] == r["step"]
    assert _idle(runtime)
