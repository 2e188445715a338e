"""Training images: captions ([filewords]), prompt templates, resize/crop, aspect buckets, batches."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from modules.errors import ValidationError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif")
_NUMBERS_AT_START = re.compile(r"^[-\d]+\s*")  # A1111 drops "00012-" style counters from file names
_KOHYA_FOLDER = re.compile(r"^(\d+)_(.+)$")
TEMPLATE_EXTENSION = ".txt"


@dataclass
class DatasetEntry:
    """One training image (already at its training size) and the caption text [filewords] stands for."""

    path: Path
    filename_text: str
    image: Image.Image
    weight: Any = None  # [h/8, w/8] loss weight from the alpha channel (use_weight), else None
    latent: Any = None  # cached latent sample ("once"/"deterministic")
    latent_mean: Any = None  # the distribution, sampled every time ("random")
    latent_std: Any = None
    repeats: int = 1  # kohya's `<N>_<concept>` folders repeat their images N times

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


# --- captions and templates -----------------------------------------------------------------------------------
def caption_for(path: Path, word_regex: str = "", join_string: str = " ", caption_extension: str = ".txt") -> str:
    """The caption beside the image (`<stem>.txt`), else the file name as A1111 turns it into words."""
    caption = path.with_suffix(caption_extension)
    if caption.is_file():
        return caption.read_text(encoding="utf-8", errors="replace").strip()
    text = _NUMBERS_AT_START.sub("", path.stem)
    if word_regex:
        try:
            words = re.findall(word_regex, text)
        except re.error as e:
            raise ValidationError("dataset_filename_word_regex", f"is not a valid regular expression ({e})") from None
        text = join_string.join(words)
    return text


def templates_dir(cmd_opts: Any, script_path: Path) -> Path:
    custom = getattr(cmd_opts, "textual_inversion_templates_dir", None)
    return Path(custom).expanduser() if custom else script_path / "textual_inversion_templates"


def list_templates(folder: Path) -> dict[str, Path]:
    """File name -> path of every template (`*.txt`, recursive), as A1111's prompt template dropdown lists."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob(f"*{TEMPLATE_EXTENSION}"))
            if p.is_file()}


