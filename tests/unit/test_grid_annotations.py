"""Legends around image grids (X/Y/Z plot, prompt matrix): layout, margins, wrapping, fonts, strike-through."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import images
from modules.grid_annotations import GridAnnotationError
from modules.images import GridAnnotation, draw_grid_annotations, draw_prompt_matrix
from tests.fixtures.fonts import CJK_CHAR, write_cjk_font

W = H = 64


def cells(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (W, H), (40 * i % 256, 200, 90)) for i in range(n)]


def labels(*texts: str) -> list[list[GridAnnotation]]:
    return [[GridAnnotation(t)] for t in texts]


def ink(region: Image.Image, background=(255, 255, 255)) -> int:
    arr = np.asarray(region.convert("RGB")).astype(int)
    return int((np.abs(arr - np.array(background)).sum(axis=-1) > 60).sum())


def test_cells_are_kept_exactly_with_margins_between_them() -> None:
    imgs = cells(6)
    grid = images.image_grid(imgs, rows=2)
    out = draw_grid_annotations(grid, W, H, labels("a", "b", "c"), labels("row one", "row two"), margin=10)
    pad_left = W * 3 // 4
    pad_top = out.height - 2 * H - 10
    assert out.width == pad_left + 3 * W + 2 * 10 and pad_top > 0
    for i, img in enumerate(imgs):
        row, col = divmod(i, 3)
        x, y = pad_left + (W + 10) * col, pad_top + (H + 10) * row
        assert np.array_equal(np.asarray(out.crop((x, y, x + W, y + H))), np.asarray(img))
    assert ink(out.crop((0, pad_top, pad_left, pad_top + H))) > 0  # the row legend is drawn
    assert ink(out.crop((pad_left, 0, pad_left + W, pad_top))) > 0  # and the column legend


def test_no_row_legends_means_no_left_padding() -> None:
    out = draw_grid_annotations(images.image_grid(cells(2), rows=1), W, H, labels("x", "y"), labels(""))
    assert out.width == 2 * W


def test_long_legends_wrap_instead_of_overflowing() -> None:
    grid = images.image_grid(cells(2), rows=1)
    short = draw_grid_annotations(grid, W, H, labels("cat", "dog"), labels(""))
    long = draw_grid_annotations(grid, W, H, labels("a very long prompt about a cat on a mat", "dog"), labels(""))
    assert long.height > short.height  # more lines above the cells, none drawn past the column
    assert long.width == short.width


def test_inactive_parts_use_the_inactive_colour() -> None:
    opts = {"grid_text_active_color": "#000000", "grid_text_inactive_color": "#ff0000"}
    grid = images.image_grid(cells(2), rows=1)
    hor = [[GridAnnotation("cat", is_active=False)], [GridAnnotation("cat", is_active=True)]]
    out = np.asarray(draw_grid_annotations(grid, W, H, hor, labels(""), opts=opts)).astype(int)
    top = out[: out.shape[0] - H]
    red = (top[..., 0] > 200) & (top[..., 1] < 80) & (top[..., 2] < 80)
    assert red[:, :W].sum() > 0 and red[:, W:].sum() == 0


def test_cjk_legend_renders_with_a_font_that_has_the_glyphs(tmp_path) -> None:
    font = write_cjk_font(tmp_path / "cjk.ttf")
    grid = images.image_grid(cells(1), rows=1)
    with_font = draw_grid_annotations(grid, W, H, labels(CJK_CHAR * 2), labels(""), opts={"font": str(font)})
    fallback = draw_grid_annotations(grid, W, H, labels(CJK_CHAR * 2), labels(""), opts={"font": ""})
    top = with_font.crop((0, 0, W, with_font.height - H))
    arr = np.asarray(top.convert("L"))
    assert (arr < 50).sum() > 20  # the test font's glyph is a filled square: solid ink
    assert not np.array_equal(np.asarray(with_font), np.asarray(fallback))


def test_missing_font_file_falls_back_to_the_default_font(tmp_path) -> None:
    grid = images.image_grid(cells(1), rows=1)
    out = draw_grid_annotations(grid, W, H, labels("cat"), labels(""), opts={"font": str(tmp_path / "none.ttf")})
    assert ink(out.crop((0, 0, W, out.height - H))) > 0


def test_prompt_matrix_legends_split_parts_across_and_down() -> None:
    grid = images.image_grid(cells(4), rows=2)
    out = draw_prompt_matrix(grid, W, H, ["base", "red", "blue"], margin=4)
    assert out.width == W * 3 // 4 + 2 * W + 4  # "red" across (off, on), "blue" down (off, on)
    assert out.height > 2 * H + 4


def test_legends_that_do_not_match_the_grid_are_refused() -> None:
    grid = images.image_grid(cells(2), rows=1)
    with pytest.raises(GridAnnotationError, match="cannot hold 3x1"):
        draw_grid_annotations(grid, W, H, labels("a", "b", "c"), labels(""))
