"""L0 foundation: A1111's emphasis syntax (`(x)` x1.1, `[x]` /1.1, `(x:w)`, escapes, BREAK, NovelAI `{x}`),
prompt comments and the bracket check; re-exported by prompt_parser under A1111's names."""

from __future__ import annotations

import math
import re

# ---------------------------------------------------------------------------------------------------------------
# Emphasis: `(x)` x1.1, `[x]` /1.1, `(x:w)`, escapes, BREAK. Optionally NovelAI `{x}` x1.05.
# ---------------------------------------------------------------------------------------------------------------

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
CURLY_MULTIPLIER = 1.05

# Alternatives are tried in order, like A1111's tokenizer: escapes, a backslash escaping nothing (dropped), openers,
# `:number)` (blanks allowed; the number is `[+-]?[.\d]+` and may fail to convert), closers, text, a lone `:`.
_ATTENTION_TOKEN = re.compile(
    r"\\(?P<esc>[()\[\]\\])|(?P<lone>\\)|(?P<open>[(\[])|(?P<weighted>:\s*(?P<weight>[+-]?[.\d]+)\s*)\)"
    r"|(?P<close>[)\]])|(?P<text>[^\\()\[\]:]+)|(?P<colon>:)"
)
_ATTENTION_TOKEN_CURLY = re.compile(
    r"\\(?P<esc>[()\[\]{}\\])|(?P<lone>\\)|(?P<open>[(\[{])|(?P<weighted>:\s*(?P<weight>[+-]?[.\d]+)\s*)\)"
    r"|(?P<close>[)\]}])|(?P<text>[^\\()\[\]{}:]+)|(?P<colon>:)"
)
_BREAK_WORD = re.compile(r"\bBREAK\b")
_OPENER_MULTIPLIER = {"(": ROUND_MULTIPLIER, "[": SQUARE_MULTIPLIER, "{": CURLY_MULTIPLIER}
_OPENER_OF = {")": "(", "]": "[", "}": "{"}

# Above this many (entry x bracket) multiplications, weights are computed in O(n) from logarithms instead of one
# multiplication at a time. Only adversarial prompts (thousands of brackets each enclosing thousands of pieces) get
# there; their weights may then differ from A1111's in the last bits.
_EXACT_WORK_LIMIT = 2_000_000


def _apply_ranges_exactly(res: list[list], ranges: list[tuple[int, int, float]]) -> None:
    for start, end, factor in ranges:
        for i in range(start, end):
            res[i][1] *= factor


def _apply_ranges_fast(res: list[list], ranges: list[tuple[int, int, float]]) -> None:
    """Same result up to rounding: per piece, the product of every range covering it, via prefix sums of logs."""
    size = len(res) + 1
    log_sum = [0.0] * size
    negatives = [0] * size
    zeros = [0] * size
    for start, end, factor in ranges:
        if factor == 0:
            zeros[start] += 1
            zeros[end] -= 1
            continue
        log_sum[start] += math.log(abs(factor))
        log_sum[end] -= math.log(abs(factor))
        if factor < 0:
            negatives[start] += 1
            negatives[end] -= 1
    acc_log, acc_neg, acc_zero = 0.0, 0, 0
    for i, entry in enumerate(res):
        acc_log += log_sum[i]
        acc_neg += negatives[i]
        acc_zero += zeros[i]
        if acc_zero:
            entry[1] *= 0.0
            continue
        scale = math.exp(acc_log) if acc_log < 709 else math.inf
        entry[1] *= -scale if acc_neg % 2 else scale


def _split_break(text: str) -> list[str]:
    """`re.split(r"\\s*\\bBREAK\\b\\s*", text)` without its quadratic backtracking over long blank runs."""
    if "BREAK" not in text:
        return [text]
    parts = []
    part_start = 0
    for m in _BREAK_WORD.finditer(text):
        left, right = m.start(), m.end()
        while left > part_start and text[left - 1].isspace():
            left -= 1
        while right < len(text) and text[right].isspace():
            right += 1
        parts.append(text[part_start:left])
        part_start = right
    parts.append(text[part_start:])
    return parts


def _append_text(res: list[list], text: str) -> None:
    parts = _split_break(text)
    res.append([parts[0], 1.0])
    for part in parts[1:]:
        res.append(["BREAK", -1])
        res.append([part, 1.0])


