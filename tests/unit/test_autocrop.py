"""Auto focal point crop and Auto-sized crop: where the crop lands and which size is chosen."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import autocrop
from modules.errors import ValidationError


def flat_with_detail(width: int, height: int, box: tuple[int, int, int, int], seed: int = 0) -> Image.Image:
    """A flat grey picture with a patch of random detail inside `box`."""
    arr = np.full((height, width, 3), 128, dtype=np.uint8)
    x1, y1, x2, y2 = box
    arr[y1:y2, x1:x2] = np.random.RandomState(seed).randint(0, 255, size=(y2 - y1, x2 - x1, 3))
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize(("size", "objective", "expected"), [
    ((1000, 1000), "Maximize area", (640, 640)),
    ((1600, 900), "Maximize area", (768, 448)),  # the largest within 10% of 16:9 and 640x640 pixels
    ((1600, 900), "Minimize error", (704, 384)),  # 1.833 is nearer 1.778 than 1.714
    ((5000, 1000), "Maximize area", None),  # 5:1 fits no size within the bounds
])
def test_auto_sized_crop_picks_the_size(size, objective, expected) -> None:
    assert autocrop.best_size(*size, 384, 768, 64 * 64, 640 * 640, objective, 0.1) == expected


def test_auto_sized_crop_refuses_bad_bounds() -> None:
    with pytest.raises(ValidationError, match="Resizing objective"):
        autocrop.best_size(100, 100, 384, 768, 0, 10**6, "Biggest")
    with pytest.raises(ValidationError, match="Dimension lower bound"):
        autocrop.best_size(100, 100, 900, 768, 0, 10**6)


def test_center_crop_covers_then_cuts_the_middle() -> None:
    out = autocrop.center_crop(flat_with_detail(200, 100, (90, 0, 110, 100)), 64, 64)
    assert out.size == (64, 64)
    assert np.asarray(out).std() > 10  # the detail in the middle is kept


@pytest.mark.parametrize(("box", "side"), [((96, 0, 128, 64), "right"), ((0, 0, 32, 64), "left")])
def test_focal_crop_follows_the_detail(box, side) -> None:
    image = flat_with_detail(128, 64, box)
    (crop,) = autocrop.crop_image(image, autocrop.FocalSettings(64, 64))
    assert crop.size == (64, 64)
    arr = np.asarray(image)
    expected = arr[:, 64:] if side == "right" else arr[:, :64]
    assert np.array_equal(np.asarray(crop), expected)


def test_focal_crop_scales_to_cover_and_gives_a_debug_image() -> None:
    image = flat_with_detail(256, 512, (0, 384, 256, 512))
    crop, debug = autocrop.crop_image(image, autocrop.FocalSettings(64, 64), debug=True)
    assert crop.size == (64, 64) and debug.size == (64, 128)
    assert np.asarray(crop).std() > 10  # the crop is in the detailed bottom quarter


def test_focal_crop_with_no_interest_is_centred() -> None:
    image = Image.new("RGB", (128, 64), (80, 80, 80))
    image.paste((200, 10, 10), (60, 0, 68, 64))  # a flat stripe in the middle, no corners, no entropy winner
    settings = autocrop.FocalSettings(64, 64, face_points_weight=0, entropy_points_weight=0, corner_points_weight=0)
    (crop,) = autocrop.crop_image(image, settings)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[:, 32:96])
