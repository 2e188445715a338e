"""A1111's face restoration surface: the `FaceRestoration` base class, the `face_restorers` list extensions
append to, and `restore_faces`; plus the runtime-facing helpers txt2img/img2img and Extras call."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from modules.errors import ValidationError


class FaceRestoration:
    """Base class (A1111): `name()` as shown in settings, `restore(np_image)` on an RGB uint8 HxWx3 array."""

    def name(self) -> str:
        return "None"

    def restore(self, np_image: np.ndarray) -> np.ndarray:
        return np_image


face_restorers: list[FaceRestoration] = []
"""A1111's `shared.face_restorers`: our GFPGAN and CodeFormer, then whatever extensions append."""

_settings: dict[str, Any] = {"get_opt": lambda key, default=None: default}


def restore_faces(np_image: np.ndarray, w: float | None = None, *, model: str | None = None) -> np.ndarray:
    """A1111's `restore_faces(np_image)`: the restorer named by `face_restoration_model` (or `model`)."""
    name = model if model is not None else _settings["get_opt"]("face_restoration_model", None)
    candidates = [r for r in face_restorers if name is None or r.name() == name]
    if not candidates:
        return np_image
    restorer = candidates[0]
    if w is not None and restorer.name() == "CodeFormer":
        return restorer.restore(np_image, w=w)  # type: ignore[call-arg]
    return restorer.restore(np_image)


_lock = threading.Lock()


def restorers_for(runtime: Any) -> list[FaceRestoration]:
    """GFPGAN and CodeFormer of this runtime (built once), first in `face_restorers`, extensions' after."""
    from modules import face_restoration_models

    with _lock:
        ours = vars(runtime).get("_face_restorers")
        if ours is None:
            ours = face_restoration_models.build_restorers(runtime)
            vars(runtime)["_face_restorers"] = ours
            _settings["get_opt"] = runtime.opts.get
            face_restorers[:] = ours + [r for r in face_restorers
                                        if not isinstance(r, face_restoration_models.FaceRestorerSpandrel)]
        return list(face_restorers)


def restorer_names(runtime: Any) -> list[str]:
    """The choices of the `face_restoration_model` setting."""
    return [r.name() for r in restorers_for(runtime)]


def find_restorer(runtime: Any, name: str, field: str = "face_restoration_model") -> FaceRestoration:
    for r in restorers_for(runtime):
        if r.name() == name or r.name().lower() == name.lower():
            return r
    raise ValidationError(field, f"no face restorer called {name!r}; available: "
                                 f"{', '.join(restorer_names(runtime)) or 'none'}")


def restore_image(runtime: Any, image: Any, model: str | None = None, weight: float | None = None) -> Any:
    """Restore faces in a PIL image with `model` (default: the `face_restoration_model` setting).

    This is what txt2img/img2img call when `restore_faces` is on, and what the Extras GFPGAN/CodeFormer
    operations call. `weight` is CodeFormer's (0 = maximum effect); default `code_former_weight`.
    """
    from PIL import Image

    opts = runtime.opts
    name = model or opts.get("face_restoration_model", "CodeFormer") or "CodeFormer"
    restorer = find_restorer(runtime, name)
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if restorer.name() == "CodeFormer":
        w = float(opts.get("code_former_weight", 0.5)) if weight is None else float(weight)
        out = restorer.restore(arr, w=w)  # type: ignore[call-arg]
    else:
        out = restorer.restore(arr)
    if opts.get("face_restoration_unload", False):
        unload = getattr(restorer, "send_model_to", None)
        if callable(unload):
            unload("cpu")
    return Image.fromarray(np.ascontiguousarray(out).astype(np.uint8), "RGB")
