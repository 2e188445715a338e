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


# Names A1111 exposes and some extensions import.
re_AND = _AND

# Emphasis, comments and the bracket check live in prompt_attention (this file would pass 600 lines otherwise).
from modules.prompt_attention import (  # noqa: E402, F401
    CURLY_MULTIPLIER,
    ROUND_MULTIPLIER,
    SQUARE_MULTIPLIER,
    check_brackets,
    parse_prompt_attention,
    parse_prompt_attention_nai,
    re_attention,
    re_break,
    re_weight,
    strip_comments,
)
