"""Crops for training sets (Extras): around the image's focal point, and to the best-fitting size on a 64 px grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from modules.errors import ValidationError


@dataclass
class FocalSettings:
    """Weights of the three kinds of interest (A1111's "Focal point face/entropy/edges weight")."""

    crop_width: int
    crop_height: int
    face_points_weight: float = 0.9
    entropy_points_weight: float = 0.15
    corner_points_weight: float = 0.5
    dnn_model_path: str | None = None  # YuNet's .onnx; without it faces are not looked for


@dataclass
class PointOfInterest:
    x: float
    y: float
    weight: float
    kind: str


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scaled (keeping the aspect) so it covers width x height with one side exact."""
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.uint8)


def corner_points(image: Image.Image) -> list[tuple[float, float]]:
    """Strong corners (edges meeting): where the detail is, in OpenCV's Shi-Tomasi detector."""
    import cv2

    found = cv2.goodFeaturesToTrack(_gray(image), maxCorners=100, qualityLevel=0.04,
                                    minDistance=max(1.0, min(image.size) * 0.06), useHarrisDetector=False)
    return [] if found is None else [(float(x), float(y)) for x, y in found.reshape(-1, 2)]


YUNET_FILE = "face_detection_yunet_2022mar.onnx"
"""A1111's face model for focal crops (it downloads it into models/opencv; we only read it from there)."""


def face_points(image: Image.Image, model_path: str | None) -> list[tuple[float, float, float]]:
    """Centres and sizes of faces found by OpenCV's YuNet detector, when its model file is present."""
    if not model_path:
        return []
    import cv2

    detector = cv2.FaceDetectorYN.create(model_path, "", image.size, score_threshold=0.9)
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    _, faces = detector.detect(bgr)
    return [] if faces is None else [(float(f[0] + f[2] / 2), float(f[1] + f[3] / 2), float(f[2])) for f in faces]


def _entropy(gray: np.ndarray) -> float:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    hist = hist[hist > 0] / gray.size
    return float(-(hist * np.log2(hist)).sum())


def entropy_point(image: Image.Image, width: int, height: int) -> tuple[float, float] | None:
    """Centre of the crop-sized window with the most varied grey levels (steps of 1/8 of the free space)."""
    gray = _gray(image)
    free_x, free_y = image.width - width, image.height - height
    if free_x <= 0 and free_y <= 0:
        return None
    best, best_xy = -1.0, (0, 0)
    for x in sorted({round(free_x * i / 8) for i in range(9)}) if free_x > 0 else [0]:
        for y in sorted({round(free_y * i / 8) for i in range(9)}) if free_y > 0 else [0]:
            e = _entropy(gray[y:y + height, x:x + width])
            if e > best:
                best, best_xy = e, (x, y)
    return best_xy[0] + width / 2, best_xy[1] + height / 2


def points_of_interest(image: Image.Image, settings: FocalSettings) -> list[PointOfInterest]:
    """Every kind found gets its weight, shared among its points; a kind with no points drops out."""
    out: list[PointOfInterest] = []
    if settings.face_points_weight > 0:
        faces = face_points(image, settings.dnn_model_path)
        out += [PointOfInterest(x, y, settings.face_points_weight / len(faces), "face") for x, y, _ in faces]
    if settings.corner_points_weight > 0:
        corners = corner_points(image)
        out += [PointOfInterest(x, y, settings.corner_points_weight / len(corners), "corner") for x, y in corners]
    if settings.entropy_points_weight > 0:
        point = entropy_point(image, settings.crop_width, settings.crop_height)
        if point is not None:
            out.append(PointOfInterest(*point, settings.entropy_points_weight, "entropy"))
    return out


def focal_point(image: Image.Image, settings: FocalSettings) -> tuple[float, float]:
    points = points_of_interest(image, settings)
    total = sum(p.weight for p in points)
    if total <= 0:
        return image.width / 2, image.height / 2
    return sum(p.x * p.weight for p in points) / total, sum(p.y * p.weight for p in points) / total


def crop_image(image: Image.Image, settings: FocalSettings, *, debug: bool = False) -> list[Image.Image]:
    """The crop of crop_width x crop_height around the focal point (after scaling the image to cover that size),
    and, with debug, a copy of the scaled image showing the points and the box."""
    w, h = int(settings.crop_width), int(settings.crop_height)
    if w < 1 or h < 1:
        raise ValidationError("Auto focal point crop", f"the crop size {w}x{h} is not positive")
    scaled = _cover(image.convert("RGB"), w, h)
    fx, fy = focal_point(scaled, settings)
    left = int(min(max(fx - w / 2, 0), scaled.width - w))
    top = int(min(max(fy - h / 2, 0), scaled.height - h))
    box = (left, top, left + w, top + h)
    out = [scaled.crop(box)]
    if debug:
        annotated = scaled.copy()
        draw = ImageDraw.Draw(annotated)
        colors = {"face": (255, 0, 0), "corner": (0, 160, 255), "entropy": (255, 200, 0)}
        for p in points_of_interest(scaled, settings):
            r = max(2, min(scaled.size) // 60)
            draw.ellipse((p.x - r, p.y - r, p.x + r, p.y + r), outline=colors[p.kind], width=2)
        draw.rectangle(box, outline=(255, 0, 255), width=max(1, min(scaled.size) // 200))
        draw.ellipse((fx - 4, fy - 4, fx + 4, fy + 4), fill=(255, 0, 255))
        out.append(annotated)
    return out


def best_size(width: int, height: int, mindim: int, maxdim: int, minarea: int, maxarea: int,
              objective: str = "Maximize area", threshold: float = 0.1) -> tuple[int, int] | None:
    """A1111's Auto-sized crop choice: among sides on a 64 px grid from mindim to maxdim with an area in
    [minarea, maxarea], the size whose aspect ratio is within `threshold` of the image's; the largest one
    (ties: smaller error), or with "Minimize error" the best-matching one (ties: larger area)."""
    if objective not in ("Maximize area", "Minimize error"):
        raise ValidationError("Resizing objective", f"must be Maximize area or Minimize error, got {objective!r}")
    if not 64 <= mindim <= maxdim:
        raise ValidationError("Dimension lower bound", f"must be at least 64 and at most the upper bound "
                                                       f"({maxdim}), got {mindim}")
    ratio = width / height

    def error(w: int, h: int) -> float:
        r = ratio / (w / h)
        return 1 - (r if r < 1 else 1 / r)

    sides = range(int(math.ceil(mindim / 64) * 64), int(maxdim) + 1, 64)
    candidates = [(w, h) for w in sides for h in sides if minarea <= w * h <= maxarea and error(w, h) <= threshold]
    if not candidates:
        return None
    if objective == "Maximize area":
        return max(candidates, key=lambda wh: (wh[0] * wh[1], -error(*wh)))
    return min(candidates, key=lambda wh: (error(*wh), -wh[0] * wh[1]))


def center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scaled to cover width x height, then the middle cut out."""
    scaled = _cover(image, width, height)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))
