"""A1111's step schedule syntax (`0.005:100, 1e-3:1000, 1e-5`) for learning rates and clipping values."""

from __future__ import annotations

import math
from dataclasses import dataclass

from modules.errors import ValidationError


@dataclass(frozen=True)
class StepSchedule:
    """(value, end step) pairs: each value holds for steps below its end step; past the last one, finished."""

    pairs: tuple[tuple[float, int], ...]

    def value_at(self, step: int) -> float | None:
        """The value for optimizer step `step` (0-based), or None when the schedule is over."""
        for value, end in self.pairs:
            if step < end:
                return value
        return None

    @property
    def end_step(self) -> int:
        return self.pairs[-1][1]


def parse_schedule(text: str, max_steps: int, cur_step: int = 0, field: str = "learn_rate",
                   allow_zero: bool = False) -> StepSchedule:
    """Parse `rate[:until_step], ...` as A1111 does; the last rate without a step (or step -1) runs to the end.

    Pairs whose step is already behind `cur_step` (a resumed run) are dropped, and steps past `max_steps` are
    cut to it, so the schedule of a resumed run continues where the first one stopped.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(field, "is empty; expected a rate like 0.005 or a schedule like 0.005:100, 1e-5")
    pairs: list[tuple[float, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split(":")
        if len(pieces) > 2:
            raise ValidationError(field, f"{part!r} has more than one ':'; expected rate or rate:step")
        try:
            value = float(pieces[0])
        except ValueError:
            raise ValidationError(field, f"{pieces[0].strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise ValidationError(field, f"{pieces[0].strip()!r} must be a positive number")
        if len(pieces) == 1:
            pairs.append((value, max_steps))
            break
        try:
            step = int(pieces[1])
        except ValueError:
            raise ValidationError(field, f"step {pieces[1].strip()!r} in {part!r} is not a whole number") from None
        if step == -1:
            pairs.append((value, max_steps))
            break
        if step <= 0:
            raise ValidationError(field, f"step {step} in {part!r} must be positive (or -1 for 'until the end')")
        if pairs and step <= pairs[-1][1]:
            raise ValidationError(field, f"steps must increase; {step} follows {pairs[-1][1]}")
        if step > cur_step:
            pairs.append((value, min(step, max_steps)))
            if step >= max_steps:
                break
    if not pairs:
        raise ValidationError(field, f"{text!r} has no rate for steps after {cur_step}")
    return StepSchedule(tuple(pairs))
