"""A1111's `modules.progress` task bookkeeping, which queueing extensions (agent-scheduler) call and read."""

from __future__ import annotations

import random
import string
import time
from collections import OrderedDict
from typing import Any

current_task: str | None = None
pending_tasks: OrderedDict[str, float] = OrderedDict()
finished_tasks: list[str] = []
recorded_results: list[tuple[str, Any]] = []
recorded_results_limit = 2


def start_task(id_task: str) -> None:
    global current_task
    current_task = id_task
    pending_tasks.pop(id_task, None)


def finish_task(id_task: str) -> None:
    global current_task
    if current_task == id_task:
        current_task = None
    finished_tasks.append(id_task)
    if len(finished_tasks) > 16:
        finished_tasks.pop(0)


def create_task_id(task_type: str) -> str:
    n = "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
    return f"task({task_type}-{n})"


def record_results(id_task: str, res: Any) -> None:
    recorded_results.append((id_task, res))
    if len(recorded_results) > recorded_results_limit:
        recorded_results.pop(0)


def add_task_to_queue(id_job: str) -> None:
    pending_tasks[id_job] = time.time()


def reset() -> None:
    global current_task
    current_task = None
    pending_tasks.clear()
    finished_tasks.clear()
    recorded_results.clear()
