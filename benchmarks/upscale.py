"""Tiled upscaling against spandrel's untiled call: a full-size RealESRGAN x4plus architecture (random weights).

Each measurement runs in its own process (so peak memory is that variant's own): "ours" is
`upscaler_models.upscale_with_model` with A1111's tile settings, "reference" is spandrel's descriptor called
once on the whole image, both on the same input in the same dtype. Prints time ratio (target <= 1.10) and
the peak memory growth of each run.

    venv/bin/python benchmarks/upscale.py               # 512x512, tile 192, overlap 8, 2 rounds
    venv/bin/python benchmarks/upscale.py --size 256 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakSampler:
    """Polls this process's RSS while a block runs; `growth` is the peak above the level at the start."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self.base = interval, 0, 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakSampler:
        self.base = self.peak = _rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def child(variant: str, size: int, tile: int, overlap: int, dtype_name: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    from modules.upscaler_models import pil_to_tensor, tensor_to_pil, upscale_with_model

    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)  # RealESRGAN_x4plus's shape
    descriptor = ModelLoader().load_from_state_dict(net.state_dict()).eval().to(dtype)
    del net
    rng = np.random.RandomState(0)
    image = Image.fromarray(rng.randint(0, 255, size=(size, size, 3)).astype(np.uint8), "RGB")
    with PeakSampler() as mem:
        start = time.perf_counter()
        if variant == "ours":
            out = upscale_with_model(descriptor, image, tile, overlap, console=False)
        else:
            with torch.inference_mode():
                out = tensor_to_pil(descriptor(pil_to_tensor(image).to(dtype)))
        seconds = time.perf_counter() - start
    assert out.size == (size * 4, size * 4)
    return {"variant": variant, "seconds": seconds, "peak_growth_mb": mem.growth / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--tile", type=int, default=192, help="ESRGAN_tile")
    ap.add_argument("--overlap", type=int, default=8, help="ESRGAN_tile_overlap")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs of each variant; the fastest counts")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--child", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, args.tile, args.overlap, args.dtype)))
        return
    runs: dict[str, list[dict]] = {"reference": [], "ours": []}
    for _ in range(args.rounds):
        for variant in ("reference", "ours"):
            cmd = [sys.executable, __file__, "--child", variant, "--size", str(args.size), "--tile", str(args.tile),
                   "--overlap", str(args.overlap), "--dtype", args.dtype]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[variant].append(result)
            print(f"  {variant:9s} {result['seconds']:8.2f} s   peak +{result['peak_growth_mb']:8.1f} MB", flush=True)
    best = {v: min(r["seconds"] for r in rs) for v, rs in runs.items()}
    peak = {v: max(r["peak_growth_mb"] for r in rs) for v, rs in runs.items()}
    print(f"{args.size}x{args.size} -> x4, RRDB 64nf/23nb, {args.dtype}, tile {args.tile} overlap {args.overlap}")
    print(f"time   ours/reference = {best['ours'] / best['reference']:.3f}  (target <= 1.10; "
          f"ours {best['ours']:.2f} s, reference {best['reference']:.2f} s)")
    print(f"memory ours/reference = {peak['ours'] / max(peak['reference'], 1e-9):.3f}  "
          f"(ours +{peak['ours']:.0f} MB, reference +{peak['reference']:.0f} MB)")


if __name__ == "__main__":
    main()
