"""Infotext: exact A1111 layout and quoting, parsing of hand-made A1111 infotexts, round trips."""

from __future__ import annotations

import random

import pytest

from modules.infotext import (
    INFOTEXT_KEY_ORDER,
    InfotextError,
    create_infotext,
    create_params_line,
    ordered_params,
    parse_generation_parameters,
    parse_version,
    quote,
    split_parsed,
    split_sampler_and_schedule,
    unquote,
)

# A txt2img + hires fix + Lora infotext as A1111 v1.10.1 writes it (layout from reference section 4).
A1111_HIRES = (
    "masterpiece, 1girl, <lora:detail:0.6>, (blue eyes:1.2)\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3263915430, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    'Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Lora hashes: "detail: 0123456789ab, '
    'other: ba9876543210", TI hashes: "easynegative: c74b4e810b03", Version: v1.10.1'
)


# ----------------------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Euler a", "Euler a"),
        (7, "7"),
        (7.0, "7.0"),
        (True, "True"),
        ("a, b", '"a, b"'),
        ("k: v", '"k: v"'),
        ("line1\nline2", '"line1\\nline2"'),
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        ("日本, 猫", '"日本, 猫"'),  # ensure_ascii=False like A1111
        ({"model": "abc", "lora:x": "def"}, '{"model": "abc", "lora:x": "def"}'),
        ('"starts with quote"', '"\\"starts with quote\\""'),
    ],
)
def test_quote(value, expected):
    assert quote(value) == expected


def test_unquote_decodes_json_strings_only():
    assert unquote('"a, b"') == "a, b"
    assert unquote('"line\\nbreak"') == "line\nbreak"
    assert unquote("plain") == "plain"
    assert unquote('"broken \\x"') == '"broken \\x"'  # invalid JSON: returned as is
    assert unquote('"') == '"'
    assert unquote("") == ""


# ----------------------------------------------------------------------------------------- writing


def test_create_infotext_exact_layout():
    params = {
        "Steps": 20,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7,
        "Seed": 1234,
        "Size": "512x512",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Variation seed": None,  # omitted
        "Lora hashes": "a: 0123456789ab, b: ba9876543210",
        "Version": "v1.10.1",
    }
    text = create_infotext("a photo of a cat\nwith two lines", "blurry", params)
    assert text == (
        "a photo of a cat\nwith two lines\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 0123456789ab, b: ba9876543210", '
        "Version: v1.10.1"
    )


def test_create_infotext_without_negative_and_with_bare_flag():
    text = create_infotext("cat", "", {"Steps": 5, "Sampler": "Euler", "Hires fix": "Hires fix", "Seed": 1})
    assert text == "cat\nSteps: 5, Sampler: Euler, Hires fix, Seed: 1"
    assert create_infotext("", None, {"Steps": 5}) == "Steps: 5"  # stripped like A1111


def test_create_infotext_rejects_multiline_key():
    with pytest.raises(InfotextError, match="single-line"):
        create_params_line({"Bad\nkey": 1})


def test_key_order_constant_matches_reference():
    assert INFOTEXT_KEY_ORDER[:6] == ("Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed")
    assert INFOTEXT_KEY_ORDER[-2:] == ("Version", "User")
    assert INFOTEXT_KEY_ORDER.index("Model hash") < INFOTEXT_KEY_ORDER.index("VAE hash")
    assert INFOTEXT_KEY_ORDER.index("Denoising strength") < INFOTEXT_KEY_ORDER.index("Clip skip")


def test_ordered_params_puts_extras_between_tiling_and_version():
    fixed = {"Seed": 1, "Version": "v1.10.1", "Steps": 20, "CFG scale": 7, "Sampler": "Euler", "RNG": "CPU"}
    extra = {"Hires upscale": 2, "Denoising strength": 0.5, "Lora hashes": "x: 1"}
    result = ordered_params(fixed, extra, user="bob")
    assert list(result) == [
        "Steps", "Sampler", "CFG scale", "Seed", "RNG", "Hires upscale", "Denoising strength", "Lora hashes",
        "Version", "User",
    ]  # fmt: skip
    fixed["Denoising strength"] = 0.7
    result = ordered_params(fixed, extra)
    assert list(result).index("Denoising strength") < list(result).index("RNG")  # fixed slot wins
    assert result["Denoising strength"] == 0.5  # but the extra value, as dict.update does


# ----------------------------------------------------------------------------------------- parsing