def read_template(folder: Path, name: str, field_name: str = "template_filename") -> list[str]:
    """The non-empty lines of one template, chosen by name from the templates folder (no other path)."""
    templates = list_templates(folder)
    path = templates.get(name) or templates.get(f"{name}{TEMPLATE_EXTENSION}")
    if path is None:
        raise ValidationError(field_name, f"no prompt template {name!r}; available: {', '.join(templates) or 'none'}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValidationError(field_name, f"prompt template {name!r} is empty")
    return lines


def expand_template(line: str, filename_text: str, name: str, rng: random.Random, shuffle_tags: bool = False,
                    tag_drop_out: float = 0.0) -> str:
    """One prompt: `[name]` -> the embedding/network name, `[filewords]` -> the caption's tags (A1111's rules)."""
    tags = filename_text.split(",")
    if tag_drop_out:
        tags = [t for t in tags if rng.random() > tag_drop_out]
    if shuffle_tags:
        rng.shuffle(tags)
    return line.replace("[filewords]", ",".join(tags)).replace("[name]", name)


# --- images -----------------------------------------------------------------------------------------------------
def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def kohya_folders(root: Path) -> list[tuple[Path, int]]:
    """`<N>_<concept>` subfolders (kohya's layout) with their repeat counts."""
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        m = _KOHYA_FOLDER.match(sub.name)
        if m and int(m.group(1)) > 0:
            found.append((sub, int(m.group(1))))
    return found


def list_images(data_root: str | Path, field_name: str = "data_root", kohya: bool = False) -> list[Path]:
    """The images of the folder (with `kohya`, also those of its `<N>_<concept>` subfolders)."""
    root = Path(str(data_root)).expanduser()
    if not str(data_root).strip():
        raise ValidationError(field_name, "no dataset directory given")
    if not root.is_dir():
        raise ValidationError(field_name, f"dataset directory {str(root)!r} does not exist")
    files = images_in(root)
    if kohya:
        files += [p for sub, _ in kohya_folders(root) for p in images_in(sub)]
    if not files:
        raise ValidationError(field_name, f"dataset directory {str(root)!r} holds no images "
                                          f"({', '.join(IMAGE_EXTENSIONS)})")
    return files


def open_image(path: Path, field_name: str = "data_root") -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValidationError(field_name, f"{path.name} is not a readable image ({type(e).__name__})") from None


def resize_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height, then crop the centre (the plain 'resize and crop' of the Extras tab)."""
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((w, h), Image.LANCZOS)
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def bucket_sizes(resolution: int, min_reso: int = 256, max_reso: int = 1024, step: int = 64) -> list[tuple[int, int]]:
    """kohya-style buckets: sides multiples of `step` within bounds, area at most resolution^2."""
    area = resolution * resolution
    sizes = {(resolution, resolution)}
    w = min_reso
    while w <= max_reso:
        h = min(max_reso, (area // w) // step * step)
        if h >= min_reso:
            sizes.add((w, h))
            sizes.add((h, w))
        w += step
    return sorted(sizes)


def pick_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    aspect = size[0] / size[1]
    return min(buckets, key=lambda b: (abs(b[0] / b[1] - aspect), -b[0] * b[1]))


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


@dataclass
class Dataset:
    """Every image, its caption, and the batches of one epoch (each batch of one size)."""

    entries: list[DatasetEntry]
    batch_size: int
    repeats: int = 1
    tag_frequency: dict[str, int] = field(default_factory=dict)

    def batches(self, rng: random.Random) -> Iterator[list[DatasetEntry]]:
        """One epoch: images (times repeats) shuffled, grouped by size, cut into batches of `batch_size`."""
        by_size: dict[tuple[int, int], list[DatasetEntry]] = {}
        for entry in self.entries:
            by_size.setdefault(entry.size, []).extend([entry] * (self.repeats * entry.repeats))
        batches: list[list[DatasetEntry]] = []
        for size in sorted(by_size):
            group = by_size[size]
            rng.shuffle(group)
            batches += [group[i:i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        rng.shuffle(batches)
        yield from batches

    def __len__(self) -> int:
        return sum(e.repeats for e in self.entries) * self.repeats


def load_dataset(data_root: str | Path, width: int, height: int, *, batch_size: int = 1, varsize: bool = False,
                 buckets: list[tuple[int, int]] | None = None, use_weight: bool = False, repeats: int = 1,
                 word_regex: str = "", join_string: str = " ", flip: bool = False,
                 caption_extension: str = ".txt", kohya: bool = False) -> Dataset:
    """Read and size every image of `data_root` (captions beside them); errors name the file or folder.

    Sizing: `buckets` (LoRA) crops each image to the bucket nearest its aspect; `varsize` keeps the image
    (rounded down to multiples of 8); otherwise resize-and-crop to width x height. `flip` adds mirrored copies.
    """
    entries: list[DatasetEntry] = []
    tags: dict[str, int] = {}
    folder_repeats = {sub: n for sub, n in kohya_folders(Path(str(data_root)).expanduser())} if kohya else {}
    for path in list_images(data_root, kohya=kohya):
        image_repeats = folder_repeats.get(path.parent, 1)
        image = open_image(path)
        alpha = image.getchannel("A") if use_weight and "A" in image.getbands() else None
        rgb = image.convert("RGB")
        if buckets:
            target = pick_bucket(rgb.size, buckets)
        elif varsize:
            target = (_round_to(rgb.width, 8), _round_to(rgb.height, 8))
        else:
            target = (width, height)
        rgb = resize_crop(rgb, *target)
        weight = None
        if alpha is not None:
            import numpy as np
            import torch

            small = resize_crop(alpha, target[0] // 8, target[1] // 8)
            w = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)
            weight = w / w.mean().clamp(min=1e-6)  # A1111 normalises the map so the mean loss scale is kept
        text = caption_for(path, word_regex, join_string, caption_extension)
        for tag in (t.strip() for t in text.split(",")):
            if tag:
                tags[tag] = tags.get(tag, 0) + 1
        entries.append(DatasetEntry(path, text, rgb, weight, repeats=image_repeats))
        if flip:
            mirrored = weight.flip(-1) if weight is not None else None
            entries.append(DatasetEntry(path, text, ImageOps.mirror(rgb), mirrored, repeats=image_repeats))
    if varsize and batch_size > 1 and len({e.size for e in entries}) > 1:
        raise ValidationError("batch_size", "must be 1 with 'Do not resize images' when the images differ in size")
    return Dataset(entries, batch_size, repeats, tags)
