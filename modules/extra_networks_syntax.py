"""Syntax of extra-network tags in prompts (`<lora:name:0.8>`, `<hypernet:x:1>`...): finding, removing, splitting args."""

from __future__ import annotations

import re
from collections import defaultdict

# A tag is `<type:args>`: type is word characters, args run to the first `>` (so args can never contain one).
_TAG = re.compile(r"<(\w+):([^>]+)>")


class ExtraNetworkParams:
    """The arguments of one tag, split on `:`.

    `items` keeps every argument in order, as written; `named` holds the `key=value` ones and `positional`
    the rest. Values stay strings: what a number means (and whether `abc` is acceptable) is the network's call.
    """

    def __init__(self, items: list | None = None) -> None:
        self.items: list = list(items) if items else []
        self.positional: list = []
        self.named: dict[str, str] = {}
        for item in self.items:
            if isinstance(item, str):
                # Exactly one `=` makes a named argument; `a=b=c` stays positional, as in A1111.
                key, sep, value = item.partition("=")
                if sep and "=" not in value:
                    self.named[key] = value
                    continue
            self.positional.append(item)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtraNetworkParams):
            return NotImplemented
        return self.items == other.items

    __hash__ = None  # mutable, compared by content

    def __repr__(self) -> str:
        return f"ExtraNetworkParams(items={self.items!r})"


def parse_prompt(prompt: str) -> tuple[str, defaultdict[str, list[ExtraNetworkParams]]]:
    """Remove every `<type:args>` tag from `prompt`; return the remaining text and the tags grouped by type."""
    found: defaultdict[str, list[ExtraNetworkParams]] = defaultdict(list)

    def take(match: re.Match) -> str:
        found[match.group(1)].append(ExtraNetworkParams(items=match.group(2).split(":")))
        return ""

    return _TAG.sub(take, prompt), found


def parse_prompts(prompts: list[str]) -> tuple[list[str], defaultdict[str, list[ExtraNetworkParams]]]:
    """Strip tags from every prompt; like A1111, only the first prompt's tags are returned (one set per batch)."""
    stripped: list[str] = []
    first: defaultdict[str, list[ExtraNetworkParams]] | None = None
    for prompt in prompts:
        text, found = parse_prompt(prompt)
        if first is None:
            first = found
        stripped.append(text)
    return stripped, first if first is not None else defaultdict(list)


def extract_extra_networks(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """Our name for `parse_prompt`: `(prompt_without_tags, {network_type: [params, ...]})`."""
    text, found = parse_prompt(prompt)
    return text, dict(found)
