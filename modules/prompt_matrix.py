"""The Prompt matrix script's job: every combination of the `|`-separated prompt parts, in one labelled grid."""

from __future__ import annotations

import math
from typing import Any

from modules import images
from modules.errors import ValidationError
from modules.processed import Processed, fix_seed

MAX_PARTS = 11  # 2**10 = 1024 images: more would be a typing slip, not a plan
DELIMITERS = {"comma": ", ", "space": " "}


def combinations(prompt: str, put_at_start: bool = False, delimiter: str = "comma") -> list[str]:
    """`base|a|b` -> the base with every subset of the optional parts (bit k of image i = part k present)."""
    if delimiter not in DELIMITERS:
        raise ValidationError("Select joining char", f"must be one of {', '.join(DELIMITERS)}, got {delimiter!r}")
    parts = str(prompt or "").split("|")
    if not any(part.strip().strip(",").strip() for part in parts):
        raise ValidationError("Prompt matrix", "the prompt is empty; write the parts separated by |, "
                                               "e.g. a cat|in a hat|on a mat")
    if len(parts) > MAX_PARTS:
        raise ValidationError("Prompt matrix", f"{len(parts) - 1} optional parts would make "
                                               f"{2 ** (len(parts) - 1)} images; at most {MAX_PARTS - 1} are allowed")
    base = parts[0].strip()
    optional = [part.strip().strip(",").strip() for part in parts[1:]]
    out = []
    for i in range(2 ** len(optional)):
        chosen = [text for k, text in enumerate(optional) if i & (1 << k)]
        words = chosen + [base] if put_at_start else [base, *chosen]
        out.append(DELIMITERS[delimiter].join(w for w in words if w))
    return out


def run(p: Any, process_images: Any, put_at_start: bool = False, different_seeds: bool = False,
        prompt_type: str = "positive", variations_delimiter: str = "comma", margin_size: int = 0) -> Processed:
    """A1111's Prompt matrix: one image per combination, then a grid with the parts struck through where a cell
    leaves them out, saved as `prompt_matrix` to the grid folder."""
    if prompt_type not in ("positive", "negative"):
        raise ValidationError("Select prompt", f"must be positive or negative, got {prompt_type!r}")
    if not isinstance(margin_size, (int, float)) or not 0 <= margin_size <= 500:
        raise ValidationError("Grid margins (px)", f"must be from 0 to 500, got {margin_size!r}")
    fix_seed(p)
    original_prompt = p.prompt[0] if isinstance(p.prompt, list) else p.prompt
    original_negative = p.negative_prompt[0] if isinstance(p.negative_prompt, list) else p.negative_prompt
    source = original_prompt if prompt_type == "positive" else original_negative
    all_prompts = combinations(source, put_at_start, variations_delimiter)
    parts = str(source).split("|")
    # Every combination is generated: the batch size is cut to a divisor of the (power-of-two) image count,
    # where A1111 would leave a short last batch.
    p.batch_size = math.gcd(len(all_prompts), int(p.batch_size))
    p.n_iter = len(all_prompts) // p.batch_size
    p.do_not_save_grid = True
    if prompt_type == "positive":
        p.prompt = all_prompts
    else:
        p.negative_prompt = all_prompts
    base_seed = p.seed[0] if isinstance(p.seed, list) else p.seed
    p.seed = [base_seed + (i if different_seeds else 0) for i in range(len(all_prompts))]
    p.prompt_for_display = original_prompt
    p.state.textinfo = f"Prompt matrix will create {len(all_prompts)} images in {p.n_iter} batches."
    processed = process_images(p)
    first = processed.index_of_first_image
    cells = processed.images[first:first + len(all_prompts)]
    if len(cells) < len(all_prompts):  # interrupted: show what there is, no matrix
        return processed
    grid = images.image_grid(cells, p.batch_size, rows=1 << ((len(parts) - 1) // 2), opts=p.opts)
    grid = images.draw_prompt_matrix(grid, cells[0].width, cells[0].height, parts, int(margin_size), opts=p.opts)
    info = processed.infotexts[first] if processed.infotexts else processed.info
    grid.info["parameters"] = info
    processed.images = [grid, *cells, *processed.images[first + len(all_prompts):]]
    processed.infotexts = [info, *processed.infotexts[first:]]
    processed.index_of_first_image = 1
    if p.opt("grid_save", True) and p.outpath_grids:
        images.save_image(grid, p.outpath_grids, "prompt_matrix", processed.seed, original_prompt,
                          p.opt("grid_format", "png"), info=info, short_filename=True, grid=True, p=p, opts=p.opts)
    return processed
