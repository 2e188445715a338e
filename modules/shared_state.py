"""A1111's `modules.shared_state`: the State class (here one JobState per job; `shared.state` is the live one)."""

from __future__ import annotations

from modules.state import JobState as State

__all__ = ["State"]
