"""Labelled grids (X/Y/Z plot, prompt matrix): row and column legends drawn around a grid of equal cells."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFont

from modules.compat_surface import GridAnnotation
from modules.errors import WebUIError

log = logging.getLogger(__name__)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_MIN_FONT_SIZE = 8
_warned_fonts: set[str] = set()


class GridAnnotationError(WebUIError, ValueError):
    """The legends do not match the grid they label."""


def _opt(opts: Any, key: str, default: Any) -> Any:
    if opts is None:
        return default
    getter = getattr(opts, "get", None)
    return getter(key, default) if callable(getter) else getattr(opts, key, default)


def get_font(fontsize: int, opts: Any = None) -> Font:
    """The `font` setting's TrueType/OpenType file at this size, else Pillow's scalable default font.

    A1111 bundles Roboto; we ship no font file, and Pillow's own default is a scalable FreeType font, so
    legends still scale with the cell size. CJK prompts need a font with those glyphs named in `font`.
    """
    path = str(_opt(opts, "font", "") or "").strip()
    if path:
        try:
            return ImageFont.truetype(path, fontsize)
        except OSError as e:
            if path not in _warned_fonts:
                _warned_fonts.add(path)
                log.warning("Grid font %r could not be loaded (%s); using Pillow's default font", path, e)
    return ImageFont.load_default(size=fontsize)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Font) -> float:
    return draw.textlength(text, font=font)


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font: Font, max_width: float) -> list[str]:
    """Break text into lines no wider than max_width: at spaces, and inside a word (or a run of CJK, which has
    no spaces) only when the word alone is too wide."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if _text_width(draw, candidate, font) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for ch in word:  # a single word wider than the cell: break between characters
                if line and _text_width(draw, line + ch, font) > max_width:
                    lines.append(line)
                    line = ""
                line += ch
        lines.append(line)
    return lines


def _line_height(font: Font) -> int:
    metrics = getattr(font, "getmetrics", None)
    if callable(metrics):  # ascent + descent: the same for every line, whatever glyphs the font lacks
        ascent, descent = metrics()
        return max(1, int(ascent + descent))
    left, top, right, bottom = font.getbbox("Ág")
    return max(1, int(bottom - top))


def _block(draw: ImageDraw.ImageDraw, annotations: Sequence[GridAnnotation], font: Font, max_width: float,
           spacing: int) -> tuple[list[tuple[list[str], bool]], int]:
    """The wrapped lines of each annotation of one row/column, and the block's total height."""
    lines = [(wrap_text(draw, a.text, font, max_width), a.is_active) for a in annotations]
    count = sum(len(chunk) for chunk, _ in lines)
    height = count * _line_height(font) + max(0, count - 1) * spacing
    for a, (chunk, _) in zip(annotations, lines, strict=True):
        a.size = (max((_text_width(draw, x, font) for x in chunk), default=0), len(chunk) * _line_height(font))
    return lines, height


def _draw_block(draw: ImageDraw.ImageDraw, lines: list[tuple[list[str], bool]], font: Font, cx: float,
                top: float, spacing: int, colors: tuple[Any, Any]) -> None:
    line_h = _line_height(font)
    y = top
    for chunk, active in lines:
        color = colors[0] if active else colors[1]
        for text in chunk:
            draw.text((cx, y), text, font=font, fill=color, anchor="ma")
            if not active:  # A1111 strikes through the parts that are off in a prompt matrix
                w = _text_width(draw, text, font)
                mid = y + line_h / 2
                draw.line((cx - w / 2, mid, cx + w / 2, mid), fill=color, width=max(1, line_h // 12))
            y += line_h + spacing


def _color(opts: Any, key: str, default: str) -> Any:
    try:
        return ImageColor.getrgb(str(_opt(opts, key, default)))
    except ValueError:
        return ImageColor.getrgb(default)


def draw_grid_annotations(im: Image.Image, width: int, height: int, hor_texts: Sequence[Sequence[GridAnnotation]],
                          ver_texts: Sequence[Sequence[GridAnnotation]], margin: int = 0, *,
                          opts: Any = None) -> Image.Image:
    """Add column legends above and row legends left of a margin-less grid of `width` x `height` cells, with
    `margin` pixels put between the cells (A1111's names and semantics)."""
    cols, rows = len(hor_texts), len(ver_texts)
    if cols < 1 or rows < 1:
        raise GridAnnotationError("A labelled grid needs at least one column and one row of legends")
    if im.width < cols * width or im.height < rows * height:
        raise GridAnnotationError(f"A {im.width}x{im.height} grid cannot hold {cols}x{rows} cells of "
                                  f"{width}x{height}")
    margin = max(0, int(margin))
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    has_row_labels = any(a.text for texts in ver_texts for a in texts)
    pad_left = width * 3 // 4 if has_row_labels else 0
    fontsize = max(_MIN_FONT_SIZE, (width + height) // 25)
    # Shrink the font until every row legend fits its row (long prompts on a matrix's vertical axis).
    while True:
        font = get_font(fontsize, opts)
        spacing = fontsize // 2
        hor = [_block(draw, texts, font, width, spacing) for texts in hor_texts]
        ver = [_block(draw, texts, font, max(1, pad_left - 2 * spacing), spacing) for texts in ver_texts]
        if fontsize <= _MIN_FONT_SIZE or all(h <= height for _, h in ver):
            break
        fontsize = max(_MIN_FONT_SIZE, fontsize * 9 // 10)
    has_col_labels = any(a.text for texts in hor_texts for a in texts)
    pad_top = (max(h for _, h in hor) + spacing * 2) if has_col_labels else 0
    background = _opt(opts, "grid_background_color", "#ffffff")
    try:
        fill = ImageColor.getrgb(str(background))
    except ValueError:
        fill = (255, 255, 255)
    result = Image.new("RGB", (im.width + pad_left + margin * (cols - 1), im.height + pad_top + margin * (rows - 1)),
                       fill)
    for row in range(rows):
        for col in range(cols):
            cell = im.crop((width * col, height * row, width * (col + 1), height * (row + 1)))
            result.paste(cell, (pad_left + (width + margin) * col, pad_top + (height + margin) * row))
    out = ImageDraw.Draw(result)
    colors = (_color(opts, "grid_text_active_color", "#000000"), _color(opts, "grid_text_inactive_color", "#999999"))
    for col, (lines, h) in enumerate(hor):
        cx = pad_left + (width + margin) * col + width / 2
        _draw_block(out, lines, font, cx, (pad_top - h) / 2, spacing, colors)
    for row, (lines, h) in enumerate(ver):
        cy = pad_top + (height + margin) * row + height / 2
        _draw_block(out, lines, font, pad_left / 2, cy - h / 2, spacing, colors)
    return result


def draw_prompt_matrix(im: Image.Image, width: int, height: int, all_prompts: Sequence[str], margin: int = 0, *,
                       opts: Any = None) -> Image.Image:
    """Legends of a prompt matrix: the first half of the optional parts across, the second half down, each
    struck through where that cell leaves it out (cell i has part k when bit k of i is set)."""
    parts = list(all_prompts[1:])
    boundary = math.ceil(len(parts) / 2)
    across, down = parts[:boundary], parts[boundary:]
    hor = [[GridAnnotation(x, is_active=bool(pos & (1 << i))) for i, x in enumerate(across)]
           for pos in range(1 << len(across))]
    ver = [[GridAnnotation(x, is_active=bool(pos & (1 << i))) for i, x in enumerate(down)]
           for pos in range(1 << len(down))]
    return draw_grid_annotations(im, width, height, hor, ver, margin, opts=opts)
