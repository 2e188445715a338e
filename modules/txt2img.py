"""L3 processing: txt2img's request -> processing object, as A1111's `modules.txt2img` names it.

The job itself (checkpoint, settings, scripts, process_images) is `job_runner.run`, shared by every kind.
"""

from __future__ import annotations

from typing import Any

from modules import job_runner
from modules.compat_surface import txt2img  # noqa: F401 - A1111's UI entry point; raises a clear error
from modules.params import Txt2ImgParams
from modules.processing import StableDiffusionProcessingTxt2Img
from modules.state import JobState


def build_processing(runtime: Any, params: Txt2ImgParams, state: JobState, *, is_api: bool = False
                     ) -> StableDiffusionProcessingTxt2Img:
    """The txt2img processing object for `params`, bound to the loaded model (see job_runner.build_processing)."""
    p = job_runner.build_processing(runtime, params, state, is_api=is_api)
    assert isinstance(p, StableDiffusionProcessingTxt2Img)
    return p


txt2img_create_processing = build_processing  # (runtime, params, state): our arguments, not A1111's UI list
