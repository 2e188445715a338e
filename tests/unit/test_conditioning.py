"""Prompt to embeddings on tiny real CLIP encoders, checked against transformers/diffusers and A1111's rules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from modules import prompt_parser
from modules.conditioning import (
    Chunker,
    ConditioningError,
    ConditioningOptions,
    TextConditioner,
    target_token_count,
)
from modules.prompt_parser import SdConditioning
from modules.token_counter import count_tokens
from tests.fixtures.tiny_models import build_tiny_components


@pytest.fixture(scope="module")
def sd1() -> dict:
    return build_tiny_components("sd1", seed=1)


@pytest.fixture(scope="module")
def sd2() -> dict:
    return build_tiny_components("sd2-512", seed=2)


@pytest.fixture(scope="module")
def sdxl() -> dict:
    return build_tiny_components("sdxl-base", seed=3)


def pipe_of(components: dict) -> SimpleNamespace:
    keys = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
    return SimpleNamespace(**{k: components.get(k) for k in keys})


def make(components: dict, variant: str = "sd1", **options) -> TextConditioner:
    return TextConditioner(pipe_of(components), variant, ConditioningOptions(**options))


def direct(components: dict, text: str, **kwargs) -> torch.Tensor:
    """What transformers computes for one padded 77-token sequence."""
    ids = components["tokenizer"](text, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return components["text_encoder"](ids, **kwargs)


def words(n: int, word: str = "cat") -> str:
    return " ".join([word] * n)


# ----- agreement with the reference libraries ----------------------------------------------------------------


def test_sd1_plain_prompt_equals_transformers(sd1: dict) -> None:
    z = make(sd1).get_learned_conditioning(["a photo of a cat on a red sofa"])
    expected = direct(sd1, "a photo of a cat on a red sofa").last_hidden_state
    assert z.shape == (1, 77, 32)
    torch.testing.assert_close(z, expected, rtol=0, atol=0)


def test_sd1_batch_equals_row_by_row(sd1: dict) -> None:
    z = make(sd1, emphasis="No norm").get_learned_conditioning(["a cat", "a dog in the snow"])
    torch.testing.assert_close(z[1:], direct(sd1, "a dog in the snow").last_hidden_state)


def test_sd2_pads_with_zero_and_ignores_clip_skip(sd2: dict) -> None:
    assert sd2["tokenizer"].pad_token_id == 0  # "!" as OpenCLIP pads
    plain = make(sd2, "sd2-512").get_learned_conditioning(["a photo of a cat"])
    torch.testing.assert_close(plain, direct(sd2, "a photo of a cat").last_hidden_state, rtol=0, atol=0)
    skipped = make(sd2, "sd2-512", clip_skip=2).get_learned_conditioning(["a photo of a cat"])
    torch.testing.assert_close(skipped, plain, rtol=0, atol=0)
    # Padding with the end token instead would change the output: the pad id really matters.
    ids = sd2["tokenizer"]("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids[ids == 0] = sd2["tokenizer"].eos_token_id
    with torch.no_grad():
        eos_padded = sd2["text_encoder"](ids).last_hidden_state
    assert not torch.allclose(eos_padded, plain)


def test_sdxl_equals_diffusers_encode_prompt(sdxl: dict) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(**sdxl, add_watermarker=False)
    prompt = "a photo of an astronaut riding a horse"
    embeds, _, pooled, _ = pipe.encode_prompt(prompt, device="cpu", do_classifier_free_guidance=False)
    cond = make(sdxl, "sdxl-base").get_learned_conditioning([prompt])
    assert cond["crossattn"].shape == (1, 77, 32 + 64) and cond["vector"].shape == (1, 64)
    torch.testing.assert_close(cond["crossattn"], embeds, rtol=0, atol=0)
    torch.testing.assert_close(cond["vector"], pooled, rtol=0, atol=0)


def test_sdxl_refiner_equals_diffusers_encode_prompt() -> None:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    parts = build_tiny_components("sdxl-refiner", seed=4)
    pipe = StableDiffusionXLImg2ImgPipeline(**parts, requires_aesthetics_score=True, add_watermarker=False)
    embeds, _, pooled, _ = pipe.encode_prompt("a red barn", device="cpu", do_classifier_free_guidance=False)
    cond = make(parts, "sdxl-refiner").get_learned_conditioning(["a red barn"])
    assert cond["crossattn"].shape == (1, 77, 64)
    torch.testing.assert_close(cond["crossattn"], embeds, rtol=0, atol=0)
    torch.testing.assert_close(cond["vector"], pooled, rtol=0, atol=0)


def test_sdxl_pooled_comes_from_first_chunk_and_clip_l_skip(sdxl: dict) -> None:
    long_prompt = "a photo of a dog, " + words(90)
    cond = make(sdxl, "sdxl-base").get_learned_conditioning([long_prompt])
    first_chunk = make(sdxl, "sdxl-base").get_learned_conditioning(["a photo of a dog, " + words(70)])
    assert cond["crossattn"].shape[1] == 154
    torch.testing.assert_close(cond["vector"], first_chunk["vector"])
    # sdxl_clip_l_skip with clip skip 1 reads CLIP-L's last layer (no final norm) instead of the penultimate one.
    ids = sdxl["tokenizer"]("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        last = sdxl["text_encoder"](ids, output_hidden_states=True).hidden_states[-1]
    skip = make(sdxl, "sdxl-base", sdxl_clip_l_skip=True).get_learned_conditioning(["a cat"])
    torch.testing.assert_close(skip["crossattn"][..., :32], last)
    default = make(sdxl, "sdxl-base", sdxl_clip_l_skip=True, clip_skip=2).get_learned_conditioning(["a cat"])
    torch.testing.assert_close(
        default["crossattn"], make(sdxl, "sdxl-base").get_learned_conditioning(["a cat"])["crossattn"]
    )


def test_sdxl_all_empty_negative_is_zero(sdxl: dict) -> None:
    cond = make(sdxl, "sdxl-base").get_learned_conditioning(SdConditioning([""], is_negative_prompt=True))
    assert not cond["crossattn"].any() and not cond["vector"].any()
    positive_empty = make(sdxl, "sdxl-base").get_learned_conditioning(SdConditioning([""]))
    assert positive_empty["crossattn"].abs().sum() > 0


# ----- emphasis ------------------------------------------------------------------------------------------------


def test_no_norm_scales_exactly_the_weighted_rows(sd1: dict) -> None:
    plain = make(sd1, emphasis="No norm").get_learned_conditioning(["a cat sat"])
    weighted = make(sd1, emphasis="No norm").get_learned_conditioning(["a (cat:1.5) sat"])
    # BOS, "a", "cat", "sat": only row 2 is multiplied.
    torch.testing.assert_close(weighted[0, 2], plain[0, 2] * 1.5)
    others = [i for i in range(77) if i != 2]
    torch.testing.assert_close(weighted[0, others], plain[0, others], rtol=0, atol=0)


def test_original_restores_the_mean(sd1: dict) -> None:
    plain = make(sd1).get_learned_conditioning(["a cat sat on the mat"])
    weighted = make(sd1).get_learned_conditioning(["a (cat:1.8) sat [on] the mat"])
    factors = torch.ones(77)
    factors[2], factors[4] = 1.8, 1 / 1.1
    scaled = plain * factors[None, :, None]
    expected = scaled * (plain.mean() / scaled.mean())
    torch.testing.assert_close(weighted, expected)
    torch.testing.assert_close(weighted.mean(), plain.mean())
    assert not torch.allclose(weighted[0, 1], plain[0, 1])  # unweighted rows move too (the rescale)


def test_original_mean_is_over_the_whole_call(sd1: dict) -> None:
    # A1111 restores the mean of the whole [batch, 77, D] chunk, so texts encoded together influence each other.
    plain = make(sd1).get_learned_conditioning(["a cat", "a dog"])
    weighted = make(sd1).get_learned_conditioning(["a (cat:1.5)", "a dog"])
    torch.testing.assert_close(weighted.mean(), plain.mean())
    assert not torch.allclose(weighted[1], plain[1])
    torch.testing.assert_close(weighted[1], plain[1] * (weighted[1, 0, 0] / plain[1, 0, 0]))


def test_works_through_the_prompt_parser(sd1: dict, sdxl: dict) -> None:
    cond = make(sd1)
    scheduled = prompt_parser.get_learned_conditioning(cond, ["a [cat:dog:5]"], 10)
    assert [entry.end_at_step for entry in scheduled[0]] == [5, 10]
    torch.testing.assert_close(scheduled[0][0].cond, cond.get_learned_conditioning(["a cat"])[0])
    torch.testing.assert_close(scheduled[0][1].cond, cond.get_learned_conditioning(["a dog"])[0])
    xl = prompt_parser.get_multicond_learned_conditioning(make(sdxl, "sdxl-base"), ["a cat AND a dog"], 10)
    first = xl.batch[0][0].schedules[0].cond
    assert first["crossattn"].shape == (77, 96) and first["vector"].shape == (64,)


def test_ignore_and_none_modes(sd1: dict) -> None:
    plain = make(sd1).get_learned_conditioning(["a cat sat"])
    ignored = make(sd1, emphasis="Ignore").get_learned_conditioning(["a (cat:1.5) sat"])
    torch.testing.assert_close(ignored, plain, rtol=0, atol=0)
    literal = make(sd1, emphasis="None").get_learned_conditioning(["a (cat:1.5) sat"])
    torch.testing.assert_close(literal, direct(sd1, "a (cat:1.5) sat").last_hidden_state, rtol=0, atol=0)


def test_emphasis_infotext(sd1: dict) -> None:
    cond = make(sd1, emphasis="No norm")
    cond.get_learned_conditioning(["a cat"])
    assert cond.pop_extra_generation_params() == {}
    cond.get_learned_conditioning(["a (cat)"])
    assert cond.pop_extra_generation_params() == {"Emphasis": "No norm"}
    original = make(sd1)
    original.get_learned_conditioning(["a (cat)"])
    assert original.pop_extra_generation_params() == {}


# ----- chunking ------------------------------------------------------------------------------------------------


def test_break_starts_a_new_chunk(sd1: dict) -> None:
    cond = make(sd1)
    z = cond.get_learned_conditioning(["a cat BREAK a dog"])
    assert z.shape == (1, 154, 32)
    torch.testing.assert_close(z[:, :77], cond.get_learned_conditioning(["a cat"]))
    torch.testing.assert_close(z[:, 77:], cond.get_learned_conditioning(["a dog"]))
    # A BREAK inside brackets is scaled by them, and A1111 then treats it as the word "break".
    assert cond.get_learned_conditioning(["(a cat BREAK a dog)"]).shape[1] == 77
    # With emphasis "None" nothing is parsed, BREAK included.
    assert make(sd1, emphasis="None").get_learned_conditioning(["a cat BREAK a dog"]).shape[1] == 77


def test_200_tokens_give_three_chunks_and_batches_pad(sd1: dict) -> None:
    cond = make(sd1)
    z = cond.get_learned_conditioning([words(200), "a dog"])
    assert z.shape == (2, 231, 32)
    chunks, count = cond.tokenize_line(words(200))
    cat = sd1["tokenizer"]("cat", add_special_tokens=False).input_ids[0]
    assert count == 200 and [c.tokens.count(cat) for c in chunks] == [75, 75, 50]
    assert all(len(c.tokens) == 77 and c.tokens[0] == 49406 and c.tokens[-1] == 49407 for c in chunks)
    # The short prompt is padded with empty chunks, i.e. the encoding of BOS + EOS x 76.
    empty = cond.get_learned_conditioning([""])
    torch.testing.assert_close(z[1:, 77:154], empty)
    torch.testing.assert_close(z[1:, 154:], empty)
    torch.testing.assert_close(empty, direct(sd1, "").last_hidden_state)


def test_comma_backtracking_moves_the_split(sd1: dict) -> None:
    prompt = words(70) + ", " + words(10, "dog")
    dog = sd1["tokenizer"]("dog", add_special_tokens=False).input_ids[0]
    chunks, count = Chunker(sd1["tokenizer"]).tokenize_line(prompt)
    assert [c.tokens.count(dog) for c in chunks] == [0, 10]  # the 4 dogs that fitted moved after the comma
    assert count == 85
    chunks, _ = Chunker(sd1["tokenizer"], comma_padding_backtrack=0).tokenize_line(prompt)
    assert [c.tokens.count(dog) for c in chunks] == [4, 6]
    # Too far back (comma 15 tokens before the end, backtrack 10): no move.
    far = words(60) + ", " + words(30, "dog")
    chunks, _ = Chunker(sd1["tokenizer"], comma_padding_backtrack=10).tokenize_line(far)
    assert [c.tokens.count(dog) for c in chunks] == [14, 16]
    z = make(sd1).get_learned_conditioning([prompt])
    torch.testing.assert_close(z[:, 77:], make(sd1).get_learned_conditioning([words(10, "dog")]))


def test_clip_skip_two_is_penultimate_plus_final_norm(sd1: dict) -> None:
    z = make(sd1, clip_skip=2).get_learned_conditioning(["a photo of a cat"])
    out = direct(sd1, "a photo of a cat", output_hidden_states=True)
    with torch.no_grad():
        expected = sd1["text_encoder"].final_layer_norm(out.hidden_states[-2])
    torch.testing.assert_close(z, expected, rtol=0, atol=0)
    assert not torch.allclose(z, out.last_hidden_state)


def test_cache_returns_the_same_object(sd1: dict) -> None:
    cond = make(sd1)
    first = cond.get_learned_conditioning(["a cat"])
    assert cond.get_learned_conditioning(["a cat"]) is first
    assert cond.get_learned_conditioning(["a dog"]) is not first
    cond.cache_salt = "lora:x"  # text-encoder weights changed: recompute
    assert cond.get_learned_conditioning(["a cat"]) is not first
    cond.set_options(ConditioningOptions(clip_skip=2))
    assert not torch.allclose(cond.get_learned_conditioning(["a cat"]), first)
    uncached = make(sd1, cache_size=0)
    assert uncached.get_learned_conditioning(["a cat"]) is not uncached.get_learned_conditioning(["a cat"])


def test_bad_options_and_models_are_reported(sd1: dict) -> None:
    with pytest.raises(ConditioningError, match="emphasis must be one of"):
        ConditioningOptions(emphasis="Loud")
    with pytest.raises(ConditioningError, match="clip skip"):
        ConditioningOptions(clip_skip=0)
    with pytest.raises(ConditioningError, match="variant"):
        TextConditioner(pipe_of(sd1), "flux")
    with pytest.raises(ConditioningError, match="second text encoder"):
        TextConditioner(pipe_of(sd1), "sdxl-base")
    with pytest.raises(ConditioningError, match="no prompts"):
        make(sd1).get_learned_conditioning([])
    opts = ConditioningOptions.from_settings({"CLIP_stop_at_last_layers": 2, "emphasis": "No norm"}.get)
    assert (opts.clip_skip, opts.emphasis, opts.comma_padding_backtrack) == (2, "No norm", 20)


# ----- token counter -------------------------------------------------------------------------------------------


def test_token_counts(sd1: dict) -> None:
    cond = make(sd1)
    assert count_tokens(cond, "a photo of", 20) == (3, 75)
    assert count_tokens(sd1["tokenizer"], "a photo of", 20) == (3, 75)
    assert count_tokens(cond, "", 20) == (0, 75)
    assert count_tokens(cond, words(80), 20) == (80, 150)
    assert count_tokens(cond, words(75), 20) == (75, 75)
    assert count_tokens(cond, "a cat BREAK a dog", 20) == (77, 150)
    assert count_tokens(cond, "a cat BREAK", 20) == (75, 75)
    # Schedules: the longest variant over all steps counts.
    assert count_tokens(cond, "[a cat:a big fat cat on a mat:5]", 20) == (7, 75)
    assert count_tokens(cond, "[cat|big fat cat]", 20) == (3, 75)
    # AND parts count separately (weights removed); a negative prompt is not split.
    assert count_tokens(cond, "a cat AND a big dog :1.2", 20) == (3, 75)
    assert count_tokens(cond, "a cat AND a big dog", 20, is_positive=False) == (6, 75)
    # Extra-network tags and comments do not count.
    assert count_tokens(cond, "<lora:foo:0.8> a cat", 20) == (2, 75)
    assert count_tokens(cond, "a cat # a long comment here", 20) == (2, 75)
    assert count_tokens(cond, "a cat # a long comment here", 20, strip_comments=False) == (7, 75)
    # Emphasis syntax is not counted, except in "None" mode.
    assert count_tokens(cond, "(a cat:1.2)", 20) == (2, 75)
    assert count_tokens(make(sd1, emphasis="None"), "(a cat:1.2)", 20) == (8, 75)
    assert target_token_count(151) == 225


def test_novelai_curly_emphasis_is_optional() -> None:
    """{x} is literal text by default (as A1111); with the setting it weighs x by 1.05 like (x:1.05)."""
    from modules.conditioning import ConditioningOptions, TextConditioner
    from tests.fixtures.tiny_models import build_tiny_components

    comps = build_tiny_components("sd1")

    class Pipe:
        tokenizer = comps["tokenizer"]
        text_encoder = comps["text_encoder"]

    plain = TextConditioner(Pipe, "sd1", ConditioningOptions(emphasis="No norm"))
    curly = TextConditioner(Pipe, "sd1", ConditioningOptions(emphasis="No norm", curly_emphasis=True))
    weighted = plain.get_learned_conditioning(["a (cat:1.05)"])
    assert torch.equal(curly.get_learned_conditioning(["a {cat}"]), weighted)
    assert not torch.equal(plain.get_learned_conditioning(["a {cat}"]), weighted)


def test_overflowing_weights_stay_finite() -> None:
    from modules.conditioning import ConditioningOptions, TextConditioner
    from tests.fixtures.tiny_models import build_tiny_components

    comps = build_tiny_components("sd1")

    class Pipe:
        tokenizer = comps["tokenizer"]
        text_encoder = comps["text_encoder"]

    for emphasis in ("Original", "No norm"):
        cond = TextConditioner(Pipe, "sd1", ConditioningOptions(emphasis=emphasis))
        for text in ("(" * 5000 + "cat" + ")" * 5000, "(cat:1e30)", "[" * 3000 + "cat" + "]" * 3000):
            assert torch.isfinite(cond.get_learned_conditioning([text])).all(), (emphasis, text[:10])