def parse_prompt_attention(text: str, curly: bool = False) -> list[list]:
    """Split a prompt into `[text, weight]` pieces, exactly as A1111 does.

    `(x)` multiplies by 1.1, `[x]` divides by 1.1, `(x:1.3)` multiplies by 1.3, nesting multiplies. `\\(`, `\\)`,
    `\\[`, `\\]`, `\\\\` are the literal characters; a backslash before anything else is dropped. Brackets left open
    apply to the end of the text; stray closers and `:` are text. `BREAK` becomes `["BREAK", -1]` (and is scaled by
    enclosing brackets, as in A1111). Adjacent pieces of equal weight are merged; an empty prompt gives
    `[["", 1.0]]`. With `curly=True` (NovelAI style, off in A1111) `{x}` multiplies by 1.05 and `\\{`, `\\}` escape.
    A `(x:w)` whose w is not a number (`1.2.3`) keeps `:w` as text and closes like `(x)`; A1111 raised an error.
    """
    res: list[list] = []
    # Each multiplication is recorded as (first piece, end piece, factor) and applied at the end in the same order
    # A1111 applies them: closings as they occur, then unclosed ( ), then [ ], then { }, outermost first.
    ranges: list[tuple[int, int, float]] = []
    open_at: dict[str, list[int]] = {"(": [], "[": [], "{": []}
    tokenizer = _ATTENTION_TOKEN_CURLY if curly else _ATTENTION_TOKEN
    for m in tokenizer.finditer(text):
        kind = m.lastgroup
        if kind == "esc":
            res.append([m.group("esc"), 1.0])
        elif kind == "lone":
            res.append(["", 1.0])
        elif kind == "open":
            open_at[m.group()].append(len(res))
        elif kind == "weighted":
            if not open_at["("]:
                _append_text(res, m.group())
                continue
            try:
                factor = float(m.group("weight"))
            except ValueError:
                res.append([m.group("weighted"), 1.0])  # ":1.2.3" stays as text inside the bracket
                ranges.append((open_at["("].pop(), len(res), ROUND_MULTIPLIER))
                continue
            ranges.append((open_at["("].pop(), len(res), factor))
        elif kind == "close":
            opener = _OPENER_OF[m.group()]
            if open_at[opener]:
                ranges.append((open_at[opener].pop(), len(res), _OPENER_MULTIPLIER[opener]))
            else:
                _append_text(res, m.group())
        else:  # text or a lone colon
            _append_text(res, m.group())
    for opener in ("(", "[", "{"):
        ranges.extend((start, len(res), _OPENER_MULTIPLIER[opener]) for start in open_at[opener])
    if sum(end - start for start, end, _ in ranges) <= _EXACT_WORK_LIMIT:
        _apply_ranges_exactly(res, ranges)
    else:
        _apply_ranges_fast(res, ranges)
    if not res:
        return [["", 1.0]]
    # Merge runs of equal weight; texts are joined once per run (repeated += would be quadratic).
    merged: list[list] = []
    run: list[str] = []
    for piece, weight in res:
        if merged and weight == merged[-1][1]:
            run.append(piece)
            continue
        if merged:
            merged[-1][0] = "".join(run)
        merged.append([piece, weight])
        run = [piece]
    merged[-1][0] = "".join(run)
    return merged


# Names A1111 exposes and some extensions import. Same matching behaviour; our code above does not use them.
re_weight = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.DOTALL)
re_break = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)
# Group 1 is the weight of a `:number)` token, as extensions expect.
re_attention = re.compile(r"\\[()\[\]\\]|\\|[(\[]|:\s*([+-]?[.\d]+)\s*\)|[)\]]|[^\\()\[\]:]+|:")


def parse_prompt_attention_nai(text: str) -> list[list]:
    """NovelAI-style emphasis: `parse_prompt_attention` with `{x}` = x1.05."""
    return parse_prompt_attention(text, curly=True)


# ---------------------------------------------------------------------------------------------------------------
# Helpers around the prompt text: comments and the bracket checker.
# ---------------------------------------------------------------------------------------------------------------

_WHOLE_LINE_COMMENT = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_TRAILING_COMMENT = re.compile(r"#[^\n]*(\n|$)")


def strip_comments(text: str) -> str:
    """Remove `#` comments (A1111's "Enable comments"): whole comment lines, then `#...` to the end of a line.

    Like A1111 each removed comment leaves one newline behind (a newline is plain whitespace to the text encoder).
    """
    text = _WHOLE_LINE_COMMENT.sub("\n", text)
    return _TRAILING_COMMENT.sub("\n", text)


_BRACKET_PAIRS = (("(", ")", "round brackets"), ("[", "]", "square brackets"), ("{", "}", "curly brackets"))
_UNESCAPED_BRACKET = re.compile(r"\\.|([(){}\[\]])", re.DOTALL)


def check_brackets(text: str) -> list[str]:
    """One message per bracket kind whose opening and closing counts differ (the bracket-checker extension's text).

    Escaped brackets (`\\(`) are literal text in the prompt language, so they are not counted.
    """
    counts = dict.fromkeys("(){}[]", 0)
    for m in _UNESCAPED_BRACKET.finditer(text):
        if m.group(1):
            counts[m.group(1)] += 1
    return [
        f"{opener}...{closer} - Detected {counts[opener]} opening and {counts[closer]} closing {kind}."
        for opener, closer, kind in _BRACKET_PAIRS
        if counts[opener] != counts[closer]
    ]
