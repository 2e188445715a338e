"""Seeded latent noise as A1111 makes it: RNG sources (GPU/CPU/NV), per-image seeds, variation seeds, seed resize."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from numbers import Integral, Real

import torch

from modules import rng_philox
from modules.errors import ValidationError

RNG_SOURCES = ("GPU", "CPU", "NV")
SEED_MAX = 2**32 - 1
# A1111 draws random seeds with random.randrange(4294967294), i.e. 0..4294967293.
RANDOM_SEED_LIMIT = 4294967294
# Latent pixels per image pixel in each direction for SD VAEs; A1111 hard-codes it for "Resize seed from".
VAE_SCALE_FACTOR = 8

NoiseGenerator = torch.Generator | rng_philox.Generator
DeviceLike = torch.device | str


def _normalise_source(source: str) -> str:
    name = str(source).strip().upper()
    if name not in RNG_SOURCES:
        raise ValidationError("RNG", f"unknown random number generator source {source!r}; expected one of GPU, CPU, NV")
    return name


def _generator_device(source: str, device: DeviceLike) -> torch.device:
    """Device whose generator produces the noise: the CPU unless the source is GPU on a device with its own RNG."""
    device = torch.device(device)
    # A1111 also falls back to the CPU generator on MPS, whose generator does not reproduce across machines.
    if source == "CPU" or device.type in ("cpu", "mps"):
        return torch.device("cpu")
    return device


def _torch_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValidationError("Seed", f"must be a whole number, got {seed!r}")
    seed = int(seed)
    if not -(2**63) <= seed <= 2**64 - 1:
        raise ValidationError("Seed", f"{seed} is outside the 64-bit range a generator accepts")
    return seed


def create_generator(seed: int, source: str = "GPU", device: DeviceLike = "cpu") -> NoiseGenerator:
    """A fresh generator seeded with ``seed`` for the given RNG source."""
    source = _normalise_source(source)
    seed = _torch_seed(seed)
    if source == "NV":
        return rng_philox.Generator(seed)
    return torch.Generator(_generator_device(source, device)).manual_seed(seed)


def randn_without_seed(shape: Sequence[int], generator: NoiseGenerator, device: DeviceLike = "cpu") -> torch.Tensor:
    """Next float32 standard-normal tensor from ``generator``, placed on ``device``."""
    shape = tuple(int(d) for d in shape)
    if isinstance(generator, rng_philox.Generator):
        return torch.from_numpy(generator.randn(shape)).to(device)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)


def randn(seed: int, shape: Sequence[int], source: str = "GPU", device: DeviceLike = "cpu") -> torch.Tensor:
    """Noise of ``shape`` for ``seed``, the first draw of a freshly seeded generator of ``source``.

    A1111 seeds the process-wide generator here; we use a private one, which gives the same numbers without
    disturbing anyone else's random state.
    """
    return randn_without_seed(shape, create_generator(seed, source, device), device)


def randn_local(seed: int, shape: Sequence[int], source: str = "GPU", device: DeviceLike = "cpu") -> torch.Tensor:
    """A1111's name for seeded noise that leaves global RNG state alone; identical to :func:`randn` here."""
    return randn(seed, shape, source, device)


def randn_like(x: torch.Tensor, generator: NoiseGenerator | None = None) -> torch.Tensor:
    """Noise shaped like ``x`` (same device and dtype) from ``generator``, or torch's default generator if None."""
    if generator is None:
        return torch.randn_like(x)
    return randn_without_seed(x.shape, generator, x.device).to(x.dtype)


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (val=0) to ``high`` (val=1), as A1111 mixes variation seeds.

    Like A1111, directions are normalised along dim 1 (for one latent of shape (C, H, W) that is per channel and
    column), so the result matches A1111's variation-seed images.
    """
    low_dir = low / torch.linalg.vector_norm(low, dim=1, keepdim=True)
    high_dir = high / torch.linalg.vector_norm(high, dim=1, keepdim=True)
    cos_omega = (low_dir * high_dir).sum(1)
    if cos_omega.mean() > 0.9995:
        # Nearly parallel: sin(omega) ~ 0 would blow up, and a straight line is as good. (A1111 swaps the weights in
        # this branch; it is only reached when both noises are the same, where the two agree.)
        return low * (1.0 - val) + high * val
    omega = torch.acos(cos_omega)
    sin_omega = torch.sin(omega)
    weight_low = (torch.sin((1.0 - val) * omega) / sin_omega).unsqueeze(1)
    weight_high = (torch.sin(val * omega) / sin_omega).unsqueeze(1)
    return weight_low * low + weight_high * high


def paste_centred(target: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Copy ``patch`` (C, h, w) centred onto ``target`` (C, H, W), cropping the middle of the patch when it is larger."""
    out = target.clone()
    _, height, width = target.shape
    _, patch_h, patch_w = patch.shape
    dy, dx = (height - patch_h) // 2, (width - patch_w) // 2
    # When the patch is larger by an odd amount this copies one row/column less than the target has, leaving the
    # target's own noise there; A1111 does the same, and matching it keeps images identical.
    h = patch_h if dy >= 0 else patch_h + 2 * dy
    w = patch_w if dx >= 0 else patch_w + 2 * dx
    ty, tx = max(dy, 0), max(dx, 0)
    sy, sx = max(-dy, 0), max(-dx, 0)
    out[:, ty : ty + h, tx : tx + w] = patch[:, sy : sy + h, sx : sx + w]
    return out


