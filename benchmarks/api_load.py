"""Load test of /sdapi/v1 on the tiny model: N clients submit txt2img for M seconds while /progress is polled.

Starts its own server (webui.py --nowebui --api) on loopback with a tiny SD1 checkpoint and prints jobs
submitted, completed, lost, duplicated, FIFO violations and /progress latency while the queue is busy.

    venv/bin/python benchmarks/api_load.py --clients 8 --seconds 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Submission:
    client: int
    seed: int
    prompt: str
    sent: float
    done: float | None = None
    status: int | None = None
    error: str | None = None
    seeds_back: list[int] | None = None
    prompt_back: str | None = None


def start_server(data: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("COMMANDLINE_ARGS", None)
    log = open(data / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "webui.py"),
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--nowebui",
            "--api",
            "--no-half",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _log_tail(proc: subprocess.Popen) -> str:
    log = Path(proc.args[3]) / "server.log"  # args: python webui.py --data-dir <data> ...
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no server log)"


def wait_ready(session, base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_log_tail(proc)}")
        try:
            if session.get(f"{base}/options", timeout=2).json().get("sd_model_checkpoint"):
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server did not become ready in {timeout:.0f}s: {_log_tail(proc)}")


def client_loop(
    cid: int, base: str, deadline: float, args: argparse.Namespace, out: list[Submission], lock: threading.Lock
) -> None:
    import requests

    session = requests.Session()
    i = 0
    while time.monotonic() < deadline:
        seed = cid * 1_000_000 + i
        sub = Submission(cid, seed, f"client {cid} job {i}", time.monotonic())
        with lock:
            out.append(sub)
        body = {
            "prompt": sub.prompt,
            "seed": seed,
            "steps": args.steps,
            "width": args.size,
            "height": args.size,
            "sampler_name": "Euler",
        }
        try:
            r = session.post(f"{base}/txt2img", json=body, timeout=args.timeout)
            sub.status = r.status_code
            if r.status_code == 200:
                info = json.loads(r.json()["info"])
                sub.seeds_back, sub.prompt_back = info["all_seeds"], info["prompt"]
            else:
                sub.error = r.text[:200]
        except Exception as e:  # a timeout or a dropped connection is a lost job
            sub.error = f"{type(e).__name__}: {e}"
        sub.done = time.monotonic()
        i += 1


def progress_loop(base: str, stop: threading.Event, interval: float, latencies: list[float]) -> None:
    import requests

    session = requests.Session()
    while not stop.is_set():
        t = time.monotonic()
        try:
            r = session.get(f"{base}/progress", params={"skip_current_image": "false"}, timeout=10)
            busy = r.json().get("queue_size", 0) > 0 or r.json()["state"].get("job_count", 0) > 0
            if busy:
                latencies.append(time.monotonic() - t)
        except Exception:
            latencies.append(float("inf"))
        stop.wait(interval)


def fifo_violations(subs: list[Submission], margin: float) -> int:
    """Pairs where A was sent `margin` s before B but finished after it (one worker: finish order = start order)."""
    ok = sorted((s for s in subs if s.status == 200), key=lambda s: s.sent)
    count = 0
    for i, a in enumerate(ok):
        for b in ok[i + 1 :]:
            if b.sent - a.sent > margin and a.done > b.done + 0.05:
                count += 1
    return count


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--progress-interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--keep", action="store_true", help="keep the temporary data folder (server log, outputs)")
    p.add_argument("--fifo-margin", type=float, default=0.1, help="send-time gap below which order is not judged")
    args = p.parse_args(argv)

    import requests

    from tests.fixtures.tiny_models import write_tiny_checkpoint
    from tests.live_server import free_port

    data = Path(tempfile.mkdtemp(prefix="api-load-"))
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion", "tiny", seed=7)
    port = free_port()
    base = f"http://127.0.0.1:{port}/sdapi/v1"
    proc = start_server(data, port)
    try:
        wait_ready(requests.Session(), base, proc)
        subs: list[Submission] = []
        lock = threading.Lock()
        latencies: list[float] = []
        stop = threading.Event()
        poller = threading.Thread(target=progress_loop, args=(base, stop, args.progress_interval, latencies))
        poller.start()
        start = time.monotonic()
        deadline = start + args.seconds
        threads = [
            threading.Thread(target=client_loop, args=(c, base, deadline, args, subs, lock))
            for c in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        stop.set()
        poller.join()
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()

    completed = [s for s in subs if s.status == 200]
    lost = [s for s in subs if s.status != 200]
    returned = [seed for s in completed for seed in (s.seeds_back or [])]
    duplicated = len(returned) - len(set(returned))
    crosstalk = sum(1 for s in completed if s.seeds_back != [s.seed] or s.prompt_back != s.prompt)
    job_lat = [s.done - s.sent for s in completed]
    print(
        f"clients={args.clients} seconds={args.seconds:.0f} (ran {elapsed:.1f}s) steps={args.steps} "
        f"size={args.size} server_alive={alive}"
    )
    print(f"jobs submitted:        {len(subs)}")
    print(f"jobs completed:        {len(completed)} ({len(completed) / elapsed:.2f}/s)")
    print(f"jobs lost:             {len(lost)}")
    print(f"jobs duplicated:       {duplicated}")
    print(f"wrong result (xtalk):  {crosstalk}")
    print(f"FIFO violations:       {fifo_violations(subs, args.fifo_margin)}")
    print(f"job latency p50/p95:   {percentile(job_lat, 0.5):.3f}s / {percentile(job_lat, 0.95):.3f}s")
    finite = [x for x in latencies if x != float("inf")]
    print(
        f"/progress while busy:  n={len(latencies)} p50={percentile(finite, 0.5) * 1000:.1f}ms "
        f"p95={percentile(finite, 0.95) * 1000:.1f}ms max={max(finite, default=float('nan')) * 1000:.1f}ms "
        f"failed={len(latencies) - len(finite)}"
    )
    if lost:
        print("first errors:", *{s.error for s in lost[:5]}, sep="\n  ")
    ok = (
        not lost
        and duplicated == 0
        and crosstalk == 0
        and fifo_violations(subs, args.fifo_margin) == 0
        and finite
        and percentile(finite, 0.95) < 1.0
        and alive
    )
    print("RESULT:", "PASS" if ok else "FAIL")
    print(f"mean job latency {statistics.fmean(job_lat) if job_lat else 0:.3f}s")
    if args.keep:
        print(f"data folder kept: {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
