"""GFPGAN and CodeFormer through spandrel, with faces found, aligned and pasted back by facexlib.

Weights are read from A1111's folders (`models/GFPGAN`, `models/Codeformer`, and `models/facexlib` for the
detector and parsing network); when a file is missing the error says which file goes where. Nothing is
downloaded: facexlib is given a folder that already holds its two files.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modules.errors import ModelLoadError, WebUIError
from modules.face_restoration import FaceRestoration
from modules.modelloader import ModelFileMissingError, list_model_files

log = logging.getLogger(__name__)

_FX = "https://github.com/xinntao/facexlib/releases/download"
DETECTION_FILE = ("detection_Resnet50_Final.pth", f"{_FX}/v0.1.0/detection_Resnet50_Final.pth")
PARSING_FILE = ("parsing_parsenet.pth", f"{_FX}/v0.2.2/parsing_parsenet.pth")
FACEXLIB_FILES = {DETECTION_FILE[0].lower(), PARSING_FILE[0].lower(), "parsing_bisenet.pth",
                  "detection_mobilenet0.25_final.pth"}


@dataclass(frozen=True)
class RestorerSpec:
    name: str  # as A1111 shows it and as spandrel's architecture id
    folder: str
    flag: str
    known_files: tuple[str, ...]
    url: str


GFPGAN = RestorerSpec("GFPGAN", "GFPGAN", "gfpgan", ("GFPGANv1.4.pth", "GFPGANv1.3.pth", "GFPGANv1.4.safetensors"),
                      "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth")
CODEFORMER = RestorerSpec("CodeFormer", "Codeformer", "codeformer",
                          ("codeformer-v0.1.0.pth", "codeformer.pth", "codeformer-v0.1.0.safetensors"),
                          "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth")


def facexlib_folders(models_dir: Path) -> list[Path]:
    """Where the detector and parsing weights are looked for: `models/facexlib`, then A1111's places for
    them (it let facexlib download into the GFPGAN and Codeformer folders)."""
    return [models_dir / "facexlib", models_dir / "GFPGAN", models_dir / "Codeformer"]


def find_facexlib_folder(models_dir: Path) -> Path:
    """The folder holding both facexlib files; ModelFileMissingError naming the file and folder otherwise."""
    folders = facexlib_folders(models_dir)
    for folder in folders:
        if (folder / DETECTION_FILE[0]).is_file() and (folder / PARSING_FILE[0]).is_file():
            return folder
    has_det = any((f / DETECTION_FILE[0]).is_file() for f in folders)
    name, url = PARSING_FILE if has_det else DETECTION_FILE
    raise ModelFileMissingError(name, folders[0], url, what="Face restoration (facexlib's face "
                                                            f"{'parsing' if has_det else 'detection'} network)")


def bgr_to_tensor(image_bgr: np.ndarray) -> Any:
    """A 0..255 BGR crop to the (1, 3, H, W) RGB tensor in -1..1 that GFPGAN and CodeFormer take."""
    import torch

    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1], dtype=np.float32) / 255.0
    return (torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0) - 0.5) / 0.5


def tensor_to_bgr(tensor: Any) -> np.ndarray:
    """The network's -1..1 RGB output back to a uint8 BGR crop."""
    rgb = ((tensor[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
    return (rgb[:, :, ::-1] * 255.0).round().clip(0, 255).astype(np.uint8)


def restore_crop(net: Any, crop_bgr: np.ndarray, name: str, weight: float = 0.5) -> np.ndarray:
    """Run GFPGAN/CodeFormer (the raw torch module) on one aligned 512x512 face crop."""
    import torch

    param = next(net.parameters())
    x = bgr_to_tensor(crop_bgr).to(param.device, param.dtype)
    with torch.inference_mode():
        out = net(x, weight=weight)[0] if name == "CodeFormer" else net(x, return_rgb=False)[0]
    return tensor_to_bgr(out)


class FaceRestorerSpandrel(FaceRestoration):
    """One of A1111's two restorers: the spandrel network plus a facexlib FaceRestoreHelper."""

    def __init__(self, spec: RestorerSpec, models_dir: Path, user_path: str | None, device: Any) -> None:
        self.spec = spec
        self.models_dir = Path(models_dir)
        self.folders = ([Path(user_path).expanduser()] if user_path else []) + [self.models_dir / spec.folder]
        self.device = device
        self._net: Any = None
        self._net_key: str | None = None
        self._helper: Any = None
        self._lock = threading.Lock()

    def name(self) -> str:
        return self.spec.name

    def model_file(self) -> Path:
        """The network's file: a known file name first, then any other model file in the folders."""
        files = [f for f in list_model_files(self.folders) if f.name.lower() not in FACEXLIB_FILES]
        known = {n.lower(): i for i, n in enumerate(self.spec.known_files)}
        files.sort(key=lambda f: known.get(f.name.lower(), len(known)))
        if not files:
            raise ModelFileMissingError(self.spec.known_files[0], self.folders[-1], self.spec.url,
                                        what=f"{self.spec.name} face restoration")
        return files[0]

    def status(self) -> str | None:
        """None when every file is in place, else what is missing (for the UI, without loading anything)."""
        try:
            self.model_file()
            find_facexlib_folder(self.models_dir)
        except WebUIError as e:
            return str(e)
        return None

    def net(self) -> Any:
        from modules import modelloader

        path = self.model_file()
        key = f"{path.resolve()}:{path.stat().st_mtime_ns}"
        if self._net is None or self._net_key != key:
            self._net = None
            descriptor = modelloader.load_spandrel_model(path, device=self.device or "cpu",
                                                         expected_architecture=self.spec.name)
            self._net, self._net_key = descriptor.model, key
        return self._net

    def helper(self) -> Any:
        if self._helper is None:
            folder = find_facexlib_folder(self.models_dir)
            self._helper = create_face_helper(folder, self.device or "cpu")
        return self._helper

    def send_model_to(self, device: Any) -> None:
        """`face_restoration_unload`: move the network off the GPU between uses."""
        if self._net is not None:
            self._net.to(device)
        if self._helper is not None:
            self._helper.face_det.to(device)
            self._helper.face_parse.to(device)

    def restore(self, np_image: np.ndarray, w: float | None = None) -> np.ndarray:
        with self._lock:
            net = self.net()
            if self.device is not None:
                net.to(self.device)
            helper = self.helper()
            from modules.face_restoration import _settings

            weight = float(_settings["get_opt"]("code_former_weight", 0.5)) if w is None else float(w)
            return restore_with_helper(helper, np_image, lambda crop: restore_crop(net, crop, self.spec.name,
                                                                                    weight))


def _validate_weights(path: Path) -> None:
    """facexlib reads its files with torch.load; check them first with our weights-only loader, so a
    malicious or damaged file is refused with a clear message."""
    from modules import modelloader

    modelloader.load_state_dict(path)


def create_face_helper(folder: Path, device: Any) -> Any:
    """facexlib's FaceRestoreHelper as A1111 sets it up (RetinaFace ResNet-50, ParseNet, 512px faces),
    reading its weights from `folder` (which holds both files, so facexlib downloads nothing)."""
    _validate_weights(folder / DETECTION_FILE[0])
    _validate_weights(folder / PARSING_FILE[0])
    import torch
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    try:
        return FaceRestoreHelper(upscale_factor=1, face_size=512, crop_ratio=(1, 1), det_model="retinaface_resnet50",
                                 save_ext="png", use_parse=True, device=torch.device(device),
                                 model_rootpath=str(folder))
    except (RuntimeError, KeyError) as e:
        raise ModelLoadError(folder, f"facexlib's weights do not fit its networks ({str(e).splitlines()[0]})") from None


def restore_with_helper(helper: Any, np_image: np.ndarray, restore_face: Any) -> np.ndarray:
    """Detect and align every face, restore each crop, paste them back (RGB uint8 in and out)."""
    import cv2

    bgr = np.ascontiguousarray(np_image[:, :, ::-1])
    original = bgr.shape[0:2]
    try:
        helper.clean_all()
        helper.read_image(bgr)
        helper.get_face_landmarks_5(only_center_face=False, resize=640, eye_dist_threshold=5)
        helper.align_warp_face()
        if not helper.cropped_faces:
            return np_image
        for crop in helper.cropped_faces:
            helper.add_restored_face(restore_face(crop))
        helper.get_inverse_affine(None)
        img = helper.paste_faces_to_input_image()
        img = img[:, :, ::-1]
        if img.shape[0:2] != original:
            img = cv2.resize(img, (original[1], original[0]), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(img).astype(np.uint8)
    finally:
        helper.clean_all()


def build_restorers(runtime: Any) -> list[FaceRestorerSpandrel]:
    use_cpu = getattr(runtime.cmd_opts, "use_cpu", None) or []
    out = []
    for spec in (CODEFORMER, GFPGAN):  # A1111's order of the face_restoration_model choices
        device = "cpu" if ("all" in use_cpu or spec.flag in use_cpu) else runtime.policy.device
        user_path = getattr(runtime.cmd_opts, f"{spec.flag}_models_path", None)
        out.append(FaceRestorerSpandrel(spec, runtime.paths.models_dir, user_path, device))
    return out