def test_parse_real_a1111_infotext():
    res = parse_generation_parameters(A1111_HIRES)
    assert res["Prompt"] == "masterpiece, 1girl, <lora:detail:0.6>, (blue eyes:1.2)"
    assert res["Negative prompt"] == "lowres, bad anatomy"
    assert res["Steps"] == "28"  # values stay strings, as in A1111
    assert res["Sampler"] == "DPM++ 2M"
    assert res["Schedule type"] == "Karras"
    assert res["CFG scale"] == "7"
    assert res["Seed"] == "3263915430"
    assert (res["Size-1"], res["Size-2"]) == ("512", "768")
    assert "Size" not in res
    assert res["VAE"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert res["Clip skip"] == "2"
    assert res["Lora hashes"] == "detail: 0123456789ab, other: ba9876543210"
    assert res["TI hashes"] == "easynegative: c74b4e810b03"
    assert res["Hires upscale"] == "2"
    assert res["Version"] == "v1.10.1"
    # defaults A1111 fills in, with A1111's types
    assert res["Hires resize-1"] == 0 and res["Hires resize-2"] == 0
    assert res["Hires sampler"] == "Use same sampler"
    assert res["RNG"] == "GPU"
    assert res["Masked area padding"] == 32
    assert res["Emphasis"] == "Original"  # the prompt uses (x:1.2)
    assert res["Refiner switch by sampling steps"] is False
    assert "Downcast alphas_cumprod" not in res  # v1.10.1 is new enough


def test_parse_multiline_prompt_and_negative():
    text = (
        "line one of the prompt\n"
        "line two, with: a colon\n"
        "Negative prompt: neg line one\n"
        "neg line two\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 5, Size: 512x512"
    )
    res = parse_generation_parameters(text)
    assert res["Prompt"] == "line one of the prompt\nline two, with: a colon"
    assert res["Negative prompt"] == "neg line one\nneg line two"
    assert res["CFG scale"] == "7.5"
    assert res["Schedule type"] == "Automatic"
    assert "Emphasis" not in res


def test_last_line_needs_three_pairs_to_be_parameters():
    res = parse_generation_parameters("a cat\nstyle: anime, mood: calm")
    assert res["Prompt"] == "a cat\nstyle: anime, mood: calm"
    assert "style" not in res
    res = parse_generation_parameters("a cat\nstyle: anime, mood: calm, light: soft")
    assert res["Prompt"] == "a cat"
    assert res["style"] == "anime"


def test_parse_prompt_only_and_params_only():
    res = parse_generation_parameters("just a prompt")
    assert res["Prompt"] == "just a prompt" and res["Negative prompt"] == ""
    res = parse_generation_parameters("Steps: 20, Sampler: Euler, Seed: 1")
    assert res["Prompt"] == "" and res["Steps"] == "20"


def test_parse_civitai_hashes_json_object():
    text = (
        "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
        'Hashes: {"model": "6ce0161689", "lora:detail": "0123456789ab"}, Version: v1.10.1'
    )
    res = parse_generation_parameters(text)
    assert res["Hashes"] == {"model": "6ce0161689", "lora:detail": "0123456789ab"}
    assert res["Version"] == "v1.10.1"


def test_quoted_value_with_escapes_and_newline():
    text = 'p\nSteps: 1, Sampler: Euler, Seed: 2, Hires prompt: "line1\\nline2, \\"q\\"", CFG scale: 3'
    res = parse_generation_parameters(text)
    assert res["Hires prompt"] == 'line1\nline2, "q"'
    assert res["CFG scale"] == "3"


def test_old_combined_sampler_names_are_split():
    text = "a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, Version: v1.5.1"
    res = parse_generation_parameters(text)
    assert res["Sampler"] == "DPM++ 2M"
    assert res["Schedule type"] == "Karras"
    assert list(res).index("Schedule type") == list(res).index("Sampler") + 1
    assert res["Downcast alphas_cumprod"] is True  # older than v1.7.0-225
    assert split_sampler_and_schedule("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_sampler_and_schedule("Euler a SGMUniform") == ("Euler a", "SGM Uniform")
    assert split_sampler_and_schedule("DPM++ SDE karras") == ("DPM++ SDE", "Karras")
    assert split_sampler_and_schedule("My Sampler Karras") == ("My Sampler Karras", None)  # unknown: kept
    assert split_sampler_and_schedule("Euler a") == ("Euler a", None)


def test_hires_sampler_combined_name_split():
    text = "x\nSteps: 20, Sampler: Euler, Seed: 1, Hires sampler: DPM++ 2M SDE Karras"
    res = parse_generation_parameters(text)
    assert res["Hires sampler"] == "DPM++ 2M SDE"
    assert res["Hires schedule type"] == "Karras"


def test_version_backcompat():
    old = "a [cat:dog:0.5]\nSteps: 20, Sampler: DDIM, Seed: 1, Version: v1.5.2"
    res = parse_generation_parameters(old)
    assert res["Old prompt editing timelines"] is True
    assert res["Pad conds v0"] is True
    assert res["Downcast alphas_cumprod"] is True
    assert "Old prompt editing timelines" not in parse_generation_parameters(old, auto_backcompat=False)
    new = parse_generation_parameters("a [cat:dog:0.5]\nSteps: 20, Sampler: DDIM, Seed: 1, Version: v1.7.0-225-gabc")
    assert "Downcast alphas_cumprod" not in new and "Pad conds v0" not in new
    refiner = parse_generation_parameters("x\nSteps: 1, Sampler: Euler, Seed: 1, Refiner: sdxl_ref, Version: v1.7.0")
    assert refiner["Refiner switch by sampling steps"] is True
    assert parse_version("v1.6.0-RC-28-gabc") < parse_version("1.6.0")
    assert parse_version("f2.0.1v1.10.1-previous-1") is None


def test_old_first_pass_size_converted():
    text = "x\nSteps: 20, Sampler: Euler, Seed: 1, Size: 1024x1024, First pass size: 0x0"
    res = parse_generation_parameters(text)
    assert (res["Size-1"], res["Size-2"]) == (512, 512)  # about 512*512 pixels, multiples of 64
    assert (res["Hires resize-1"], res["Hires resize-2"]) == (1024, 1024)
    text = "x\nSteps: 20, Sampler: Euler, Seed: 1, Size: 1024x768, First pass size: 640x448"
    res = parse_generation_parameters(text)
    assert (res["Size-1"], res["Size-2"], res["Hires resize-1"]) == (640, 448, 1024)


def test_hypernet_appended_and_skip_fields():
    text = "x\nSteps: 20, Sampler: Euler, Seed: 1, Hypernet: anime, Hypernet strength: 0.5"
    res = parse_generation_parameters(text, skip_fields=["Seed", "Steps"])
    assert res["Prompt"] == "x<hypernet:anime:0.5>"
    assert "Seed" not in res and "Steps" not in res


def test_apply_defaults_false_returns_only_the_text():
    res = parse_generation_parameters("x\nSteps: 20, Sampler: Euler a, Seed: 1", apply_defaults=False)
    assert res == {"Prompt": "x", "Negative prompt": "", "Steps": "20", "Sampler": "Euler a", "Seed": "1"}


def test_fp8_cache_default_only_with_fp8():
    res = parse_generation_parameters("x\nSteps: 1, Sampler: Euler, Seed: 1, FP8 weight: Enable for SDXL")
    assert res["Cache FP16 weight for LoRA"] is False
    assert "Cache FP16 weight for LoRA" not in parse_generation_parameters("x\nSteps: 1, Sampler: Euler, Seed: 1")


def test_parse_rejects_non_string():
    with pytest.raises(InfotextError, match="must be a string"):
        parse_generation_parameters(None)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- round trips


def _round_trip(prompt, negative, params):
    text = create_infotext(prompt, negative, params)
    parsed = parse_generation_parameters(text, apply_defaults=False)
    p2, n2, params2 = split_parsed(parsed)
    return text, create_infotext(p2, n2, params2)


def test_round_trip_reference_infotext():
    parsed = parse_generation_parameters(A1111_HIRES, apply_defaults=False)
    assert create_infotext(*split_parsed(parsed)) == A1111_HIRES


@pytest.mark.parametrize(
    "params",
    [
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 1, "Size": "512x768"},
        {"Steps": 30, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "Seed": 99, "Hires resize": "1024x1536"},
        {"Steps": 1, "Seed": 2, "Hires prompt": 'multi\nline, "quoted" \\ back', "Sampler": "LCM"},
        {"Steps": 1, "Seed": 2, "Sampler": "Euler", "Hashes": {"model": "abc", "lora:x": "d, e"}},
        {"Steps": 1, "Seed": 2, "Sampler": "Euler", "X Values": "1, 2, 3", "Tiling": "Tiling"},
        {"Steps": 1, "Seed": 2, "Sampler": "Euler", "Model": "猫の絵: v2", "User": "ünïcödé"},
    ],
)
def test_round_trip_create_parse_create(params):
    text, again = _round_trip("a cat, (blue:1.1)\nsecond line", "bad, ugly\nworse", params)
    assert again == text


def test_round_trip_random_values():
    rng = random.Random(1234)
    alphabet = "abcXYZ 0123,:\n\"\\'{}[]<>|-_/é猫"
    for _ in range(200):
        params = {"Steps": rng.randint(1, 150), "Sampler": "Euler", "Seed": rng.randint(0, 2**32)}
        for i in range(rng.randint(0, 4)):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).strip()
            if value:
                params[f"Key {i}"] = value
        text, again = _round_trip("prompt", "neg", params)
        parsed = parse_generation_parameters(text, apply_defaults=False)
        for key, value in params.items():
            assert str(parsed[key]) == str(value), (text, key)
        assert again == text
