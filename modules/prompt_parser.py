"""The A1111 prompt language: step schedules (`[a:b:n]`, `[a|b]`), emphasis weights, `AND` composition, comments."""

from __future__ import annotations

import math
import re
from collections import namedtuple
from typing import Any

from modules.extra_networks_syntax import ExtraNetworkParams, extract_extra_networks

__all__ = [
    "ComposableScheduledPromptConditioning",
    "DictWithShape",
    "ExtraNetworkParams",
    "MulticondLearnedConditioning",
    "ScheduledPromptConditioning",
    "SdConditioning",
    "check_brackets",
    "extract_extra_networks",
    "get_learned_conditioning",
    "get_learned_conditioning_prompt_schedules",
    "get_multicond_learned_conditioning",
    "get_multicond_prompt_list",
    "parse_prompt_attention",
    "parse_prompt_attention_nai",
    "re_AND",
    "re_attention",
    "re_break",
    "re_weight",
    "reconstruct_cond_batch",
    "reconstruct_multicond_batch",
    "stack_conds",
    "strip_comments",
]

# ---------------------------------------------------------------------------------------------------------------
# Step schedules.
#
# A1111 parses this with an ambiguous Earley grammar; Earley is far too slow for long prompts (a 100k-character
# prompt with a few thousand `[a:b:n]` takes minutes) and its tree walk recurses. The language is simple enough to
# decide deterministically, which is what this section does, without recursion:
#   * outside any construct, brackets and `:` that do not form a valid construct are plain text;
#   * inside a construct, every bracket must nest properly and every nested construct must be valid, otherwise the
#     whole construct is plain text (at the outermost level) and its inside is read again as outermost text;
#   * `[...]` with no `:` or `|` at its own level is emphasis (kept verbatim), with `|` an alternation, with one or
#     two `:` a schedule whose last part is a number; `(...)` allows at most one `:` and no `|`;
#   * a `|` that ends up outside every construct, a lone trailing `\` and `\` before a newline make the whole prompt
#     unparseable, and A1111 then uses it unchanged for every step.
# The equivalence with A1111's grammar was checked by comparing outputs on random prompts.
# ---------------------------------------------------------------------------------------------------------------

# Runs of ordinary characters (a backslash escapes any character but a newline), single special characters, and a
# backslash that escapes nothing (which the grammar cannot read).
_SCHEDULE_TOKEN = re.compile(r"(?P<text>(?:[^\\\[\]():|]|\\.)+)|(?P<sym>[\[\]():|])|(?P<bad>\\)")
# lark's SIGNED_NUMBER (ASCII digits, optional exponent), surrounded by optional whitespace.
_WHEN = re.compile(r"\s*([+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+))\s*")
_CLOSER_OF = {"(": ")", "[": "]"}


class _Scheduled:
    """`[before:after:when]`; `before` is None for the two-part form `[after:when]`."""

    __slots__ = ("after", "before", "when", "when_text")

    def __init__(self, before: list | None, after: list, when_text: str) -> None:
        self.before = before
        self.after = after
        self.when_text = when_text
        self.when = 0


class _Alternate:
    """`[a|b|c]`: option (step - 1) % n at each step."""

    __slots__ = ("options",)

    def __init__(self, options: list[list]) -> None:
        self.options = options


def _tokenize_for_schedule(prompt: str) -> list[str] | None:
    """Split into text runs and single special characters; None when a backslash escapes nothing."""
    tokens: list[str] = []
    for m in _SCHEDULE_TOKEN.finditer(prompt):
        if m.lastgroup == "bad":
            return None
        tokens.append(m.group())
    return tokens


def _match_constructs(tokens: list[str]) -> tuple[list[int], set[int]]:
    """For every opening bracket, the index of its closing bracket if it opens a valid construct, else -1; and
    the openers of valid schedules (`[...:N]`)."""
    valid = [-1] * len(tokens)
    schedules: set[int] = set()
    # Each frame: [open index, open char, children all valid, indexes of `:` at this level, number of `|`].
    stack: list[list] = []
    for i, tok in enumerate(tokens):
        if tok == "(" or tok == "[":
            stack.append([i, tok, True, [], 0])
        elif tok == ":":
            if stack:
                stack[-1][3].append(i)
        elif tok == "|":
            if stack:
                stack[-1][4] += 1
        elif tok == ")" or tok == "]":
            if not stack:
                continue
            if _CLOSER_OF[stack[-1][1]] != tok:
                # A crossed bracket: no frame still open can close properly around it.
                stack.clear()
                continue
            start, kind, ok, colons, pipes = stack.pop()
            if ok:
                if kind == "(":
                    ok = pipes == 0 and len(colons) <= 1
                elif colons:
                    # A `|` in a schedule's parts is text: A1111 documents `a [{b|d{:.5] c` as a schedule.
                    last = colons[-1]
                    ok = (
                        len(colons) <= 2
                        and i == last + 2
                        and tokens[last + 1] not in "[]():|"
                        and _WHEN.fullmatch(tokens[last + 1]) is not None
                    )
            if ok:
                valid[start] = i
                if kind == "[" and colons:
                    schedules.add(start)
            elif stack:
                stack[-1][2] = False
    return valid, schedules


