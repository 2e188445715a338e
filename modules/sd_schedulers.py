"""A1111's `modules.sd_schedulers`: the "Schedule type" entries (our table in modules.sd_samplers)."""

from __future__ import annotations

from modules.sd_samplers import SCHEDULERS, Scheduler

__all__ = ["Scheduler", "schedulers", "schedulers_map"]

schedulers = SCHEDULERS
schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
