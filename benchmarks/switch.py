"""Checkpoint switching on full-size SD1.5-architecture models (random weights): time per switch and RSS.

Three checkpoints (hard links of the cached file of benchmarks/load_checkpoint.py, so the page cache is shared
as it would be for files read before) are switched A, B, C, A, B, C... `--switches` times through the
ModelManager with `sd_checkpoints_limit` = `--limit` (default 2: one of the three is always evicted), then
among models all held in RAM (limit 3). Prints the time of every switch, RSS after each, and the RSS growth
between the first full cycle and the end (target: flat within 5%).
Usage: venv/bin/python benchmarks/switch.py [--switches 10] [--limit 2] [--dtype float16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    import diffusers  # noqa: F401 - import cost is start-up, not switching
    import torch
    import transformers  # noqa: F401

    from benchmarks.load_checkpoint import checkpoint_path, write_checkpoint
    from modules.devices import DevicePolicy
    from modules.model_manager import ModelManager
    from modules.model_registry import ModelRegistry

    ap = argparse.ArgumentParser()
    ap.add_argument("--switches", type=int, default=10)
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    args = ap.parse_args()
    source = checkpoint_path()
    if not source.exists():
        print(f"writing {source} (once)...")
        write_checkpoint(source)
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        names = []
        for letter in "abc":
            target = Path(tmp) / f"model-{letter}.safetensors"
            os.link(source, target)
            names.append(target.name)
        registry = ModelRegistry([Path(tmp)], None, no_hashing=True)
        registry.refresh()
        limit = {"value": args.limit}
        manager = ModelManager(registry, DevicePolicy(torch.device("cpu"), dtype, dtype),
                               cache_limit=lambda: limit["value"])
        print(f"start RSS {rss_mb():.0f} MB; sd_checkpoints_limit={args.limit}, dtype {args.dtype}")
        rows = []
        for i in range(args.switches):
            name = names[i % 3]
            t = time.perf_counter()
            manager.load(name)
            seconds = time.perf_counter() - t
            rows.append((i + 1, name, seconds, rss_mb(), len(manager.loaded_filenames())))
            print(f"switch {i + 1:2d} -> {name}: {seconds:6.2f}s  RSS {rows[-1][3]:7.0f} MB  "
                  f"({rows[-1][4]} in RAM)")
        steady = rows[min(2, len(rows) - 1)][3]
        growth = (rows[-1][3] - steady) / steady * 100
        print(f"RSS after the first cycle {steady:.0f} MB, at the end {rows[-1][3]:.0f} MB: {growth:+.1f}% "
              f"(target within 5%)")
        limit["value"] = 3
        for name in names:
            manager.load(name)
        cached = []
        for i in range(6):
            t = time.perf_counter()
            manager.load(names[i % 3])
            cached.append(time.perf_counter() - t)
        print(f"switch between cached models (limit 3): max {max(cached) * 1000:.1f} ms, "
              f"mean {sum(cached) / len(cached) * 1000:.1f} ms; RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
