"""The API on the shared FIFO queue: order kept across threads, per-job interrupt, failures isolated, progress."""

from __future__ import annotations

import json
import threading
import time

from tests.api.conftest import SMALL

API = "/sdapi/v1"


def block_queue(runtime) -> tuple[threading.Event, object]:
    """A 'UI job' that holds the worker until released, so API jobs pile up behind it."""
    release = threading.Event()
    started = threading.Event()

    def hold(state):
        started.set()
        release.wait(30)

    job = runtime.jobs.submit("ui-click", hold)
    assert started.wait(10)
    return release, job


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def post_in_thread(client, body: dict, results: dict, key: str) -> threading.Thread:
    def go() -> None:
        results[key] = client.post(f"{API}/txt2img", json=body)

    t = threading.Thread(target=go)
    t.start()
    return t


def test_fifo_across_threads_and_queue_position(client, api_runtime) -> None:
    release, blocker = block_queue(api_runtime)
    results: dict = {}
    threads = []
    ids = [f"task(fifo-{i})" for i in range(5)]
    try:
        for i, task_id in enumerate(ids):
            threads.append(post_in_thread(client, {**SMALL, "seed": i, "force_task_id": task_id}, results, task_id))
            wait_until(lambda task_id=task_id: api_runtime.jobs.get(task_id) is not None)
        progress = client.get(f"{API}/progress", params={"id_task": ids[2]}).json()
        assert progress["queue_position"] == 3 and progress["textinfo"] == "In queue: 3/5"
        assert progress["progress"] == 0 and progress["queue_size"] == 5
        current = client.get(f"{API}/progress").json()
        assert current["id_task"] == blocker.id and current["state"]["job"] == "ui-click"
    finally:
        release.set()
    for t in threads:
        t.join(60)
    jobs = [api_runtime.jobs.get(task_id) for task_id in ids]
    assert all(r.status_code == 200 for r in results.values())
    starts = [j.started for j in jobs]
    assert starts == sorted(starts) and blocker.finished <= starts[0]
    for i, task_id in enumerate(ids):
        assert json.loads(results[task_id].json()["info"])["seed"] == i  # no cross-talk between requests


def test_force_task_id_in_use_is_refused(client, api_runtime) -> None:
    release, blocker = block_queue(api_runtime)
    try:
        r = client.post(f"{API}/txt2img", json={**SMALL, "force_task_id": blocker.id})
        assert r.status_code == 422 and "force_task_id" in r.json()["errors"]
    finally:
        release.set()


def test_interrupting_one_job_leaves_the_next_running(client, api_runtime) -> None:
    results: dict = {}
    release, _ = block_queue(api_runtime)
    long = post_in_thread(client, {**SMALL, "steps": 150, "n_iter": 3, "force_task_id": "task(long)"}, results, "a")
    wait_until(lambda: api_runtime.jobs.get("task(long)") is not None)
    other = post_in_thread(client, {**SMALL, "steps": 3, "seed": 4, "force_task_id": "task(other)"}, results, "b")
    wait_until(lambda: api_runtime.jobs.get("task(other)") is not None)
    release.set()
    job = api_runtime.jobs.get("task(long)")
    wait_until(lambda: job.state.sampling_step >= 2)
    running = client.get(f"{API}/progress", params={"id_task": "task(long)"}).json()
    assert 0 < running["progress"] < 1 and running["state"]["sampling_steps"] == 150
    assert running["state"]["job_count"] == 3 and running["eta_relative"] > 0
    r = client.post(f"{API}/interrupt", params={"id_task": "task(long)"})
    assert r.json() == {"id_task": "task(long)"}
    long.join(60)
    other.join(60)
    assert results["a"].status_code == 200  # an interrupted job returns what it has, as A1111
    assert len(json.loads(results["a"].json()["info"])["all_seeds"]) == 3
    assert job.state.interrupted and job.finished - job.started < 30
    b = results["b"].json()
    assert results["b"].status_code == 200 and len(b["images"]) == 1
    assert not api_runtime.jobs.get("task(other)").state.interrupted


def test_skip_is_per_job(client, api_runtime) -> None:
    results: dict = {}
    release, _ = block_queue(api_runtime)
    t = post_in_thread(client, {**SMALL, "steps": 150, "n_iter": 2, "force_task_id": "task(skipme)"}, results, "a")
    wait_until(lambda: api_runtime.jobs.get("task(skipme)") is not None)
    release.set()
    job = api_runtime.jobs.get("task(skipme)")
    wait_until(lambda: job.state.sampling_step >= 2)
    client.post(f"{API}/skip", params={"id_task": "task(skipme)"})
    t.join(60)
    out = results["a"].json()
    assert results["a"].status_code == 200 and len(out["images"]) == 1  # first image skipped, second made


def test_interrupting_a_queued_job_cancels_it(client, api_runtime) -> None:
    results: dict = {}
    release, _ = block_queue(api_runtime)
    t = post_in_thread(client, {**SMALL, "force_task_id": "task(cancel-me)"}, results, "a")
    wait_until(lambda: api_runtime.jobs.get("task(cancel-me)") is not None)
    client.post(f"{API}/interrupt", params={"id_task": "task(cancel-me)"})
    release.set()
    t.join(60)
    assert results["a"].status_code == 400 and "interrupted" in results["a"].json()["errors"]


def test_progress_of_a_finished_job(client, api_runtime) -> None:
    r = client.post(f"{API}/txt2img", json={**SMALL, "force_task_id": "task(done)"})
    assert r.status_code == 200
    out = client.get(f"{API}/progress", params={"id_task": "task(done)"}).json()
    assert out["progress"] == 1 and out["textinfo"] == "Done" and out["state"]["job_count"] == 1


def test_live_preview_in_progress(client, api_runtime) -> None:
    api_runtime.opts.set("show_progress_every_n_steps", 1)
    results: dict = {}
    release, _ = block_queue(api_runtime)
    try:
        t = post_in_thread(client, {**SMALL, "steps": 150, "force_task_id": "task(preview)"}, results, "a")
        wait_until(lambda: api_runtime.jobs.get("task(preview)") is not None)
        release.set()
        job = api_runtime.jobs.get("task(preview)")
        wait_until(lambda: job.state.current_image is not None)
        with_image = client.get(f"{API}/progress").json()
        without = client.get(f"{API}/progress", params={"skip_current_image": True}).json()
        client.post(f"{API}/interrupt")
        t.join(60)
    finally:
        api_runtime.opts.set("show_progress_every_n_steps", 10)
    import base64
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(with_image["current_image"]))).format == "PNG"
    assert without["current_image"] is None
