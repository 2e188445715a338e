"""The prompt token counter under the prompt boxes (`12/75`), counted as A1111 counts it."""

from __future__ import annotations

from typing import Any

from modules import extra_networks_syntax, prompt_parser
from modules.conditioning import Chunker, TextConditioner, target_token_count


def _lengths_function(conditioner_or_tokenizer: Any, emphasis: str, comma_padding_backtrack: int) -> Any:
    if isinstance(conditioner_or_tokenizer, TextConditioner) or hasattr(conditioner_or_tokenizer, "get_prompt_lengths"):
        return conditioner_or_tokenizer.get_prompt_lengths
    chunker = Chunker(conditioner_or_tokenizer, emphasis, comma_padding_backtrack)

    def lengths(text: str) -> tuple[int, int]:
        count = chunker.token_count(text)
        return count, target_token_count(count)

    return lengths


def count_tokens(
    conditioner_or_tokenizer: Any,
    prompt: str,
    steps: int,
    *,
    is_positive: bool = True,
    strip_comments: bool = True,
    emphasis: str = "Original",
    comma_padding_backtrack: int = 20,
) -> tuple[int, int]:
    """(token count, limit) for a prompt, styles already applied by the caller.

    Comments (when enabled) and `<lora:...>`-style tags are removed, a positive prompt is split on AND, every
    step of every schedule is counted and the largest count wins; BREAK, comma backtracking and embeddings
    (as many tokens as vectors) count as when encoding. A conditioner brings its own options and embeddings;
    with a bare tokenizer `emphasis` and `comma_padding_backtrack` apply and no embeddings are known.
    """
    lengths = _lengths_function(conditioner_or_tokenizer, emphasis, comma_padding_backtrack)
    if strip_comments:
        prompt = prompt_parser.strip_comments(prompt)
    try:
        text, _ = extra_networks_syntax.parse_prompt(prompt)
        if is_positive:
            _, flat, _ = prompt_parser.get_multicond_prompt_list([text])
        else:
            flat = [text]
        schedules = prompt_parser.get_learned_conditioning_prompt_schedules(flat, max(int(steps), 1))
    except Exception:  # a half-typed prompt must never break the counter (A1111 does the same)
        schedules = [[[steps, prompt]]]
    texts = [t for schedule in schedules for _, t in schedule]
    return max((lengths(t) for t in texts), key=lambda pair: pair[0])
