"""L3 processing: img2img's request -> processing object and the folder batch, under A1111's `modules.img2img`
names. The job itself is `job_runner.run`, shared by every kind."""

from __future__ import annotations

from typing import Any

from modules import img2img_batch, job_runner
from modules.errors import WebUIError
from modules.params import Img2ImgParams
from modules.processing import StableDiffusionProcessingImg2Img
from modules.state import JobState


def build_processing(runtime: Any, params: Img2ImgParams, state: JobState, *, is_api: bool = False
                     ) -> StableDiffusionProcessingImg2Img:
    """The img2img processing object for `params`, bound to the loaded model (see job_runner.build_processing)."""
    p = job_runner.build_processing(runtime, params, state, is_api=is_api)
    assert isinstance(p, StableDiffusionProcessingImg2Img)
    return p


img2img_create_processing = build_processing  # (runtime, params, state): our arguments, not A1111's UI list


def img2img(id_task: str, request: Any, *args: Any) -> Any:
    """A1111's UI entry point takes the tab's positional Gradio values, whose order differs here."""
    raise WebUIError("modules.img2img.img2img takes A1111's positional Gradio arguments, whose order this webui's "
                     "tab does not share; queue an Img2ImgParams with modules.job_runner.submit instead.")


def process_batch(p: Any, input_dir: str, output_dir: str, inpaint_mask_dir: str, args: Any = None, **kwargs: Any
                  ) -> Any:
    """A1111's folder batch for a prepared p: every image of `input_dir` through the img2img job body."""
    runtime = getattr(p, "runtime", None)
    if runtime is None:
        raise WebUIError("process_batch needs a processing object made by this webui (p.runtime is not set)")
    params = Img2ImgParams(prompt=p.prompt if isinstance(p.prompt, str) else "", steps=p.steps, width=p.width,
                           height=p.height, seed=p.seed, cfg_scale=p.cfg_scale, sampler_name=p.sampler_name,
                           denoising_strength=p.denoising_strength, init_images=[])

    def run_one(one: Any, out: str | None, saving: dict[str, Any]) -> Any:
        request = job_runner.JobRequest(one, output_dir=out, trusted_overrides=saving)
        return job_runner.run(runtime, request, p.state)

    return img2img_batch.run_batch(params, p.state, run_one, input_dir=input_dir, output_dir=output_dir,
                                   mask_dir=inpaint_mask_dir)
