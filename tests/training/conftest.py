"""Fixtures for training tests: a toy dataset of coloured shapes with captions, weight snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def write_toy_dataset(folder: Path, count: int = 2, size: int = 64, captions: bool = True) -> Path:
    """Deterministic images (a red square on blue, a green disc on black...) with `.txt` captions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        arr = np.zeros((size, size, 3), dtype=np.uint8)
        arr[..., 2] = 40 + 60 * i
        arr[size // 4: 3 * size // 4, size // 4: 3 * size // 4, 0] = 220
        arr = np.clip(arr.astype(int) + rng.integers(0, 20, arr.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:05d}-toy{i}.png")
        if captions:
            (folder / f"{i:05d}-toy{i}.txt").write_text(f"red square, blue background, item {i}")
    return folder


@pytest.fixture
def toy_dataset(tmp_path: Path) -> Path:
    return write_toy_dataset(tmp_path / "dataset")


def snapshot(model) -> dict[str, torch.Tensor]:
    """Every weight of the loaded model (UNet, VAE, text encoder), cloned."""
    out = {}
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(model.pipe, part, None)
        if module is not None:
            out.update({f"{part}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


def assert_bit_exact(before: dict[str, torch.Tensor], model) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"training changed checkpoint weights: {changed[:5]}"


def fixed_loss(runtime, data_root, prompt: str, trainable=None, seed: int = 123, repeats: int = 4) -> float:
    """The training objective on the toy dataset with fixed noise and timesteps (the same draws every call)."""
    from modules.training import core, dataset

    model = runtime.models.current
    data = dataset.load_dataset(data_root, 64, 64)
    gen = torch.Generator().manual_seed(seed)
    core.cache_latents(model, data, "deterministic", gen)
    objective = core.NoiseObjective.for_model(model)
    cond_model = runtime.conditioner_for(model)
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(repeats):
            latents = core.batch_latents(data.entries, gen)
            cond = core.encode_prompts(cond_model, [prompt] * len(data.entries), trainable)
            total += float(objective.loss(model.pipe.unet, latents, cond, gen))
    return total / repeats
