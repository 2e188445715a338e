"""Time-to-ready of our checkpoint loader vs a raw safetensors read of the same file, and switch time.

Writes (once, cached in benchmarks/.cache) a full-size SD1.5-architecture fp16 checkpoint with random
weights in the original LDM single-file layout, then, each in a fresh process so peak RSS is its own:
  reference  safetensors.torch.load_file + every tensor materialised (contiguous copy), same file
  ours       modules.model_loader.load_model on CPU (fp16 and the CPU default bf16) until the pipeline is ready
and, in one process, a switch back to a model held in the cache (sd_checkpoints_limit=2).
Prints seconds, the ratio ours/reference, and peak RSS. Usage: venv/bin/python benchmarks/load_checkpoint.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def checkpoint_path(name: str = "sd15-random-fp16") -> Path:
    return CACHE / f"{name}.safetensors"


def write_checkpoint(path: Path, seed: int = 0) -> None:
    """Build full-size SD1.5 components from the bundled configs with random weights; save in LDM layout."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from modules.ldm_export import pipeline_to_ldm
    from modules.model_configs import config_dir

    cfg = config_dir("sd1")
    torch.manual_seed(seed)
    components = {
        "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet")),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae")),
        "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder")),
    }
    sd = {k: v.to(torch.float16).contiguous() for k, v in pipeline_to_ldm(components, "sd1").items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, path)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; getrusage's maxrss would include the parent's, inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


REPEATS = 3  # best of N: this machine's two cores are shared, so single timings are noisy


def touch(tensors) -> None:
    """Fault every page of memory-mapped tensors in (a read every 1024 elements), so 'ready' means in RAM."""
    for t in tensors:
        flat = t.detach().reshape(-1)
        if flat.numel():
            float(flat[::1024].float().sum())


def run_reference(path: str, dtype_name: str = "") -> dict:
    """Raw read with every tensor materialised; with a dtype, also converted to it (the same work our loader
    does when the model runs in another precision than the file stores, e.g. bf16 on CPU)."""
    import torch
    from safetensors.torch import load_file

    dtype = getattr(torch, dtype_name) if dtype_name else None
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        sd = load_file(path, device="cpu")
        # materialise: a lazy mmap is not a load
        sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v.contiguous().clone())
              for k, v in sd.items()}
        best = min(best, time.perf_counter() - t)
        total = sum(v.numel() for v in sd.values())
        del sd
    return {"seconds": best, "params": total, "peak_rss_mb": peak_rss_mb()}


def run_ours(path: str, dtype_name: str) -> dict:
    import diffusers  # noqa: F401 - imports are start-up cost, not model-load cost: done before the clock
    import torch
    import transformers  # noqa: F401

    from modules.model_loader import load_model

    dtype = getattr(torch, dtype_name)
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        model = load_model(path, device=torch.device("cpu"), dtype=dtype)
        modules = (model.pipe.unet, model.pipe.vae, model.pipe.text_encoder)
        touch(p for m in modules for p in m.parameters())  # same work as the reference: weights in RAM
        best = min(best, time.perf_counter() - t)
        total = sum(p.numel() for m in modules for p in m.parameters())
        variant = model.variant
        del model, modules
    return {"seconds": best, "params": total, "peak_rss_mb": peak_rss_mb(), "variant": variant}


def run_switch(path_a: str, path_b: str) -> dict:
    import diffusers  # noqa: F401
    import torch
    import transformers  # noqa: F401

    from modules.devices import DevicePolicy
    from modules.model_manager import ModelManager
    from modules.model_registry import ModelRegistry

    reg = ModelRegistry([Path(path_a).parent], None, no_hashing=True)
    reg.refresh()
    policy = DevicePolicy(torch.device("cpu"), torch.float16, torch.float16)
    mm = ModelManager(reg, policy, cache_limit=lambda: 2)
    a, b = Path(path_a).name, Path(path_b).name
    mm.load(a)
    mm.load(b)
    t = time.perf_counter()
    mm.load(a)
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": peak_rss_mb()}


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = {"reference": lambda: run_reference(*rest), "ours": lambda: run_ours(rest[0], rest[1]),
                  "switch": lambda: run_switch(rest[0], rest[1])}[kind]()
        print(json.dumps(result))
        return
    path = checkpoint_path()
    if not path.exists():
        print(f"writing {path} (once)...", flush=True)
        write_checkpoint(path)
    second = checkpoint_path("sd15-random-fp16-b")
    if not second.exists():
        os.link(path, second) if hasattr(os, "link") else second.write_bytes(path.read_bytes())
    size_gb = path.stat().st_size / 1e9
    child(["reference", str(path)])  # warm the page cache so both sides read from memory
    ref = child(["reference", str(path)])
    ref_bf16 = child(["reference", str(path), "bfloat16"])
    ours16 = child(["ours", str(path), "float16"])
    ours_bf16 = child(["ours", str(path), "bfloat16"])
    switch = child(["switch", str(path), str(second)])
    print(f"checkpoint: {path.name}, {size_gb:.2f} GB, {ref['params'] / 1e6:.0f}M parameters")
    print(f"reference raw safetensors read (materialised): {ref['seconds']:.2f}s, peak RSS {ref['peak_rss_mb']:.0f} MB")
    print(f"reference raw read + conversion to bf16: {ref_bf16['seconds']:.2f}s, "
          f"peak RSS {ref_bf16['peak_rss_mb']:.0f} MB")
    for name, r, base in (("ours fp16 (file dtype, as on CUDA/MPS)", ours16, ref),
                          ("ours bf16 (CPU default) vs read+convert", ours_bf16, ref_bf16)):
        print(f"{name}: {r['seconds']:.2f}s ratio {r['seconds'] / base['seconds']:.2f}x, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x), "
              f"detected {r['variant']}")
    print(f"ours bf16 vs the plain fp16 read: {ours_bf16['seconds'] / ref['seconds']:.2f}x")
    print(f"switch back to a cached model: {switch['seconds']:.3f}s (target <= 0.3s)")


if __name__ == "__main__":
    main()
