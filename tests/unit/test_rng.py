"""Seeded noise: CPU/GPU/NV sources, per-image generators, variation seeds, seed resize, ENSD, seed validation."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from modules import rng, rng_philox
from modules.errors import ValidationError

SHAPE = (4, 16, 16)


# --- NV source: Philox4x32-10 as torch's CUDA generator uses it -------------------------------------------------


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [
        # Known-answer vectors published with Random123 (kat_vectors, philox4x32_10).
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    out = rng_philox.philox4x32_10(
        np.array(counter, dtype=np.uint32).reshape(4, 1), np.array(key, dtype=np.uint32).reshape(2, 1)
    )
    assert tuple(int(v) for v in out[:, 0]) == expected


# Values printed by torch on CUDA GPUs, as reported publicly:
# seed 0: torch.manual_seed(0); torch.randn(5, device="cuda") (widely quoted);
# seed 1: pytorch/pytorch#143086 (randn(1, N) with a cuda Generator seeded 1);
# seed 42: pytorch/pytorch#158398 (randn([1, 64, 2048]) with a cuda Generator seeded 42; rows 0-2, both ends).
PUBLISHED_CUDA_RANDN = [
    (0, (5,), [(slice(0, 5), [-0.9247, -0.4253, -2.6438, 0.1452, -0.1209])]),
    (1, (3,), [(slice(0, 3), [-0.2963, 2.6764, -0.1408])]),
    (
        42,
        (1, 64, 2048),
        [
            ((0, 0, slice(0, 3)), [0.1940, 2.1614, -0.1721]),
            ((0, 0, slice(-3, None)), [1.4540, -2.7733, -0.8932]),
            ((0, 1, slice(0, 3)), [-0.4574, 0.8063, 0.1580]),
            ((0, 1, slice(-3, None)), [0.1124, 0.2769, -1.2535]),
            ((0, 2, slice(0, 3)), [1.1346, -0.6329, -0.9147]),
            ((0, 2, slice(-3, None)), [-1.0001, -1.1552, -0.6955]),
        ],
    ),
]


@pytest.mark.parametrize(("seed", "shape", "checks"), PUBLISHED_CUDA_RANDN)
def test_nv_matches_published_cuda_randn(seed, shape, checks):
    values = rng_philox.Generator(seed).randn(shape)
    assert values.dtype == np.float32 and values.shape == shape
    for index, expected in checks:
        np.testing.assert_allclose(values[index], expected, atol=1e-4)


def test_nv_matches_published_cuda_normal_with_mean_and_std():
    # pytorch/pytorch#97097: torch.manual_seed(14); torch.cuda.FloatTensor(1000, 100).normal_(5, 5 ** .5)
    values = rng_philox.Generator(14).randn((1000, 100)) * 5**0.5 + 5
    np.testing.assert_allclose(values[0, :3], [2.8731, 5.2727, 2.9889], atol=1e-4)
    np.testing.assert_allclose(values[0, -3:], [1.6853, 9.6331, 6.6319], atol=1e-4)
    np.testing.assert_allclose(values[1, :3], [3.9968, 3.8097, 5.7328], atol=1e-4)


def test_nv_generator_advances_between_calls():
    gen = rng_philox.Generator(7)
    first, second = gen.randn((64,)), gen.randn((64,))
    assert gen.offset == 2
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(rng_philox.Generator(7).randn((64,)), first)
    # Every element has its own subsequence, so a prefix of a bigger draw equals a smaller draw.
    np.testing.assert_array_equal(rng_philox.Generator(7).randn((128,))[:64], first)


def _best(shape) -> float:
    gen = rng_philox.Generator(1234)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        gen.randn(shape)
        best = min(best, time.perf_counter() - start)
    return best


def test_nv_is_standard_normal_and_vectorised():
    values = rng_philox.Generator(1234).randn((4, 128, 128))
    assert abs(float(values.mean())) < 0.02 and abs(float(values.std()) - 1) < 0.02
    # Vectorised, measured against the same run's plain NumPy normal draw of the same size (a per-element Python
    # loop is ~1000x slower than NumPy; the vectorised Philox is within a small factor of it).
    reference = math.inf
    numpy_rng = np.random.default_rng(0)
    for _ in range(3):
        start = time.perf_counter()
        numpy_rng.standard_normal((4, 128, 128))
        reference = min(reference, time.perf_counter() - start)
    assert _best((4, 128, 128)) / max(reference, 1e-6) < 200


def test_nv_rejects_bad_seed():
    with pytest.raises(ValueError, match="integer"):
        rng_philox.Generator("12")
    with pytest.raises(ValueError, match="64-bit"):
        rng_philox.Generator(2**64)


# --- rng.randn and sources -----------------------------------------------------------------------------------------


def test_cpu_source_equals_torch_randn_with_cpu_generator():
    expected = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(123))
    torch.testing.assert_close(rng.randn(123, SHAPE, source="CPU"), expected, rtol=0, atol=0)
    torch.testing.assert_close(rng.randn_local(123, SHAPE, source="CPU"), expected, rtol=0, atol=0)


def test_gpu_source_on_cpu_device_falls_back_to_cpu_generator():
    expected = rng.randn(99, SHAPE, source="CPU")
    torch.testing.assert_close(rng.randn(99, SHAPE, source="GPU", device="cpu"), expected, rtol=0, atol=0)


def test_nv_source_equals_philox_and_is_lowercase_tolerant():
    expected = torch.from_numpy(rng_philox.Generator(5).randn(SHAPE))
    got = rng.randn(5, SHAPE, source="nv")
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_randn_leaves_global_torch_state_alone():
    torch.manual_seed(2024)
    before = torch.random.get_rng_state()
    rng.randn(1, SHAPE, source="CPU")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_randn_like_uses_given_generator_and_dtype():
    x = torch.zeros(SHAPE, dtype=torch.float64)
    got = rng.randn_like(x, rng.create_generator(3, "CPU"))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, rng.randn(3, SHAPE, "CPU").double())


def test_unknown_source_is_a_clear_error():
    with pytest.raises(ValidationError, match="RNG.*unknown random number generator source 'CUDA'"):
        rng.randn(1, SHAPE, source="CUDA")


# --- ImageRNG ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_first_gives_seed_plus_i_per_image(source):
    noise = rng.ImageRNG(SHAPE, [10, 11, 12], source=source).first()
    assert noise.shape == (3, *SHAPE)
    for i, seed in enumerate([10, 11, 12]):
        torch.testing.assert_close(noise[i], rng.randn(seed, SHAPE, source), rtol=0, atol=0)


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_sampler_noise_continues_each_image_generator(source):
    """The order of draws A1111 uses for Euler a: initial noise, then one draw per step from the same generator."""
    image_rng = rng.ImageRNG(SHAPE, [40, 41], source=source)
    draws = [image_rng.next() for _ in range(4)]
    for i, seed in enumerate([40, 41]):
        gen = rng.create_generator(seed, source)
        for step, draw in enumerate(draws):
            torch.testing.assert_close(draw[i], rng.randn_without_seed(SHAPE, gen), rtol=0, atol=0, msg=f"step {step}")


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_eta_noise_seed_delta_reseeds_sampler_noise(source):
    image_rng = rng.ImageRNG(SHAPE, [40, 41], source=source, eta_noise_seed_delta=31337)
    initial, step1, step2 = image_rng.next(), image_rng.next(), image_rng.next()
    for i, seed in enumerate([40, 41]):
        torch.testing.assert_close(initial[i], rng.randn(seed, SHAPE, source), rtol=0, atol=0)
        gen = rng.create_generator(seed + 31337, source)
        torch.testing.assert_close(step1[i], rng.randn_without_seed(SHAPE, gen), rtol=0, atol=0)
        torch.testing.assert_close(step2[i], rng.randn_without_seed(SHAPE, gen), rtol=0, atol=0)


def test_images_do_not_depend_on_batch_size():
    batch = rng.ImageRNG(SHAPE, [7, 8], source="CPU")
    single = rng.ImageRNG(SHAPE, [8], source="CPU")
    for _ in range(3):
        torch.testing.assert_close(batch.next()[1], single.next()[0], rtol=0, atol=0)


def test_variation_strength_zero_one_and_half():
    base = rng.randn(100, SHAPE, "CPU")
    sub = rng.randn(200, SHAPE, "CPU")

    def first(strength: float) -> torch.Tensor:
        return rng.ImageRNG(SHAPE, [100], subseeds=[200], subseed_strength=strength, source="CPU").first()[0]

    torch.testing.assert_close(first(0.0), base, rtol=0, atol=0)
    torch.testing.assert_close(first(1.0), sub, rtol=0, atol=1e-5)
    half = first(0.5)
    torch.testing.assert_close(half, rng.slerp(0.5, base, sub))
    assert not torch.allclose(half, base, atol=1e-2) and not torch.allclose(half, sub, atol=1e-2)
    # Slerp of two near-orthogonal unit-variance noises keeps unit variance, unlike a straight average (~0.71).
    assert abs(float(half.std()) - 1) < 0.15


def test_variation_keeps_sampler_generator_on_main_seed():
    image_rng = rng.ImageRNG(SHAPE, [100], subseeds=[200], subseed_strength=0.3, source="CPU")
    image_rng.next()
    gen = rng.create_generator(100, "CPU")
    rng.randn_without_seed(SHAPE, gen)
    torch.testing.assert_close(image_rng.next()[0], rng.randn_without_seed(SHAPE, gen), rtol=0, atol=0)


def test_slerp_on_orthogonal_unit_vectors():
    low = torch.tensor([1.0, 0.0]).reshape(1, 2, 1)
    high = torch.tensor([0.0, 1.0]).reshape(1, 2, 1)
    mid = rng.slerp(0.5, low, high).flatten()
    torch.testing.assert_close(mid, torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    third = rng.slerp(1 / 3, low, high).flatten()
    torch.testing.assert_close(third, torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))


@pytest.mark.parametrize("source", ["CPU", "NV"])
def test_resize_seed_from_smaller_keeps_centre_patch(source):
    # 128x128 image -> 16x16 latent; "resize seed from" 64x96 -> 8 high, 12 wide latent, pasted centred.
    noise = rng.ImageRNG(SHAPE, [5], seed_resize_from_h=64, seed_resize_from_w=96, source=source).first()[0]
    small = rng.randn(5, (4, 8, 12), source)
    torch.testing.assert_close(noise[:, 4:12, 2:14], small, rtol=0, atol=0)
    # Outside the patch: the per-image generator's own full-size draw (its first draw).
    full = rng.randn(5, SHAPE, source)
    torch.testing.assert_close(noise[:, :4], full[:, :4], rtol=0, atol=0)
    torch.testing.assert_close(noise[:, :, :2], full[:, :, :2], rtol=0, atol=0)


def test_resize_seed_from_larger_crops_centre_like_a1111():
    # From 200x168 -> 25x21 latent onto 16x16: offsets (16-25)//2=-5 and (16-21)//2=-3; A1111 copies
    # size + 2*offset = 15 rows and cols, so with odd differences the last row/col keeps the full-size draw.
    noise = rng.ImageRNG(SHAPE, [5], seed_resize_from_h=200, seed_resize_from_w=168, source="CPU").first()[0]
    big = rng.randn(5, (4, 25, 21), "CPU")
    full = rng.randn(5, SHAPE, "CPU")
    dy, dx = (16 - 25) // 2, (16 - 21) // 2  # -5, -3
    h, w = 25 + 2 * dy, 21 + 2 * dx  # 15, 15
    torch.testing.assert_close(noise[:, :h, :w], big[:, -dy : -dy + h, -dx : -dx + w], rtol=0, atol=0)
    torch.testing.assert_close(noise[:, h:, :], full[:, h:, :], rtol=0, atol=0)
    torch.testing.assert_close(noise[:, :, w:], full[:, :, w:], rtol=0, atol=0)


def test_resize_ignored_unless_both_sides_given():
    noise = rng.ImageRNG(SHAPE, [5], seed_resize_from_h=-1, seed_resize_from_w=96, source="CPU").first()[0]
    torch.testing.assert_close(noise, rng.randn(5, SHAPE, "CPU"), rtol=0, atol=0)


def test_missing_subseed_counts_as_zero():
    noise = rng.ImageRNG(SHAPE, [1, 2], subseeds=[9], subseed_strength=1.0, source="CPU").first()
    torch.testing.assert_close(noise[1], rng.randn(0, SHAPE, "CPU"), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (4, 16)}, "shape"),
        ({"seeds": []}, "at least one seed"),
        ({"seeds": ["1"]}, "Seed: must be a whole number"),
        ({"subseed_strength": float("nan")}, "Variation strength"),
        ({"subseeds": 3}, "Variation seed"),
    ],
)
def test_image_rng_rejects_bad_arguments(kwargs, message):
    args = {"shape": SHAPE, "seeds": [1], "source": "CPU", **kwargs}
    with pytest.raises(ValidationError, match=message):
        rng.ImageRNG(**args)


# --- seeds ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, None, "", "-1", -1.0])
def test_random_seed_in_a1111_range(value):
    seeds = {rng.seed_resolve(value) for _ in range(20)}
    assert all(isinstance(s, int) and 0 <= s < rng.RANDOM_SEED_LIMIT for s in seeds)
    assert len(seeds) > 1


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0), (1234, 1234), ("1234", 1234), (1234.0, 1234), (2**32 - 1, 2**32 - 1)]
)
def test_fixed_seeds_pass_through(value, expected):
    got = rng.seed_resolve(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", ["abc", 2**40, float("nan"), float("inf"), 1.5, True, -2, [1], "1e20"])
def test_bad_seed_is_a_clear_error(value):
    with pytest.raises(ValueError, match=r"Variation seed: must be"):
        rng.seed_resolve(value, field="Variation seed")


def test_image_seeds_as_a1111():
    assert rng.image_seeds(10, 50, 0.0, 3) == ([10, 11, 12], [50, 51, 52])
    # With a variation strength, the seed stays and the variation seed counts up.
    assert rng.image_seeds(10, 50, 0.4, 3) == ([10, 10, 10], [50, 51, 52])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nv_equals_cuda_randn_on_a_real_gpu():
    for seed in (0, 1234, 2**32 - 1):
        gen = torch.Generator("cuda").manual_seed(seed)
        nv = rng_philox.Generator(seed)
        for _ in range(2):  # the second draw checks the offset advance too
            expected = torch.randn((4, 64, 64), generator=gen, device="cuda").cpu()
            torch.testing.assert_close(torch.from_numpy(nv.randn((4, 64, 64))), expected, rtol=0, atol=1e-4)
        torch.testing.assert_close(
            rng.randn(seed, (4, 8, 8), source="GPU", device="cuda").cpu(),
            torch.randn((4, 8, 8), generator=torch.Generator("cuda").manual_seed(seed), device="cuda").cpu(),
        )
