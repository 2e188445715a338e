"""The same txt2img job through our service and through bare diffusers on the same weights; prints the ratio.

Tiny model (written by the test fixtures) and a full-size SD1.5-architecture model with random weights (the
file benchmarks/load_checkpoint.py caches). Both sides use the very same loaded modules, dtype, sampler
(Euler, Karras schedule), steps, size, CFG and seed, and return PIL images; ours does not save to disk.
Best of N runs each, interleaved. Usage: venv/bin/python benchmarks/txt2img.py [--skip-full]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bench(label: str, ckpt_folder: Path, name: str, flags: list[str], size: int, steps: int, runs: int) -> None:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from modules import job_runner
    from modules.initialize import create_runtime
    from modules.params import Txt2ImgParams

    data = Path(tempfile.mkdtemp(prefix="bench-txt2img-"))
    models = data / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    for f in ckpt_folder.iterdir():
        if f.name.startswith(name):
            (models / f.name).symlink_to(f)
    rt = create_runtime(["--data-dir", str(data), *flags], environ={})
    rt.switch_checkpoint(f"{name}.safetensors")
    rt.opts.set("randn_source", "CPU")
    pipe = rt.models.current.pipe
    sched = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                               timestep_spacing="linspace")
    ref = StableDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                  unet=pipe.unet, scheduler=sched, safety_checker=None, feature_extractor=None,
                                  requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    prompt = "a photo of an astronaut riding a horse on the moon"
    params = Txt2ImgParams(prompt=prompt, sampler_name="Euler", scheduler="Karras", steps=steps, width=size,
                           height=size, cfg_scale=7.0, seed=1, save_images=False)

    def ours() -> None:
        job_runner.run_now(rt, job_runner.JobRequest(params, is_api=True))

    def theirs() -> None:
        with torch.no_grad():
            ref(prompt, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
                generator=torch.Generator("cpu").manual_seed(1), output_type="pil")

    ours()
    theirs()  # warm-up both (allocator, caches); the conditioning cache is per prompt, so also warm
    rt.conditioner_for(rt.models.current)._cache.clear() if hasattr(rt.conditioner_for(rt.models.current),
                                                                       "_cache") else None
    t_ours, t_ref = [], []
    for _ in range(runs):
        t = time.perf_counter()
        theirs()
        t_ref.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t)
    best_o, best_r = min(t_ours), min(t_ref)
    print(f"{label}: {size}x{size}, {steps} steps, dtype {rt.policy.dtype}: ours {best_o:.3f}s "
          f"(median {statistics.median(t_ours):.3f}), diffusers {best_r:.3f}s "
          f"(median {statistics.median(t_ref):.3f}); ratio best {best_o / best_r:.3f}x, "
          f"median {statistics.median(t_ours) / statistics.median(t_ref):.3f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from tests.fixtures.tiny_models import write_tiny_checkpoint

    tiny_dir = Path(tempfile.mkdtemp(prefix="bench-tiny-"))
    write_tiny_checkpoint("sd1", tiny_dir, "tiny")
    bench("tiny SD1", tiny_dir, "tiny", ["--no-half"], 64, 8, args.runs)
    if not args.skip_full:
        from benchmarks.load_checkpoint import checkpoint_path, write_checkpoint

        path = checkpoint_path()
        if not path.exists():
            write_checkpoint(path)
        bench("full-size SD1.5 (random weights)", path.parent, path.stem, [], 256, 4, max(2, args.runs // 2))


if __name__ == "__main__":
    main()
