"""NumPy reimplementation of torch's CUDA ``randn`` (Philox4x32-10 + Box-Muller), usable on any device."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Philox4x32 constants from Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11),
# identical to the ones cuRAND uses for curandStatePhilox4_32_10_t.
_MUL_A = np.uint64(0xD2511F53)
_MUL_B = np.uint64(0xCD9E8D57)
_WEYL_A = np.uint32(0x9E3779B9)
_WEYL_B = np.uint32(0xBB67AE85)
_ROUNDS = 10

_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)

# cuRAND maps a 32-bit integer x to (x + 0.5) / 2**32, so the result is never 0 and log() stays finite.
_INV_2_POW_32 = 2.0**-32

_SEED_MAX = 2**64 - 1


def _mul_hi_lo(multiplier: np.uint64, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full 32x32->64 bit product split into its high and low 32-bit halves."""
    product = value.astype(np.uint64) * multiplier
    return (product >> _SHIFT32).astype(np.uint32), (product & _LOW32).astype(np.uint32)


def philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Run Philox4x32-10 on a (4, n) uint32 counter block with a (2, n) uint32 key; returns (4, n) uint32."""
    c0, c1, c2, c3 = (counter[i].astype(np.uint32) for i in range(4))
    k0, k1 = key[0].astype(np.uint32), key[1].astype(np.uint32)
    with np.errstate(over="ignore"):  # the key schedule relies on uint32 wrap-around
        for round_index in range(_ROUNDS):
            if round_index:
                k0 = k0 + _WEYL_A
                k1 = k1 + _WEYL_B
            hi_a, lo_a = _mul_hi_lo(_MUL_A, c0)
            hi_b, lo_b = _mul_hi_lo(_MUL_B, c2)
            c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
    return np.stack([c0, c1, c2, c3])


def box_muller_first(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """First output of cuRAND's Box-Muller transform for the uint32 pair (x, y): sqrt(-2 ln u) * sin(2 pi v)."""
    u = x.astype(np.float64) * _INV_2_POW_32 + _INV_2_POW_32 / 2
    v = y.astype(np.float64) * _INV_2_POW_32 + _INV_2_POW_32 / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(2.0 * np.pi * v)).astype(np.float32)


def _shape_size(shape: Iterable[int]) -> tuple[tuple[int, ...], int]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"randn shape must not have negative dimensions, got {dims}")
    size = 1
    for d in dims:
        size *= d
    return dims, size


class Generator:
    """Stateful generator matching ``torch.Generator("cuda").manual_seed(seed)`` followed by ``torch.randn`` calls.

    torch's CUDA kernel gives every output element its own Philox subsequence (the element index, counter words
    2 and 3) and advances the generator's offset (counter word 0) by one block per launch, keeping only the first
    Box-Muller value of each thread. That is exact for tensors with at most one element per GPU thread, which covers
    every SD latent; it is the same model of torch that A1111's "NV" RNG source uses.
    """

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"Philox seed must be an integer, got {seed!r}")
        seed = int(seed)
        if seed < 0:
            # torch.manual_seed remaps negative seeds the same way (two's complement into uint64).
            seed += 2**64
        if not 0 <= seed <= _SEED_MAX:
            raise ValueError(f"Philox seed {seed} is outside the 64-bit range")
        self.seed = seed
        self.offset = 0

    def randn(self, shape: Iterable[int]) -> np.ndarray:
        """Next batch of standard normal float32 values, shaped like ``shape``."""
        dims, size = _shape_size(shape)
        if size > 2**32:
            raise ValueError(f"randn of {size} elements exceeds the 2**32 Philox subsequences this generator models")
        index = np.arange(size, dtype=np.uint64)
        counter = np.zeros((4, size), dtype=np.uint32)
        counter[0] = self.offset & 0xFFFFFFFF
        counter[1] = (self.offset >> 32) & 0xFFFFFFFF
        counter[2] = (index & _LOW32).astype(np.uint32)
        counter[3] = (index >> _SHIFT32).astype(np.uint32)
        key = np.empty((2, size), dtype=np.uint32)
        key[0] = self.seed & 0xFFFFFFFF
        key[1] = self.seed >> 32
        self.offset += 1
        block = philox4x32_10(counter, key)
        return box_muller_first(block[0], block[1]).reshape(dims)
