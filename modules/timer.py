"""A1111's `modules.timer.Timer`: named durations of start-up steps, for extensions that time their own work."""

from __future__ import annotations

import time
from typing import Any


class Timer:
    def __init__(self, print_log: bool = False) -> None:
        self.start = time.time()
        self.records: dict[str, float] = {}
        self.total = 0.0
        self.base_category = ""
        self.print_log = print_log
        self.subcategory_level = 0

    def elapsed(self) -> float:
        end = time.time()
        res = end - self.start
        self.start = end
        return res

    def add_time_to_record(self, category: str, amount: float) -> None:
        self.records[category] = self.records.get(category, 0.0) + amount

    def record(self, category: str, extra_time: float = 0, disable_log: bool = False) -> None:
        e = self.elapsed()
        self.add_time_to_record(self.base_category + category, e + extra_time)
        self.total += e + extra_time
        if self.print_log and not disable_log:
            print(f"{'  ' * self.subcategory_level}{category}: done in {e + extra_time:.3f}s")

    def subcategory(self, name: str) -> Timer:
        self.elapsed()
        self.base_category = name + "/"
        self.subcategory_level += 1
        return self

    def __enter__(self) -> Timer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.base_category = ""
        self.subcategory_level = max(self.subcategory_level - 1, 0)

    def summary(self) -> str:
        res = f"{self.total:.1f}s"
        additions = [(c, t) for c, t in self.records.items() if t >= 0.1 and "/" not in c]
        if additions:
            res += " (" + ", ".join(f"{c}: {t:.1f}s" for c, t in additions) + ")"
        return res

    def dump(self) -> dict[str, Any]:
        return {"total": self.total, "records": self.records}

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


startup_timer = Timer()
startup_record: dict[str, Any] | None = None