def _build_schedule_tree(tokens: list[str], matched: tuple[list[int], set[int]]
                         ) -> tuple[list, list[_Scheduled], bool] | None:
    """Turn tokens into a nested list of str / _Scheduled / _Alternate; None if the prompt cannot be parsed."""
    valid, schedules = matched
    root: list = []
    scheduled: list[_Scheduled] = []
    has_alternate = False
    # Each frame: [open char, index of its closer, segments (lists of nodes), separator seen (":" / "|" / ""),
    # whether it is a schedule (where `|` is text)].
    frames: list[list] = []
    for i, tok in enumerate(tokens):
        if not frames:
            if (tok == "(" or tok == "[") and valid[i] >= 0:
                frames.append([tok, valid[i], [[]], "", i in schedules])
            elif tok == "|":
                return None  # `|` outside an alternation is not part of the language
            else:
                root.append(tok)
            continue
        frame = frames[-1]
        if tok == "(" or tok == "[":
            frames.append([tok, valid[i], [[]], "", i in schedules])  # inside a valid construct all are valid
        elif i == frame[1]:
            frames.pop()
            kind, _, segments, sep, _sched = frame
            target = frames[-1][2][-1] if frames else root
            if kind == "(" or not sep:
                target.append(kind)
                target.extend(segments[0])
                if len(segments) == 2:
                    target.append(":")
                    target.extend(segments[1])
                target.append(_CLOSER_OF[kind])
            elif sep == "|":
                target.append(_Alternate(segments))
                has_alternate = True
            else:
                when_text = _WHEN.fullmatch(segments[-1][0]).group(1)
                node = _Scheduled(segments[0] if len(segments) == 3 else None, segments[-2], when_text)
                target.append(node)
                scheduled.append(node)
        elif tok == "|" and frame[4]:
            frame[2][-1].append(tok)  # literal text inside a schedule
        elif tok == ":" or tok == "|":
            frame[2].append([])
            frame[3] = tok
        else:
            frame[2][-1].append(tok)
    return root, scheduled, has_alternate


def _when_to_step(text: str, steps: int, int_offset: int, float_offset: float, old: bool) -> int:
    """The last step at which the `before` part is used, as A1111 computes it (then clamped to `steps`)."""
    value = float(text)
    if old:
        value = value * steps if value < 1 else value
    elif "." in text:
        value = (value - float_offset) * steps
    else:
        value = value - int_offset
    if math.isnan(value):
        return 0
    if math.isinf(value):
        return steps if value > 0 else min(steps, -1)
    return min(steps, int(value))


def _render(root: list, step: int) -> str:
    """The prompt text at one sampling step (iterative, so any nesting depth is fine)."""
    out: list[str] = []
    stack = [iter(root)]
    while stack:
        for node in stack[-1]:
            if isinstance(node, str):
                out.append(node)
                continue
            if isinstance(node, _Scheduled):
                chosen = node.before if step <= node.when else node.after
            else:
                chosen = node.options[(step - 1) % len(node.options)]
            if chosen:
                stack.append(iter(chosen))
                break
        else:
            stack.pop()
    return "".join(out)


def _schedule_one(prompt: str, steps: int, int_offset: int, float_offset: float, old: bool) -> list[list]:
    if "[" not in prompt:
        return [[steps, prompt]]  # nothing can change between steps; a parse would reproduce the text
    tokens = _tokenize_for_schedule(prompt)
    parsed = _build_schedule_tree(tokens, _match_constructs(tokens)) if tokens is not None else None
    if parsed is None:
        return [[steps, prompt]]
    root, scheduled, has_alternate = parsed
    boundaries = {steps}
    for node in scheduled:
        node.when = _when_to_step(node.when_text, steps, int_offset, float_offset, old)
        if node.when >= 1:
            boundaries.add(node.when)
    if has_alternate:
        boundaries.update(range(1, steps + 1))
    return [[step, _render(root, step)] for step in sorted(boundaries)]


