"""Block-weighted merging: one multiplier per UNet block, in SuperMerger's BASE/IN/M/OUT layout, plus presets.

SD1/SD2 take 26 values (BASE, IN00-IN11, M00, OUT00-OUT11), SDXL 20 (BASE, IN00-IN08, M00, OUT00-OUT08).
BASE is the multiplier of every key outside the UNet (text encoders, VAE); leave it out (25 / 19 values, or a
preset) and the main multiplier M is used for it. UNet keys outside the numbered blocks follow the merge-block-
weighted convention: `time_embed`/`label_emb` go with IN00, the final `out.` layers with the last OUT block.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modules.errors import ValidationError

UNET = "model.diffusion_model."
_IN = re.compile(r"^model\.diffusion_model\.input_blocks\.(\d+)\.")
_OUT = re.compile(r"^model\.diffusion_model\.output_blocks\.(\d+)\.")


def block_counts(family: str) -> int:
    """Numbered input (= output) blocks of the family's UNet."""
    return 9 if family == "SDXL" else 12


def block_labels(family: str) -> list[str]:
    n = block_counts(family)
    return ["BASE", *(f"IN{i:02d}" for i in range(n)), "M00", *(f"OUT{i:02d}" for i in range(n))]


def _shape(n_in: int, fn: Callable[[float], float]) -> list[float]:
    """Values for IN00..M00..OUTnn from a function of the position t in [0, 1] along the UNet."""
    total = 2 * n_in + 1
    return [round(fn(i / (total - 1)), 4) for i in range(total)]


def _smooth(t: float) -> float:
    return t * t * (3 - 2 * t)


# Each preset: position t along the UNet (0 = IN00, 0.5 = M00, 1 = last OUT) -> multiplier for B.
PRESETS: dict[str, Callable[[float], float]] = {
    "ALL_A": lambda t: 0.0,
    "ALL_B": lambda t: 1.0,
    "HALF": lambda t: 0.5,
    "LINEAR": lambda t: t,
    "REVERSE_LINEAR": lambda t: 1 - t,
    "SMOOTHSTEP": _smooth,
    "REVERSE_SMOOTHSTEP": lambda t: 1 - _smooth(t),
    "GRAD_V": lambda t: abs(2 * t - 1),  # B at both ends, A in the middle
    "GRAD_A": lambda t: 1 - abs(2 * t - 1),  # A at both ends, B in the middle
    "INPUT_ONLY": lambda t: 1.0 if t < 0.5 else 0.0,
    "MIDDLE_ONLY": lambda t: 1.0 if t == 0.5 else 0.0,
    "OUTPUT_ONLY": lambda t: 1.0 if t > 0.5 else 0.0,
}


@dataclass(frozen=True)
class BlockWeights:
    """Multiplier per key: BASE outside the UNet, one value per numbered block inside it."""

    base: float
    inputs: tuple[float, ...]
    middle: float
    outputs: tuple[float, ...]

    def multiplier(self, key: str) -> float:
        if not key.startswith(UNET):
            return self.base
        rest = key[len(UNET):]
        if m := _IN.match(key):
            return self._pick(self.inputs, int(m.group(1)), key)
        if m := _OUT.match(key):
            return self._pick(self.outputs, int(m.group(1)), key)
        if rest.startswith("middle_block."):
            return self.middle
        if rest.startswith(("time_embed.", "label_emb.")):
            return self.inputs[0]
        if rest.startswith("out."):
            return self.outputs[-1]
        return self.base

    @staticmethod
    def _pick(values: tuple[float, ...], index: int, key: str) -> float:
        if index >= len(values):
            raise ValidationError("block_weights", f"{key} is in block {index}, but only {len(values)} block "
                                                   "weights were given for this model family")
        return values[index]

    def describe(self) -> str:
        return ",".join(_fmt(v) for v in (self.base, *self.inputs, self.middle, *self.outputs))


def _fmt(v: float) -> str:
    return f"{v:g}"


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_values(name: str, family: str) -> list[float]:
    """The UNet values of a preset (no BASE), for the family's block count."""
    return _shape(block_counts(family), PRESETS[name])


def parse_block_weights(spec: str | Sequence[float] | None, family: str, multiplier: float) -> BlockWeights | None:
    """A preset name, or 26/25 (SD1, SD2) or 20/19 (SDXL) comma-separated numbers; None or "" for none."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    n = block_counts(family)
    if isinstance(spec, str) and spec.strip().upper() in PRESETS:
        values = [multiplier, *preset_values(spec.strip().upper(), family)]
    else:
        values = _numbers(spec)
        if len(values) == 2 * n + 1:
            values = [multiplier, *values]
        elif len(values) != 2 * n + 2:
            raise ValidationError(
                "block_weights",
                f"{family} takes {2 * n + 2} values (BASE, IN00-IN{n - 1:02d}, M00, OUT00-OUT{n - 1:02d}) or "
                f"{2 * n + 1} without BASE, or a preset ({', '.join(PRESETS)}); got {len(values)}")
    return BlockWeights(base=values[0], inputs=tuple(values[1:n + 1]), middle=values[n + 1],
                        outputs=tuple(values[n + 2:]))


def _numbers(spec: str | Sequence[float]) -> list[float]:
    parts = [p for p in re.split(r"[,\s]+", spec.strip()) if p] if isinstance(spec, str) else list(spec)
    out = []
    for i, part in enumerate(parts):
        try:
            value = float(part)
        except (TypeError, ValueError):
            raise ValidationError("block_weights", f"value {i + 1} ({part!r}) is not a number") from None
        if not math.isfinite(value) or abs(value) > 10:
            raise ValidationError("block_weights", f"value {i + 1} ({part!r}) must be a finite number in -10..10")
        out.append(value)
    return out
