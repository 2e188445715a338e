"""Textual-inversion training steps per second: our trainer vs a bare torch loop doing the same work.

Full-size SD1.5 architecture with random weights (the cached checkpoint of benchmarks/load_checkpoint.py,
written once if missing), float32 on CPU, one 64x64 training image (8x8 latents), batch 1, one vector.
  ours       modules.training.embedding.run_training (templates, chunked prompt encoding, schedule, CSV, saves)
  reference  the same forward/backward written directly: token-embedding hook inserting the vector, CLIP text
             encoder, UNet, MSE on the noise, AdamW on the vector only
Both time only the optimisation steps (after the latent is cached); the two alternate `--rounds` times and
the best round of each counts, so load from other processes on a shared machine hits both alike.
Prints steps/s and ours/reference. Usage: venv/bin/python benchmarks/train.py [--steps 3] [--rounds 2]
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


def reference_steps_per_second(model, latent, init_vec, steps: int, prompt: str) -> float:
    import torch
    from diffusers import DDPMScheduler

    pipe = model.pipe
    tok, te, unet = pipe.tokenizer, pipe.text_encoder, pipe.unet
    scheduler = DDPMScheduler(**{k: pipe.scheduler.config[k] for k in ("num_train_timesteps", "beta_start",
                                                                         "beta_end", "beta_schedule")})
    ids = [tok.bos_token_id, 0] + tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ids + [tok.eos_token_id] * (77 - len(ids))])
    vec = init_vec.clone().requires_grad_(True)
    opt = torch.optim.AdamW([vec], lr=0.005, weight_decay=0.0)
    table = getattr(te, "text_model", te).embeddings.token_embedding

    def insert(_m, _a, out):
        out = out.clone()
        out[0, 1:2] = vec
        return out

    handle = table.register_forward_hook(insert)
    gen = torch.Generator().manual_seed(0)
    for p in [*unet.parameters(), *te.parameters()]:
        p.requires_grad_(False)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            noise = torch.randn(latent.shape, generator=gen)
            t = torch.randint(0, 1000, (1,), generator=gen)
            cond = te(input_ids=ids).last_hidden_state
            pred = unet(scheduler.add_noise(latent, noise, t), t, encoder_hidden_states=cond).sample
            torch.nn.functional.mse_loss(pred, noise).backward()
            opt.step()
        return steps / (time.perf_counter() - start)
    finally:
        handle.remove()


def main() -> None:
    import torch
    from PIL import Image

    from benchmarks.load_checkpoint import checkpoint_path, write_checkpoint
    from modules.initialize import create_runtime
    from modules.params_train import CreateEmbeddingParams, TrainEmbeddingParams
    from modules.state import JobState
    from modules.training import core, dataset, embedding

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    path = checkpoint_path()
    if not path.exists():
        print(f"writing {path} (once)...")
        write_checkpoint(path)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, images = Path(tmp) / "data", Path(tmp) / "images"
        images.mkdir(parents=True)
        Image.new("RGB", (64, 64), (200, 30, 30)).save(images / "red.png")
        (images / "red.txt").write_text("a red square")
        runtime = create_runtime(["--data-dir", str(data_dir), "--ckpt-dir", str(path.parent), "--no-half"],
                                 environ={})
        runtime.switch_checkpoint(path.name)
        model = runtime.models.current
        embedding.create_embedding(runtime, CreateEmbeddingParams(name="benchemb"))
        init = torch.load(runtime.paths.embeddings_dir / "benchemb.pt", weights_only=True)["string_to_param"]["*"]
        data = dataset.load_dataset(images, 64, 64)
        core.cache_latents(model, data, "deterministic", torch.Generator().manual_seed(0))
        refs, ours_runs = [], []
        for r in range(args.rounds):
            refs.append(reference_steps_per_second(model, data.entries[0].latent, init, args.steps,
                                                   "a photo of a red square"))
            # Each round trains `steps` more: the run continues from the step stored in the file.
            params = TrainEmbeddingParams(embedding_name="benchemb", data_root=str(images), training_width=64,
                                          training_height=64, steps=args.steps * (r + 1), create_image_every=0,
                                          save_embedding_every=0, template_filename="subject.txt", seed=r,
                                          latent_sampling_method="deterministic")
            state = JobState()
            embedding.run_training(runtime, params, state)
            # The loop sets time_start when its first step begins; the final save after it is counted too.
            ours_runs.append(args.steps / (time.time() - state.time_start))
            print(f"round {r + 1}: reference {refs[-1]:.3f} steps/s, ours {ours_runs[-1]:.3f} steps/s")
        ref, ours = max(refs), max(ours_runs)
    print(f"SD1.5 layout, float32 CPU, {torch.get_num_threads()} threads, 64x64, batch 1, {args.steps} steps, "
          f"best of {args.rounds}")
    print(f"reference (bare torch loop)  {ref:.3f} steps/s")
    print(f"ours (run_training)          {ours:.3f} steps/s")
    print(f"ours/reference               {ours / ref:.2f}")


if __name__ == "__main__":
    main()