def get_learned_conditioning_prompt_schedules(
    prompts: list[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[list]]:
    """For each prompt, `[[end_at_step, text], ...]`: the text to use up to and including each step.

    `[to:when]`, `[from::when]`, `[from:to:when]`: a `when` written with a `.` is a fraction of the steps, otherwise
    a step number. With `hires_steps` the timeline is the hires pass's: step numbers above `base_steps` and
    fractions above 1.0 fall into it. `use_old_scheduling` restores the pre-1.6 rule (below 1 means a fraction) and
    ignores the hires offset. Entries are not merged even when consecutive texts are equal, as in A1111.
    """
    if hires_steps is None or use_old_scheduling:
        steps, int_offset, float_offset = base_steps, 0, 0.0
    else:
        steps, int_offset, float_offset = hires_steps, base_steps, 1.0
    cache: dict[str, list[list]] = {}
    result = []
    for prompt in prompts:
        if prompt not in cache:
            cache[prompt] = _schedule_one(prompt, steps, int_offset, float_offset, use_old_scheduling)
        result.append(cache[prompt])  # identical prompts share one schedule list, as in A1111
    return result


# ---------------------------------------------------------------------------------------------------------------
# Conditioning holders. The tensors come from the model object; torch is imported only where tensors are built.
# ---------------------------------------------------------------------------------------------------------------

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class SdConditioning(list):
    """A list of prompts for the text encoder, carrying what SDXL also needs: negative flag, width, height."""

    def __init__(
        self,
        prompts: list[str],
        is_negative_prompt: bool = False,
        width: int | None = None,
        height: int | None = None,
        copy_from: Any = None,
    ) -> None:
        super().__init__()
        self.extend(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


def get_learned_conditioning(
    model: Any, prompts: list[str], steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[ScheduledPromptConditioning]]:
    """Encode every distinct text of every prompt's schedule with `model.get_learned_conditioning(texts)`.

    The model may return a tensor (indexed by text) or a dict of tensors (SDXL: crossattn, vector...).
    """
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache: dict[str, list[ScheduledPromptConditioning]] = {}
    result = []
    for prompt, schedule in zip(prompts, schedules, strict=True):
        if prompt in cache:
            result.append(cache[prompt])
            continue
        texts = SdConditioning([text for _, text in schedule], copy_from=prompts)
        conds = model.get_learned_conditioning(texts)
        entries = []
        for i, (end_at_step, _) in enumerate(schedule):
            cond = {key: value[i] for key, value in conds.items()} if isinstance(conds, dict) else conds[i]
            entries.append(ScheduledPromptConditioning(end_at_step, cond))
        cache[prompt] = entries
        result.append(entries)
    return result


_AND = re.compile(r"\bAND\b")
_SUBPROMPT_WEIGHT_NUMBER = re.compile(r"[-+]?(?:\d+\.?|\d*\.\d+)")


def _split_weight(subprompt: str) -> tuple[str, str | None]:
    """Split `text :weight` as A1111's regex `^(.*?)(?:\\s*:\\s*(number))?\\s*$` does, in linear time.

    The regex takes the shortest text after which the rest is blank, or blanks, `:`, blanks, a number, blanks.
    Run by a backtracking engine it is quadratic on long blank runs, so the same result is computed directly:
    the weight can only follow the last `:` of the right-stripped text, and then the text ends where the blanks
    before that colon begin. (`str.isspace` and `\\s` agree on every character.)
    """
    stripped = subprompt.rstrip()
    colon = stripped.rfind(":")
    if colon >= 0 and _SUBPROMPT_WEIGHT_NUMBER.fullmatch(stripped[colon + 1 :].lstrip()):
        return stripped[:colon].rstrip(), stripped[colon + 1 :].lstrip()
    return stripped, None


def get_multicond_prompt_list(prompts: list[str]) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """Split prompts on `AND` into weighted sub-prompts; identical sub-prompts share one index.

    Returns (for each prompt its [(index, weight), ...], the flat list of distinct sub-prompts, text -> index).
    """
    res_indexes: list[list[tuple[int, float]]] = []
    prompt_flat_list = SdConditioning(prompts)
    prompt_flat_list.clear()
    prompt_indexes: dict[str, int] = {}
    for prompt in prompts:
        indexes = []
        for subprompt in _AND.split(prompt):
            text, weight_text = _split_weight(subprompt)
            weight = float(weight_text) if weight_text is not None else 1.0
            index = prompt_indexes.get(text)
            if index is None:
                index = len(prompt_flat_list)
                prompt_flat_list.append(text)
                prompt_indexes[text] = index
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, prompt_flat_list, prompt_indexes


class ComposableScheduledPromptConditioning:
    """One `AND` part of a prompt: its schedule and its weight."""

    def __init__(self, schedules: list[ScheduledPromptConditioning], weight: float = 1.0) -> None:
        self.schedules = schedules
        self.weight = weight


class MulticondLearnedConditioning:
    """All prompts of a batch, each a list of weighted `AND` parts; `shape` is (batch size,) for the samplers."""

    def __init__(self, shape: tuple, batch: list[list[ComposableScheduledPromptConditioning]]) -> None:
        self.shape = shape
        self.batch = batch


def get_multicond_learned_conditioning(
    model: Any, prompts: list[str], steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> MulticondLearnedConditioning:
    """Like `get_learned_conditioning`, after splitting each prompt on `AND` (composable diffusion)."""
    res_indexes, prompt_flat_list, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, prompt_flat_list, steps, hires_steps, use_old_scheduling)
    batch = [
        [ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in indexes] for indexes in res_indexes
    ]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


class DictWithShape(dict):
    """A dict of tensors (SDXL conditioning) that answers `.shape` with its cross-attention tensor's shape."""

    def __init__(self, x: dict, shape: Any = None) -> None:
        super().__init__()
        self.update(x)

    @property
    def shape(self) -> Any:
        return self["crossattn"].shape

    def to(self, *args: Any, **kwargs: Any) -> DictWithShape:
        import torch

        for key in list(self.keys()):
            if isinstance(self[key], torch.Tensor):
                self[key] = self[key].to(*args, **kwargs)
        return self

    def advanced_indexing(self, item: Any) -> DictWithShape:
        import torch

        return DictWithShape({key: value[item] for key, value in self.items() if isinstance(value, torch.Tensor)})


def _index_for_step(schedule: list[ScheduledPromptConditioning], current_step: int) -> int:
    """The first entry whose end_at_step is not before the step (the first entry when none qualifies)."""
    for index, entry in enumerate(schedule):
        if current_step <= entry.end_at_step:
            return index
    return 0


def reconstruct_cond_batch(c: list[list[ScheduledPromptConditioning]], current_step: int) -> Any:
    """Stack, for each prompt, the conditioning in force at `current_step` into one batch tensor (or dict)."""
    import torch

    param = c[0][0].cond
    if isinstance(param, dict):
        res: Any = DictWithShape(
            {k: torch.zeros((len(c),) + v.shape, device=v.device, dtype=v.dtype) for k, v in param.items()}
        )
    else:
        res = torch.zeros((len(c),) + param.shape, device=param.device, dtype=param.dtype)
    for i, schedule in enumerate(c):
        cond = schedule[_index_for_step(schedule, current_step)].cond
        if isinstance(param, dict):
            for key, value in cond.items():
                res[key][i] = value
        else:
            res[i] = cond
    return res


def stack_conds(tensors: list) -> Any:
    """Stack (tokens, dim) tensors, padding shorter ones by repeating their last vector (prompts of unequal length)."""
    import torch

    token_count = max(t.shape[0] for t in tensors)
    padded = []
    for t in tensors:
        if t.shape[0] != token_count:
            t = torch.vstack([t, t[-1:].repeat([token_count - t.shape[0], 1])])
        padded.append(t)
    return torch.stack(padded)


def reconstruct_multicond_batch(c: MulticondLearnedConditioning, current_step: int) -> tuple[list, Any]:
    """Conditionings in force at `current_step` for every `AND` part, and per prompt the [(row, weight), ...]."""
    param = c.batch[0][0].schedules[0].cond
    tensors = []
    conds_list = []
    for parts in c.batch:
        rows = []
        for part in parts:
            rows.append((len(tensors), part.weight))
            tensors.append(part.schedules[_index_for_step(part.schedules, current_step)].cond)
        conds_list.append(rows)
    if isinstance(tensors[0], dict):
        stacked: Any = DictWithShape({key: stack_conds([t[key] for t in tensors]) for key in tensors[0]})
    else:
        stacked = stack_conds(tensors).to(device=param.device, dtype=param.dtype)
    return conds_list, stacked


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
re_AND = _AND
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