def _check_seed_list(values: Sequence[int], field: str) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValidationError(field, f"must be a list of whole numbers, got {values!r}")
    return [_torch_seed(v) for v in values]


class ImageRNG:
    """Noise for one batch: one generator per image, seeded seed+i by the caller, A1111's call order preserved.

    ``next()`` first returns the initial latent noise (``first()``), then one tensor per call for ancestral/SDE
    samplers, drawn from the same per-image generators (re-seeded with seed + ENSD after the initial noise when
    ``eta_noise_seed_delta`` is set), so images do not depend on batch size.
    """

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int],
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        source: str = "GPU",
        device: DeviceLike = "cpu",
        eta_noise_seed_delta: int = 0,
    ) -> None:
        shape = tuple(int(d) for d in shape)
        if len(shape) != 3 or any(d <= 0 for d in shape):
            raise ValidationError("shape", f"latent noise shape must be (channels, height, width) > 0, got {shape}")
        self.shape = shape
        self.seeds = _check_seed_list(seeds, "Seed")
        if not self.seeds:
            raise ValidationError("Seed", "at least one seed is needed")
        self.subseeds = None if subseeds is None else _check_seed_list(subseeds, "Variation seed")
        if isinstance(subseed_strength, bool) or not isinstance(subseed_strength, Real):
            raise ValidationError("Variation strength", f"must be a number, got {subseed_strength!r}")
        if not math.isfinite(subseed_strength):
            raise ValidationError("Variation strength", f"must be a finite number, got {subseed_strength!r}")
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = _normalise_source(source)
        self.device = torch.device(device)
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.generators = [create_generator(seed, self.source, self.device) for seed in self.seeds]
        self.is_first = True

    def _noise_shape(self) -> tuple[int, int, int]:
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        return (
            self.shape[0],
            self.seed_resize_from_h // VAE_SCALE_FACTOR,
            self.seed_resize_from_w // VAE_SCALE_FACTOR,
        )

    def first(self) -> torch.Tensor:
        """Initial noise, shape (batch, C, H, W); consumes one draw of every per-image generator."""
        self.is_first = False
        noise_shape = self._noise_shape()
        resized = noise_shape != self.shape
        use_variation = self.subseeds is not None and self.subseed_strength != 0
        images = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators, strict=True)):
            # Call order as A1111: subseed noise, then seed noise (fresh generator when resizing), then the full-size
            # draw that the per-image generator makes anyway when resizing.
            subnoise = None
            if use_variation:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0  # A1111 pads missing subseeds with 0
                subnoise = randn(subseed, noise_shape, self.source, self.device)
            if resized:
                noise = randn(seed, noise_shape, self.source, self.device)
            else:
                noise = randn_without_seed(self.shape, generator, self.device)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                noise = paste_centred(randn_without_seed(self.shape, generator, self.device), noise)
            images.append(noise)
        if self.eta_noise_seed_delta:
            self.generators = [
                create_generator(seed + self.eta_noise_seed_delta, self.source, self.device) for seed in self.seeds
            ]
        return torch.stack(images).to(self.device)

    def next(self) -> torch.Tensor:
        """The initial noise on the first call, then per-step sampler noise (batch, C, H, W)."""
        if self.is_first:
            return self.first()
        return torch.stack([randn_without_seed(self.shape, g, self.device) for g in self.generators]).to(self.device)


def seed_resolve(seed: object, field: str = "Seed") -> int:
    """A concrete seed: -1, None or "" become a random one (as A1111), other values must be in 0..SEED_MAX."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        seed = -1
    value = _parse_whole_number(seed, field)
    if value == -1:
        return int(random.randrange(RANDOM_SEED_LIMIT))
    if not 0 <= value <= SEED_MAX:
        raise ValidationError(field, f"must be from 0 to {SEED_MAX}, or -1 for a random seed; got {value}")
    return value


def _parse_whole_number(value: object, field: str) -> int:
    expected = f"must be a whole number from 0 to {SEED_MAX}, or -1 for a random seed; got {value!r}"
    if isinstance(value, bool):
        raise ValidationError(field, expected)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValidationError(field, expected) from None
    if isinstance(value, Real):
        # Gradio Number boxes and JSON clients send 1234.0; accept those, but not 12.5, NaN or infinity.
        if not math.isfinite(value) or not float(value).is_integer():
            raise ValidationError(field, expected)
        return int(value)
    raise ValidationError(field, expected)


def image_seeds(seed: int | list[int], subseed: int | list[int], subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Per-image seeds and variation seeds for ``count`` images, as A1111 assigns them.

    Without variation every image gets seed+i; with a variation strength the seed stays fixed and the variation
    seed counts up instead, so the images are variations of one picture.
    """
    if count < 0:
        raise ValidationError("Batch count", f"must not be negative, got {count}")
    # A list (prompt matrix, X/Y/Z plot) gives each image its own seed, as A1111 allows scripts to do.
    if isinstance(seed, list):
        seeds = [int(s) for s in seed[:count]]
    else:
        seeds = [int(seed) + (i if subseed_strength == 0 else 0) for i in range(count)]
    if isinstance(subseed, list):
        subseeds = [int(s) for s in subseed[:count]]
    else:
        subseeds = [int(subseed) + i for i in range(count)]
    return seeds, subseeds
