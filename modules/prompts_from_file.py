"""The "Prompts from file or textbox" script's job: one generation per line, lines may carry `--option value`s."""

from __future__ import annotations

import copy
import random
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modules import sd_samplers
from modules.errors import ValidationError
from modules.processed import Processed


def _text(value: str) -> str:
    return value


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _styles(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


# A1111's option names and value types (prompt and negative_prompt take every word up to the next `--`).
OPTIONS: dict[str, Callable[[str], Any]] = {
    "sd_model": _text, "outpath_samples": _text, "outpath_grids": _text, "prompt_for_display": _text,
    "prompt": _text, "negative_prompt": _text, "styles": _styles, "seed": int, "subseed_strength": float,
    "subseed": int, "seed_resize_from_h": int, "seed_resize_from_w": int, "sampler_index": int,
    "sampler_name": _text, "batch_size": int, "n_iter": int, "steps": int, "cfg_scale": float, "width": int,
    "height": int, "restore_faces": _bool, "tiling": _bool, "do_not_save_samples": _bool, "do_not_save_grid": _bool,
}
_MULTI_WORD = ("prompt", "negative_prompt")
MAX_LINES = 1000


def parse_line(line: str, number: int = 1) -> dict[str, Any]:
    """One line -> the fields it sets: a plain prompt, or A1111's `--prompt "a cat" --steps 10 ...` syntax.
    Errors name the line and the option."""
    where = f"line {number}"
    if "--" not in line:
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise ValidationError("Prompts from file", f"{where}: {e} in {line!r}") from None
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(words):
        word = words[pos]
        if not word.startswith("--"):
            raise ValidationError("Prompts from file", f"{where}: expected an option starting with --, "
                                                       f"got {word!r}")
        tag = word[2:]
        if tag not in OPTIONS:
            raise ValidationError("Prompts from file", f"{where}: unknown option {word}; known options: "
                                                       f"{', '.join('--' + k for k in OPTIONS)}")
        if pos + 1 >= len(words):
            raise ValidationError("Prompts from file", f"{where}: {word} needs a value")
        if tag in _MULTI_WORD:
            pos += 1
            taken = []
            while pos < len(words) and not words[pos].startswith("--"):
                taken.append(words[pos])
                pos += 1
            out[tag] = " ".join(taken)
            continue
        raw = words[pos + 1]
        try:
            value = OPTIONS[tag](raw)
        except ValueError as e:
            raise ValidationError("Prompts from file", f"{where}: {word} {raw!r} is not valid ({e})") from None
        if tag == "sampler_name":
            try:
                value, scheduler = sd_samplers.split_sampler_and_scheduler(raw)
            except ValueError as e:
                raise ValidationError("Prompts from file", f"{where}: {e}") from None
            if scheduler and scheduler != "Automatic":
                out["scheduler"] = scheduler
        out[tag] = value
        pos += 2
    return out


def parse_lines(text: str) -> list[dict[str, Any]]:
    lines = [(i, x.strip()) for i, x in enumerate(str(text or "").splitlines(), 1)]
    lines = [(i, x) for i, x in lines if x]
    if not lines:
        raise ValidationError("List of prompt inputs", "is empty; write one prompt (or --option line) per line")
    if len(lines) > MAX_LINES:
        raise ValidationError("List of prompt inputs", f"has {len(lines)} lines; at most {MAX_LINES} are allowed")
    return [parse_line(x, i) for i, x in lines]


def _inside_data_dir(p: Any, key: str, value: str) -> str:
    """Unlike A1111, an output folder from a prompt line must stay inside the data folder: the API accepts
    these lines from any client."""
    runtime = getattr(p, "runtime", None)
    if runtime is None:
        return value
    root = Path(runtime.paths.data_dir).resolve()
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else root / path).resolve()
    if path != root and root not in path.parents:
        raise ValidationError("Prompts from file", f"--{key} {value!r} is outside the data folder {root}")
    return str(path)


def _checked(p: Any, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resolve checkpoints and folders before any image is made, so a bad line costs no generation."""
    from modules.job_runner import resolve_checkpoint

    for number, job in enumerate(jobs, 1):
        if "sd_model" in job and getattr(p, "runtime", None) is not None:
            try:
                job["sd_model"] = resolve_checkpoint(p.runtime, job["sd_model"], "sd_model")
            except ValidationError as e:
                raise ValidationError("Prompts from file", f"line {number}: {e}") from None
        for key in ("outpath_samples", "outpath_grids"):
            if key in job:
                job[key] = _inside_data_dir(p, key, job[key])
    return jobs


def run(p: Any, process_images: Callable[[Any], Processed], checkbox_iterate: bool = False,
        checkbox_iterate_batch: bool = False, prompt_position: str = "start", prompt_txt: str = "") -> Processed:
    """A1111's Prompts from file or textbox: each line is its own job (a copy of p with the line's fields); the
    UI prompt, when given, is joined to each line's prompt at the start or the end. No grid."""
    if prompt_position not in ("start", "end"):
        raise ValidationError("Insert prompts at the", f"must be start or end, got {prompt_position!r}")
    jobs = _checked(p, parse_lines(prompt_txt))
    if (checkbox_iterate or checkbox_iterate_batch) and p.seed == -1:
        p.seed = int(random.randrange(4294967294))
    p.do_not_save_grid = True
    p.state.job_count = sum(int(job.get("n_iter", p.n_iter)) for job in jobs)
    images: list[Any] = []
    all_prompts: list[str] = []
    infotexts: list[str] = []
    errors: list[str] = []
    saved: list[str] = []
    for job in jobs:
        if p.state.interrupted or p.state.stopping_generation:
            break
        cp = copy.copy(p)
        cp.override_settings = dict(p.override_settings)  # per line: A1111 shares one dict between the copies
        cp.extra_generation_params = dict(p.extra_generation_params)
        cp.styles = list(p.styles)
        cp.__post_init__()  # fresh per-job lists (all_prompts, caches) instead of the shared ones
        for key, value in job.items():
            if key == "sd_model":
                cp.override_settings["sd_model_checkpoint"] = value
            else:
                setattr(cp, key, value)
        for key in ("prompt", "negative_prompt"):
            mine, theirs = getattr(p, key), job.get(key)
            if theirs and mine:
                setattr(cp, key, f"{theirs} {mine}" if prompt_position == "start" else f"{mine} {theirs}")
        processed = process_images(cp)
        first = processed.index_of_first_image
        images += processed.images[first:]
        infotexts += processed.infotexts[first:]
        all_prompts += processed.all_prompts
        errors += processed.errors
        saved += processed.saved_files
        if checkbox_iterate:
            p.seed = p.seed + p.batch_size * p.n_iter
    result = Processed(p, images, p.seed if isinstance(p.seed, int) else -1, infotexts[0] if infotexts else "",
                       infotexts=infotexts, comments="\n".join(errors))
    result.all_prompts = all_prompts
    result.errors, result.saved_files = errors, saved
    return result
