"""The A1111 prompt language: every case lists an input and the exact output A1111 v1.10 gives for it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from modules import prompt_parser as pp
from modules.extra_networks_syntax import ExtraNetworkParams, extract_extra_networks, parse_prompt, parse_prompts

ROOT = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------------------------------------------
# Step schedules. The first block is A1111's doctests (10 steps); the rest was checked against A1111's grammar.
# ----------------------------------------------------------------------------------------------------------------

ALT_AB = [[1, "a"], [2, "(b:1.1)"], [3, "a"], [4, "(b:1.1)"], [5, "a"], [6, "(b:1.1)"], [7, "a"], [8, "(b:1.1)"]]
SCHEDULE_DOCTESTS = [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", ALT_AB + [[9, "a"], [10, "(b:1.1)"]]),
    (
        "[fe|]male",
        [[1, "female"], [2, "male"], [3, "female"], [4, "male"], [5, "female"]]
        + [[6, "male"], [7, "female"], [8, "male"], [9, "female"], [10, "male"]],
    ),
    (
        "[fe|||]male",
        [[1, "female"], [2, "male"], [3, "male"], [4, "male"], [5, "female"]]
        + [[6, "male"], [7, "male"], [8, "male"], [9, "female"], [10, "male"]],
    ),
    # A1111's documented case: a `|` inside a schedule's parts is text (its lark grammar rejects the prompt and
    # leaves it literal, against its own docstring; we follow the documented result, see README).
    ("a [{b|d{:.5] c", [[5, "a  c"], [10, "a {b|d{ c"]]),
]

LANDSCAPE = (
    "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
    "[: in background:0.25] [shoddy:masterful:0.5]"
)
SCHEDULE_CASES = [
    ("[a|b|c]", 6, [[1, "a"], [2, "b"], [3, "c"], [4, "a"], [5, "b"], [6, "c"]]),
    ("a [b:c:1e9]", 10, [[10, "a b"]]),
    ("a [b:-3] c", 10, [[10, "a b c"]]),
    ("a [b:0] c", 10, [[10, "a b c"]]),
    ("[a:b:0.5]", 10, [[5, "a"], [10, "b"]]),
    ("[a:b:1.0]", 10, [[10, "a"]]),
    ("[a:b:+2]", 10, [[2, "a"], [10, "b"]]),
    ("[a:b:2.]", 10, [[10, "a"]]),
    ("[a:b:2e0]", 10, [[2, "a"], [10, "b"]]),
    ("[a: b :\t3 ]", 10, [[3, "a"], [10, " b "]]),
    ("[a:b:3 x]", 10, [[10, "[a:b:3 x]"]]),
    ("[a:b:]", 10, [[10, "[a:b:]"]]),
    ("[:b:3]", 10, [[3, ""], [10, "b"]]),
    ("[a::3]", 10, [[3, "a"], [10, ""]]),
    ("[::3]", 10, [[3, ""], [10, ""]]),
    ("a | b [c:3]", 10, [[10, "a | b [c:3]"]]),
    ("[a|b] | c", 10, [[10, "[a|b] | c"]]),
    ("[a:b:3] \\", 10, [[10, "[a:b:3] \\"]]),
    ("[a:b:3] \\\n", 10, [[10, "[a:b:3] \\\n"]]),
    ("\\[a:b:3]", 10, [[10, "\\[a:b:3]"]]),
    ("[a\\:b:3]", 10, [[3, ""], [10, "a\\:b"]]),
    ("(a:[b:c:2])", 10, [[2, "(a:b)"], [10, "(a:c)"]]),
    ("[(a:b:c):3]", 10, [[10, "[(a:b:c):3]"]]),
    ("[a:[b:3]:5]", 10, [[3, "a"], [5, "a"], [10, "b"]]),
    ("[[a|b]:3]", 4, [[1, ""], [2, ""], [3, ""], [4, "b"]]),
    ("[a|[b|c]]", 6, [[1, "a"], [2, "c"], [3, "a"], [4, "c"], [5, "a"], [6, "c"]]),
    ("[|]x", 4, [[1, "x"], [2, "x"], [3, "x"], [4, "x"]]),
    ("[a:b:c:3]", 10, [[10, "[a:b:c:3]"]]),
    ("[a|b:3]", 10, [[3, ""], [10, "a|b"]]),  # as the documented `[{b|d{:.5]`
    ("(a|b) [c:3]", 10, [[10, "(a|b) [c:3]"]]),
    ("([b:3]:1.2)", 10, [[3, "(:1.2)"], [10, "(b:1.2)"]]),
    ("(a] [b:3])", 10, [[3, "(a] )"], [10, "(a] b)"]]),
    ("[a:b:1.5] c", 10, [[10, "a c"]]),
    ("[a:b:0.25]", 4, [[1, "a"], [4, "b"]]),
    ("{a|b} [x|y]", 4, [[4, "{a|b} [x|y]"]]),
    ("[a:b:3][c:d:7]", 10, [[3, "ac"], [7, "bc"], [10, "bd"]]),
    ("[ [a:3] ]", 10, [[3, "[  ]"], [10, "[ a ]"]]),
    ("[a\nb:c:2]", 10, [[2, "a\nb"], [10, "c"]]),
    ("", 10, [[10, ""]]),
    (
        LANDSCAPE,
        100,
        [
            [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
            [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
            [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
            [75, "fantasy landscape with a lake and an oak in background masterful"],
            [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
        ],
    ),
]

# (prompt, base steps, hires steps, schedule of the hires pass)
HIRES_CASES = [
    ("a [b:.5] c", 10, 10, [[10, "a b c"]]),  # A1111 doctest
    ("a [b:1.5] c", 10, 10, [[5, "a  c"], [10, "a b c"]]),  # A1111 doctest
    ("[a:b:15]", 10, 20, [[5, "a"], [20, "b"]]),
    ("[a:b:5]", 10, 20, [[20, "b"]]),
    ("[a:b:0.5]", 10, 20, [[20, "b"]]),
    ("[a|b]", 10, 4, [[1, "a"], [2, "b"], [3, "a"], [4, "b"]]),
    ("[a:b:1.25]", 10, 8, [[2, "a"], [8, "b"]]),
]

# use_old_scheduling=True: below 1 is a fraction, otherwise a step; no hires offset.
OLD_SCHEDULING_CASES = [
    ("[a:b:0.5]", 10, None, [[5, "a"], [10, "b"]]),
    ("[a:b:1.0]", 10, None, [[1, "a"], [10, "b"]]),
    ("[a:b:1.5]", 10, None, [[1, "a"], [10, "b"]]),
    ("[a:b:15]", 10, 20, [[10, "a"]]),
    ("[a:b:3]", 10, 20, [[3, "a"], [10, "b"]]),
    ("[a:b:.25]", 8, None, [[2, "a"], [8, "b"]]),
]


@pytest.mark.parametrize(("prompt", "expected"), SCHEDULE_DOCTESTS)
def test_schedule_doctests(prompt: str, expected: list) -> None:
    assert pp.get_learned_conditioning_prompt_schedules([prompt], 10) == [expected]


@pytest.mark.parametrize(("prompt", "steps", "expected"), SCHEDULE_CASES)
def test_schedules(prompt: str, steps: int, expected: list) -> None:
    assert pp.get_learned_conditioning_prompt_schedules([prompt], steps)[0] == expected


@pytest.mark.parametrize(("prompt", "base", "hires", "expected"), HIRES_CASES)
def test_hires_timeline(prompt: str, base: int, hires: int, expected: list) -> None:
    assert pp.get_learned_conditioning_prompt_schedules([prompt], base, hires)[0] == expected


@pytest.mark.parametrize(("prompt", "base", "hires", "expected"), OLD_SCHEDULING_CASES)
def test_old_scheduling(prompt: str, base: int, hires: int | None, expected: list) -> None:
    assert pp.get_learned_conditioning_prompt_schedules([prompt], base, hires, use_old_scheduling=True)[0] == expected


def test_schedules_keep_batch_order_and_share_identical_prompts() -> None:
    result = pp.get_learned_conditioning_prompt_schedules(["[a:b:2]", "c", "[a:b:2]"], 4)
    assert result == [[[2, "a"], [4, "b"]], [[4, "c"]], [[2, "a"], [4, "b"]]]
    assert result[0] is result[2]


# ----------------------------------------------------------------------------------------------------------------
# Emphasis.
# ----------------------------------------------------------------------------------------------------------------

ATTENTION_DOCTESTS = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ["a ", 1.0],
            ["house", 1.5730000000000004],
            [" ", 1.1],
            ["on", 1.0],
            [" a ", 1.1],
            ["hill", 0.55],
            [", sun, ", 1.1],
            ["sky", 1.4641000000000006],
            [".", 1.1],
        ],
    ),
]

ATTENTION_CASES = [
    ("", [["", 1.0]]),
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("(a BREAK b)", [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]),
    ("aBREAK b", [["aBREAK b", 1.0]]),
    ("a BREAKb", [["a BREAKb", 1.0]]),
    ("a break b", [["a break b", 1.0]]),
    ("BREAK", [["", 1.0], ["BREAK", -1], ["", 1.0]]),
    ("a\nBREAK\nb", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("a BREAK BREAK b", [["a", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("\\\\", [["\\", 1.0]]),
    ("\\x", [["x", 1.0]]),
    (")a(", [[")a", 1.0]]),
    ("]a[", [["]a", 1.0]]),
    ("(a: 1.5 )", [["a", 1.5]]),
    ("a:1.2)", [["a:1.2)", 1.0]]),
    ("(a:-1)", [["a", -1.0]]),
    ("((a)(b:0.5))", [["a", 1.2100000000000002], ["b", 0.55]]),
    ("(a:1.2)(b:1.2)", [["ab", 1.2]]),
    ("(a)\\(b)", [["a", 1.1], ["(b)", 1.0]]),
    ("[[a]]", [["a", 0.8264462809917354]]),
    ("[a:1.5)", [["a:1.5)", 0.9090909090909091]]),
    ("(a:.5)", [["a", 0.5]]),
    ("(a:5.)", [["a", 5.0]]),
    ("(a:1e3)", [["a:1e3", 1.1]]),
    ("a: b", [["a: b", 1.0]]),
    ("(a:b)", [["a:b", 1.1]]),
    ("((a:1.5):2)", [["a", 3.0]]),
    ("\\(a\\)", [["(a)", 1.0]]),
    ("(a[b)c]d", [["a", 1.1], ["b", 1.0], ["c", 0.9090909090909091], ["d", 1.0]]),
    ("{a}", [["{a}", 1.0]]),
    ("(a", [["a", 1.1]]),
    ("[a", [["a", 0.9090909090909091]]),
    ("a)b]", [["a)b]", 1.0]]),
    ("(a(b(c", [["a", 1.1], ["b", 1.2100000000000002], ["c", 1.3310000000000004]]),
    ("[a(b[c", [["a", 0.9090909090909091], ["b", 1.0], ["c", 0.9090909090909091]]),
    ("(a\\)", [["a)", 1.1]]),
    ("\\", [["", 1.0]]),
    ("(", [["", 1.0]]),
    ("()", [["", 1.0]]),
    ("(abc:3.12)", [["abc", 3.12]]),
    ("[abc]", [["abc", 0.9090909090909091]]),
    ("\\[abc\\]", [["[abc]", 1.0]]),
    ("(a:0)", [["a", 0.0]]),
    ("<lora:x:0.5> (a)", [["<lora:x:0.5> ", 1.0], ["a", 1.1]]),
]


@pytest.mark.parametrize(("text", "expected"), ATTENTION_DOCTESTS + ATTENTION_CASES)
def test_attention(text: str, expected: list) -> None:
    assert pp.parse_prompt_attention(text) == expected


NAI_CASES = [
    ("{a}", [["a", 1.05]]),
    ("{{a}}", [["a", 1.1025]]),
    ("({a})", [["a", 1.1550000000000002]]),
    ("{a", [["a", 1.05]]),
    ("a}", [["a}", 1.0]]),
    ("\\{a\\}", [["{a}", 1.0]]),
    ("{a} (b) [c]", [["a", 1.05], [" ", 1.0], ["b", 1.1], [" ", 1.0], ["c", 0.9090909090909091]]),
    ("{a)}", [["a)", 1.05]]),
]


@pytest.mark.parametrize(("text", "expected"), NAI_CASES)
def test_novelai_curly_mode(text: str, expected: list) -> None:
    assert pp.parse_prompt_attention(text, curly=True) == expected
    assert pp.parse_prompt_attention_nai(text) == expected


def test_curly_mode_is_off_by_default() -> None:
    assert pp.parse_prompt_attention("{{a}}") == [["{{a}}", 1.0]]


# ----------------------------------------------------------------------------------------------------------------
# AND (composable diffusion).
# ----------------------------------------------------------------------------------------------------------------

# (prompt, [(index, weight), ...], flat list of sub-prompts)
AND_CASES = [
    ("a cat :1.2 AND a dog AND a penguin :2.2", [(0, 1.2), (1, 1.0), (2, 2.2)], ["a cat", " a dog", " a penguin"]),
    ("a AND b:-0.5", [(0, 1.0), (1, -0.5)], ["a", " b"]),
    ("a:1.2.3", [(0, 1.0)], ["a:1.2.3"]),
    ("x :.5", [(0, 0.5)], ["x"]),
    ("ANDROID AND and", [(0, 1.0), (1, 1.0)], ["ANDROID", " and"]),
    ("a AND  AND b", [(0, 1.0), (1, 1.0), (2, 1.0)], ["a", "", " b"]),
    ("a\n:\n1.5\n", [(0, 1.5)], ["a"]),
    ("a: 1. ", [(0, 1.0)], ["a"]),
    ("a:+3 b", [(0, 1.0)], ["a:+3 b"]),
    (" lead : 2 ", [(0, 2.0)], [" lead"]),
    ("a :1 :2", [(0, 2.0)], ["a :1"]),
    ("(a:1.2) :1.2", [(0, 1.2)], ["(a:1.2)"]),
    ("a AND a :2 AND a", [(0, 1.0), (1, 2.0), (1, 1.0)], ["a", " a"]),
    ("", [(0, 1.0)], [""]),
]


@pytest.mark.parametrize(("prompt", "indexes", "flat"), AND_CASES)
def test_and_split(prompt: str, indexes: list, flat: list) -> None:
    res_indexes, flat_list, prompt_indexes = pp.get_multicond_prompt_list([prompt])
    assert res_indexes == [indexes]
    assert list(flat_list) == flat
    assert prompt_indexes == {text: i for i, text in enumerate(flat)}


def test_and_split_shares_sub_prompts_across_the_batch() -> None:
    res_indexes, flat_list, _ = pp.get_multicond_prompt_list(["cat AND dog :0.5", "dog AND bird"])
    assert res_indexes == [[(0, 1.0), (1, 0.5)], [(2, 1.0), (3, 1.0)]]
    assert list(flat_list) == ["cat", " dog", "dog", " bird"]
    assert isinstance(flat_list, pp.SdConditioning)


# ----------------------------------------------------------------------------------------------------------------
# Comments, extra-network tags, bracket checker.
# ----------------------------------------------------------------------------------------------------------------

COMMENT_CASES = [
    ("a\n# comment\nb", "a\nb"),
    ("# first\nb", "\nb"),
    ("a # trailing\nb", "a \nb"),
    ("a # end", "a \n"),
    ("a\n#x\n#y\nb", "a\n\nb"),
    ("no comment", "no comment"),
    ("#only", "\n"),
    ("a, (b:1.2) # why\n# line\nc # x\n", "a, (b:1.2) \nc \n"),
    ("C# and F#", "C\n"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), COMMENT_CASES)
def test_strip_comments(text: str, expected: str) -> None:
    assert pp.strip_comments(text) == expected


# (prompt, prompt without tags, {type: [(items, positional, named), ...]})
EXTRA_NETWORK_CASES = [
    ("<lora:name:0.8>", "", {"lora": [(["name", "0.8"], ["name", "0.8"], {})]}),
    ("<lora:name:1:0.5>", "", {"lora": [(["name", "1", "0.5"], ["name", "1", "0.5"], {})]}),
    (
        "a <lora:name:unet=0.3:te=1:dyn=8> b",
        "a  b",
        {"lora": [(["name", "unet=0.3", "te=1", "dyn=8"], ["name"], {"unet": "0.3", "te": "1", "dyn": "8"})]},
    ),
    ("<lyco:old:0.7>x", "x", {"lyco": [(["old", "0.7"], ["old", "0.7"], {})]}),
    ("<hypernet:h:0.5>", "", {"hypernet": [(["h", "0.5"], ["h", "0.5"], {})]}),
    ("<lora:name:abc>", "", {"lora": [(["name", "abc"], ["name", "abc"], {})]}),
    (
        "a <lora:x:1>, b <hypernet:y:2>, <lora:z:0.1>",
        "a , b , ",
        {
            "lora": [(["x", "1"], ["x", "1"], {}), (["z", "0.1"], ["z", "0.1"], {})],
            "hypernet": [(["y", "2"], ["y", "2"], {})],
        },
    ),
    ("<lora:x>", "", {"lora": [(["x"], ["x"], {})]}),
    ("<lora:>", "<lora:>", {}),
    ("<lo-ra:x:1>", "<lo-ra:x:1>", {}),
    ("<lora:a:b=c=d>", "", {"lora": [(["a", "b=c=d"], ["a", "b=c=d"], {})]}),
    ("<lora:a:=1:k=>", "", {"lora": [(["a", "=1", "k="], ["a"], {"": "1", "k": ""})]}),
    ("<lora:a<b:1>", "", {"lora": [(["a<b", "1"], ["a<b", "1"], {})]}),
    ("(<lora:a:1>:1.2)", "(:1.2)", {"lora": [(["a", "1"], ["a", "1"], {})]}),
]


@pytest.mark.parametrize(("prompt", "stripped", "expected"), EXTRA_NETWORK_CASES)
def test_extra_network_tags(prompt: str, stripped: str, expected: dict) -> None:
    text, found = extract_extra_networks(prompt)
    assert text == stripped
    as_tuples = {name: [(p.items, p.positional, p.named) for p in params] for name, params in found.items()}
    assert as_tuples == expected
    assert pp.extract_extra_networks(prompt)[0] == stripped
    a1111_text, a1111_found = parse_prompt(prompt)
    assert a1111_text == stripped and dict(a1111_found) == found


def test_extra_network_params_compare_by_items() -> None:
    assert ExtraNetworkParams(["a", "1"]) == ExtraNetworkParams(["a", "1"])
    assert ExtraNetworkParams(["a", "1"]) != ExtraNetworkParams(["a", "2"])
    assert ExtraNetworkParams().items == [] and ExtraNetworkParams().named == {}


def test_parse_prompts_returns_the_first_prompts_networks_only() -> None:
    texts, found = parse_prompts(["<lora:a:1> x", "<lora:b:1> y"])
    assert texts == [" x", " y"]
    assert found == {"lora": [ExtraNetworkParams(["a", "1"])]}


BRACKET_CASES = [
    ("(a) [b] {c}", []),
    ("(a", ["(...) - Detected 1 opening and 0 closing round brackets."]),
    ("a))", ["(...) - Detected 0 opening and 2 closing round brackets."]),
    (
        "[a {b",
        [
            "[...] - Detected 1 opening and 0 closing square brackets.",
            "{...} - Detected 1 opening and 0 closing curly brackets.",
        ],
    ),
    ("\\(a", []),
    ("\\\\(a", ["(...) - Detected 1 opening and 0 closing round brackets."]),
    (")(", []),
]


@pytest.mark.parametrize(("text", "expected"), BRACKET_CASES)
def test_check_brackets(text: str, expected: list) -> None:
    assert pp.check_brackets(text) == expected


# ----------------------------------------------------------------------------------------------------------------
# Bad input: never a crash, never slow.
# ----------------------------------------------------------------------------------------------------------------

CIVITAI_CHUNK = (
    "masterpiece, (best quality:1.2), [cat:dog:0.5], ((detailed)), [red|blue] eyes, <lora:x:0.8> BREAK "
    "\\(escaped\\) # note\n"
)
BIG_PROMPT = (CIVITAI_CHUNK * (100_000 // len(CIVITAI_CHUNK) + 1))[:100_000]


def _timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def _best_time(func, *args) -> float:
    return min(_timed(func, *args)[1] for _ in range(3))


def _growth(func, small, big) -> float:
    """How much longer `big` takes than `small` (best of 3 each). A ratio measured in the same run, not a
    wall-clock limit, so a busy machine does not fail it. With 100x the input a linear parser takes ~100x (up to a
    few times more once the strings outgrow the CPU caches), a quadratic one ~10,000x; A1111's backtracking
    regexes take minutes at 100k characters, over 10^5 times their 1k-character time."""
    return _best_time(func, big) / max(_best_time(func, small), 1e-6)


LINEAR_BOUND = 1500  # 100x the input: linear ~100-500x, quadratic ~10^4x


PARSERS = {
    "schedules": lambda t: pp.get_learned_conditioning_prompt_schedules([t], 20),
    "attention": pp.parse_prompt_attention,
    "multicond": lambda t: pp.get_multicond_prompt_list([t]),
    "comments": pp.strip_comments,
    "networks": extract_extra_networks,
}


@pytest.mark.parametrize("name", list(PARSERS))
def test_100k_character_prompt_parses_in_linear_time(name: str) -> None:
    assert _growth(PARSERS[name], BIG_PROMPT[:1_000], BIG_PROMPT) < LINEAR_BOUND


def test_100k_character_prompt_is_parsed_right() -> None:
    schedules = pp.get_learned_conditioning_prompt_schedules([BIG_PROMPT], 20)
    attention = pp.parse_prompt_attention(BIG_PROMPT)
    multicond = pp.get_multicond_prompt_list([BIG_PROMPT])
    stripped = pp.strip_comments(BIG_PROMPT)
    networks = extract_extra_networks(BIG_PROMPT)
    assert [step for step, _ in schedules[0]] == list(range(1, 21))  # the alternation changes every step
    assert schedules[0][0][1].count("cat") > 500 and "[cat" not in schedules[0][0][1]
    assert sum(1 for piece in attention if piece == ["BREAK", -1]) > 500
    assert multicond[0] == [[(0, 1.0)]]
    assert "#" not in stripped
    assert len(networks[1]["lora"]) > 500


@pytest.mark.parametrize(
    "make",
    [lambda n: " " * n + "x", lambda n: "a" + " " * (n // 2) + ":" + " " * (n // 2), lambda n: " " * n + "x BREAK",
     lambda n: ":" * n],
)
def test_long_blank_runs_do_not_backtrack(make) -> None:
    # A1111's regexes backtrack on these (minutes at 100k characters).
    small, big = make(1_000), make(100_000)
    assert _growth(lambda t: pp.get_multicond_prompt_list([t]), small, big) < LINEAR_BOUND
    assert _growth(pp.parse_prompt_attention, small, big) < LINEAR_BOUND


def _repeated_product(factor: float, times: int) -> float:
    weight = 1.0
    for _ in range(times):
        weight *= factor
    return weight


def test_5000_nested_parentheses() -> None:
    closed = "(" * 5000 + "x" + ")" * 5000
    assert pp.parse_prompt_attention(closed) == [["x", _repeated_product(1.1, 5000)]]
    assert pp.parse_prompt_attention("(" * 5000 + "x") == [["x", _repeated_product(1.1, 5000)]]
    assert pp.get_learned_conditioning_prompt_schedules([closed], 20) == [[[20, closed]]]


def test_5000_nested_schedules_and_brackets() -> None:
    nested = "[" * 5000 + "x:3" + "]" * 5000
    assert pp.get_learned_conditioning_prompt_schedules([nested], 20) == [
        [[3, "[" * 4999 + "]" * 4999], [20, "[" * 4999 + "x" + "]" * 4999]]
    ]
    chain = "[a:" * 5000 + "b" + ":3]" * 5000
    assert pp.get_learned_conditioning_prompt_schedules([chain], 20) == [[[3, "a"], [20, "b"]]]
    alternations = "[a|" * 3000 + "b" + "]" * 3000
    result = pp.get_learned_conditioning_prompt_schedules([alternations], 4)[0]
    assert result == [[1, "a"], [2, "b"], [3, "a"], [4, "b"]]


def test_thousands_of_brackets_around_many_pieces_are_fast_and_close_to_exact() -> None:
    # 5,000 brackets each closing over up to 5,000 pieces: A1111 multiplies 12.5 million times; we use logarithms.
    text = "(a" * 5000 + ")" * 5000
    result, elapsed = _timed(pp.parse_prompt_attention, text)
    assert elapsed < 1.0
    assert [piece for piece, _ in result] == ["a"] * 5000
    for depth in (1, 2, 10, 500, 5000):
        assert result[depth - 1][1] == pytest.approx(_repeated_product(1.1, depth), rel=1e-9)
    # Deeper still, weights overflow to inf as in A1111, and equal infinities merge.
    huge = pp.parse_prompt_attention("(a" * 25_000 + ")" * 25_000)
    assert huge[-1] == ["a" * (25_000 - len(huge) + 1), float("inf")]


def test_bad_weights_and_numbers() -> None:
    assert pp.parse_prompt_attention("(x:1.2.3)") == [["x:1.2.3", 1.1]]  # A1111 raised ValueError
    assert pp.parse_prompt_attention("(x: . )") == [["x: . ", 1.1]]
    assert pp.get_learned_conditioning_prompt_schedules(["[a:b:1e9]"], 10) == [[[10, "a"]]]
    assert pp.get_learned_conditioning_prompt_schedules(["[a:b:1e999]"], 10) == [[[10, "a"]]]  # A1111: OverflowError
    assert pp.get_learned_conditioning_prompt_schedules(["[a:b:-1e999]"], 10) == [[[10, "b"]]]
    assert pp.get_learned_conditioning_prompt_schedules(["[a:b:1.5e999]"], 10, 10) == [[[10, "a"]]]


def test_nul_and_lone_surrogates_pass_through() -> None:
    assert pp.parse_prompt_attention("a\x00(b\ud800)") == [["a\x00", 1.0], ["b\ud800", 1.1]]
    assert pp.get_learned_conditioning_prompt_schedules(["[a\x00:b\udfff:3]"], 10) == [[[3, "a\x00"], [10, "b\udfff"]]]
    assert pp.get_multicond_prompt_list(["\ud800 AND \x00:2"])[0] == [[(0, 1.0), (1, 2.0)]]
    assert pp.strip_comments("\x00#\ud800\nx") == "\x00\nx"
    assert extract_extra_networks("<lora:\ud800:1>")[1]["lora"][0].items == ["\ud800", "1"]


def test_import_does_not_pull_torch() -> None:
    code = "import sys, modules.prompt_parser; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ----------------------------------------------------------------------------------------------------------------
# Conditioning holders with a model-like object (CPU tensors).
# ----------------------------------------------------------------------------------------------------------------


class _FakeModel:
    """Encodes each text as a (tokens, 2) tensor whose values identify the text; records every call."""

    def __init__(self, as_dict: bool = False) -> None:
        self.calls: list = []
        self.as_dict = as_dict

    def get_learned_conditioning(self, texts):
        import torch

        self.calls.append(texts)
        rows = [torch.full((1 + len(t) // 10, 2), float(len(t))) for t in texts]
        tokens = max(r.shape[0] for r in rows)
        batch = torch.stack([torch.cat([r, r[-1:].repeat(tokens - r.shape[0], 1)]) for r in rows])
        return {"crossattn": batch, "vector": batch[:, 0, :]} if self.as_dict else batch


def test_get_learned_conditioning_encodes_each_schedule_once() -> None:
    model = _FakeModel()
    prompts = pp.SdConditioning(["a [bb:ccc:2]", "a [bb:ccc:2]", "dddd"], width=1024, height=768)
    conds = pp.get_learned_conditioning(model, prompts, 4)
    assert len(model.calls) == 2
    assert list(model.calls[0]) == ["a bb", "a ccc"]
    assert model.calls[0].width == 1024 and model.calls[0].height == 768
    assert [c.end_at_step for c in conds[0]] == [2, 4]
    assert conds[0] is conds[1]
    assert float(conds[0][0].cond[0, 0]) == 4.0 and float(conds[0][1].cond[0, 0]) == 5.0

    batch = pp.reconstruct_cond_batch(conds, 1)
    assert batch.shape == (3, 1, 2) and batch[:, 0, 0].tolist() == [4.0, 4.0, 4.0]
    batch = pp.reconstruct_cond_batch(conds, 3)
    assert batch[:, 0, 0].tolist() == [5.0, 5.0, 4.0]


def test_dict_conditioning_and_multicond_batch() -> None:
    model = _FakeModel(as_dict=True)
    conds = pp.get_learned_conditioning(model, ["[x:yy:1]"], 2)
    batch = pp.reconstruct_cond_batch(conds, 2)
    assert isinstance(batch, pp.DictWithShape)
    assert batch.shape == (1, 1, 2) and float(batch["vector"][0, 0]) == 2.0

    model = _FakeModel()
    prompts = ["short :0.5 AND " + "long text " * 3, "[a:b:1]"]
    multi = pp.get_multicond_learned_conditioning(model, prompts, 2)
    assert multi.shape == (2,)
    assert [[part.weight for part in parts] for parts in multi.batch] == [[0.5, 1.0], [1.0]]
    conds_list, tensor = pp.reconstruct_multicond_batch(multi, 2)
    assert conds_list == [[(0, 0.5), (1, 1.0)], [(2, 1.0)]]
    # "short" (1 token) is padded to the 4 tokens of the long text by repeating its last vector.
    assert tensor.shape == (3, 4, 2)
    assert tensor[0, :, 0].tolist() == [5.0] * 4
    assert float(tensor[2, 0, 0]) == 1.0  # step 2 of "[a:b:1]" is "b"


# ----------------------------------------------------------------------------------------------------------------
# Random prompts (seeded): never an exception, and the invariants every result must satisfy.
# ----------------------------------------------------------------------------------------------------------------

_PIECES = list("ab ()[]{}:|\\\n,") + [
    "1",
    ".5",
    "-2",
    "1e9",
    "BREAK",
    "AND",
    ":1.2)",
    "<lora:x:1>",
    "#",
    "\x00",
    "\ud800",
]


def test_random_prompts_never_fail() -> None:
    import random

    rng = random.Random(1234)
    for _ in range(3000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 25)))
        schedule = pp.get_learned_conditioning_prompt_schedules([text], 8, 12)[0]
        ends = [end for end, _ in schedule]
        assert ends == sorted(set(ends)) and ends[-1] == 12
        assert all(isinstance(part, str) for _, part in schedule)
        if "[" not in text:
            assert schedule == [[12, text]]
        pieces = pp.parse_prompt_attention(text, curly=rng.random() < 0.5)
        assert pieces and all(isinstance(p, str) and isinstance(w, (int, float)) for p, w in pieces)
        assert all(pieces[i][1] != pieces[i + 1][1] for i in range(len(pieces) - 1))
        res_indexes, flat, _ = pp.get_multicond_prompt_list([text])
        assert len(res_indexes[0]) == len(pp.re_AND.split(text))
        assert all(0 <= index < len(flat) for index, _ in res_indexes[0])
        assert pp.strip_comments(text).count("#") == 0
        stripped, _ = extract_extra_networks(text)
        assert "<lora:x:1>" not in stripped
        assert isinstance(pp.check_brackets(text), list)
