"""Streaming merge of two full-size SD1.5-layout fp16 checkpoints vs the I/O floor, and its private memory.

Writes (once, cached in benchmarks/.cache) two SD1.5-architecture fp16 checkpoints with different random
weights in the original LDM layout, then, each in a fresh process (so memory figures are its own):
  floor   read every tensor of both files (safetensors get_tensor, as the merger reads; B's bytes copied into
          a reused buffer so its pages are really read) and write one file of the same size tensor by tensor,
          fsync'd: the same bytes in and out, no arithmetic
  ours    modules.merge_plan.plan_merge + modules.merger.execute, Weighted sum at M=0.3 (the engine: header
          checks, fp32 arithmetic per tensor, temp file, rename), recipe hashing off
  inmem   (--inmemory) what A1111 does: both state dicts loaded whole, merged, safetensors.save_file
Floor and ours alternate, one run per process; each reports seconds (best of N) and the peak of RssAnon above the process's baseline (anonymous = private
memory; pages of memory-mapped inputs are page cache and are not in it), sampled every millisecond.
Usage: venv/bin/python benchmarks/merge.py [--repeats N] [--inmemory]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.load_checkpoint import CACHE, checkpoint_path, write_checkpoint  # noqa: E402

OUT = CACHE / "merge-out"


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no RssAnon (Linux only)")


class AnonPeak:
    """Samples RssAnon every millisecond in a thread; `peak` is the highest value seen above the start."""

    def __init__(self) -> None:
        self.base = rss_anon_mb()
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_mb() - self.base)
            time.sleep(0.001)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb() - self.base)


def run_floor(a: str, b: str, repeats: int) -> dict:
    import torch  # noqa: F401 - import cost is not I/O cost
    from safetensors import safe_open

    best, peak = float("inf"), 0.0
    out = OUT / "floor.bin"
    sink = torch.empty(1 << 22, dtype=torch.uint8)
    torch.set_num_threads(1)  # as the merge runs
    for _ in range(repeats):
        with AnonPeak() as mem:
            t = time.perf_counter()
            with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb, open(out, "wb") as f:
                for key in fa.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    ta = fa.get_tensor(key)
                    raw_b = fb.get_tensor(key).reshape(-1).view(torch.uint8)
                    for s in range(0, raw_b.numel(), sink.numel()):  # read B (get_tensor only maps it)
                        piece = raw_b[s:s + sink.numel()]
                        sink[:piece.numel()].copy_(piece)
                    f.write(memoryview(ta.contiguous().reshape(-1).view(torch.uint8).numpy()))
                    del ta, raw_b
                f.flush()
                os.fsync(f.fileno())
            best = min(best, time.perf_counter() - t)
        peak = max(peak, mem.peak)
        out.unlink()
    return {"seconds": best, "peak_anon_mb": peak}


def run_ours(a: str, b: str, repeats: int) -> dict:
    import torch  # noqa: F401

    from modules.merge_plan import plan_merge
    from modules.merger import execute
    from modules.model_registry import ModelRegistry
    from modules.params_merger import MergeParams
    from modules.sd_vae import VaeDatabase
    from modules.state import JobState

    registry = ModelRegistry([Path(a).parent], None, no_hashing=True)
    registry.refresh()
    params = MergeParams(primary_model_name=Path(a).name, secondary_model_name=Path(b).name, multiplier=0.3,
                         custom_name="bench", add_merge_recipe=False, overwrite=True)
    best, peak, size = float("inf"), 0.0, 0
    for _ in range(repeats):
        with AnonPeak() as mem:
            t = time.perf_counter()
            plan = plan_merge(params, registry, VaeDatabase([]), OUT)
            path = execute(plan, JobState(), plan.base_metadata)
            best = min(best, time.perf_counter() - t)
        peak = max(peak, mem.peak)
        size = path.stat().st_size
        path.unlink()
    return {"seconds": best, "peak_anon_mb": peak, "bytes": size}


def run_inmemory(a: str, b: str, repeats: int) -> dict:
    from safetensors.torch import load_file, save_file

    best, peak = float("inf"), 0.0
    out = OUT / "inmem.safetensors"
    for _ in range(repeats):
        with AnonPeak() as mem:
            t = time.perf_counter()
            # A1111 reads whole state dicts into memory (its read_state_dict), then merges key by key.
            theta0 = {k: v.clone() for k, v in load_file(a).items()}
            theta1 = {k: v.clone() for k, v in load_file(b).items()}
            for k in theta0:
                if "model" in k and k in theta1 and theta0[k].is_floating_point():
                    theta0[k] = 0.7 * theta0[k] + 0.3 * theta1[k]
            del theta1
            save_file(theta0, str(out))
            del theta0
            best = min(best, time.perf_counter() - t)
        peak = max(peak, mem.peak)
        out.unlink()
    return {"seconds": best, "peak_anon_mb": peak}


def child(kind: str, a: Path, b: Path, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(a), str(b), str(repeats)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        kind, a, b, repeats = argv[1], argv[2], argv[3], int(argv[4])
        fn = {"floor": run_floor, "ours": run_ours, "inmem": run_inmemory}[kind]
        print(json.dumps(fn(a, b, repeats)))
        return
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 3
    a, b = checkpoint_path("merge-a-fp16"), checkpoint_path("merge-b-fp16")
    for path, seed in ((a, 1), (b, 2)):
        if not path.exists():
            print(f"writing {path} (once)...", flush=True)
            write_checkpoint(path, seed=seed)
    OUT.mkdir(parents=True, exist_ok=True)
    size_gb = a.stat().st_size / 1e9
    child("floor", a, b, 1)  # warm the page cache: every side then reads the inputs from memory
    # Interleaved, one run per process, best of N each: load from other processes drifts over minutes, and
    # alternating keeps both sides under the same conditions.
    runs: dict[str, list[dict]] = {"floor": [], "ours": []}
    for _ in range(repeats):
        for kind in ("floor", "ours"):
            runs[kind].append(child(kind, a, b, 1))
    floor = min(runs["floor"], key=lambda r: r["seconds"]) | {"peak_anon_mb": max(r["peak_anon_mb"] for r in
                                                                                     runs["floor"])}
    ours = min(runs["ours"], key=lambda r: r["seconds"]) | {"peak_anon_mb": max(r["peak_anon_mb"] for r in
                                                                                   runs["ours"])}
    print(f"inputs: 2 x {size_gb:.2f} GB fp16 SD1.5 layout; output {ours['bytes'] / 1e9:.2f} GB; best of {repeats}")
    print(f"floor  read both + write one: {floor['seconds']:.2f}s, peak private +{floor['peak_anon_mb']:.0f} MB")
    print(f"ours   streaming merge:       {ours['seconds']:.2f}s, peak private +{ours['peak_anon_mb']:.0f} MB")
    print(f"ratio ours/floor: {ours['seconds'] / floor['seconds']:.2f}x (target <= 1.5x); "
          f"peak private {ours['peak_anon_mb']:.0f} MB (target < 1024 MB)")
    if "--inmemory" in argv:
        inmem = child("inmem", a, b, 1)
        print(f"inmem  A1111-style in memory: {inmem['seconds']:.2f}s, peak private +{inmem['peak_anon_mb']:.0f} MB "
              f"({inmem['peak_anon_mb'] / max(ours['peak_anon_mb'], 1):.1f}x ours)")


if __name__ == "__main__":
    main(sys.argv[1:])
