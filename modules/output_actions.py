"""The output panel's Save and Zip actions: copy generated images into log/images with a log.csv row."""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

from modules import images
from modules.errors import WebUIError

LOG_COLUMNS = ["prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename", "negative_prompt",
               "sd_model_name", "sd_model_hash"]


def save_selected(outdir: Path, gallery_files: list[str], generation_info: str, index: int | None,
                  opts: Any = None, make_zip: bool = False) -> list[str]:
    """Save the selected image (or all, when none is selected) as A1111's Save/Zip buttons do.

    Returns the written files (images, then the zip when asked). Each image keeps its infotext.
    """
    try:
        info = json.loads(generation_info or "{}")
    except ValueError as e:
        raise WebUIError(f"the generation info is not valid JSON ({e})") from None
    if not gallery_files:
        raise WebUIError("there is no image to save")
    first = int(info.get("index_of_first_image", 0))
    chosen = range(len(gallery_files)) if index is None else [index]
    outdir.mkdir(parents=True, exist_ok=True)
    log_path = outdir.parent / "log.csv"
    written: list[str] = []
    write_log = opts is None or bool(opts.get("save_write_log_csv", True))
    new_log = not log_path.exists()
    with open(log_path if write_log else os.devnull, "a", newline="", encoding="utf8") as f:
        writer = csv.writer(f)
        if new_log and write_log:
            writer.writerow(LOG_COLUMNS)
        for i in chosen:
            if not 0 <= i < len(gallery_files):
                raise WebUIError(f"image {i} is not in the gallery")
            src = Path(gallery_files[i])
            img = Image.open(src)
            is_grid = i < first
            text_index = i if i < len(info.get("infotexts", [])) else 0
            infotext = (info.get("infotexts") or [""])[text_index]
            seed_index = max(i - first, 0)
            seeds = info.get("all_seeds") or [info.get("seed")]
            seed = seeds[seed_index] if seed_index < len(seeds) else info.get("seed")
            prompts = info.get("all_prompts") or [info.get("prompt", "")]
            prompt = prompts[seed_index] if seed_index < len(prompts) else info.get("prompt", "")
            path, _txt = images.save_image(img, str(outdir), "", seed, prompt, (opts.get("samples_format", "png")
                                           if opts is not None else "png"), info=infotext, grid=is_grid,
                                           save_to_dirs=bool(opts.get("use_save_to_dirs_for_ui", False))
                                           if opts is not None else False, opts=opts)
            written.append(path)
            writer.writerow([prompt, seed, info.get("width"), info.get("height"), info.get("sampler_name"),
                             info.get("cfg_scale"), info.get("steps"), os.path.basename(path),
                             info.get("negative_prompt", ""), info.get("sd_model_name"), info.get("sd_model_hash")])
    if make_zip:
        zip_path = outdir / f"images_{info.get('job_timestamp', 'saved')}_{info.get('seed', '')}.zip"
        with zipfile.ZipFile(zip_path, "w") as z:
            for path in written:
                z.write(path, arcname=os.path.basename(path))
        written.append(str(zip_path))
    return written
