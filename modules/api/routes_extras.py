"""The Extras part of /sdapi/v1: extra-single-image, extra-batch-images, upscalers, face-restorers and
realesrgan-models, on the shared job queue with progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modules.api import images, service
from modules.api.routes import ApiRoute, _wait
from modules.api.service import PendingJob
from modules.params_extras import (
    EXTRAS_BATCH,
    EXTRAS_SINGLE,
    ExtrasBatchParams,
    ExtrasJob,
    ExtrasOptions,
    ExtrasParams,
)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str = Field(description="HTML info of the result")
    image: str | None = Field(None, description="the result, base64")


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


class RealesrganItem(BaseModel):
    name: str
    path: str | None = None
    scale: int | None = None


def _encode(image: Any, opts: Any, info: str) -> str:
    fmt = opts.get("samples_format", "png")
    fmt = fmt if fmt in ("png", "jpg", "jpeg", "webp") else "png"
    return images.encode_pil_to_base64(image, fmt, infotext=info or None, quality=opts.get("jpeg_quality", 80),
                                       lossless_webp=opts.get("webp_lossless", False))


def _submit(request: Request, job: ExtrasJob) -> PendingJob:
    from modules.extras import run_extras

    runtime = request.app.state.runtime
    return service.submit(runtime, "extras", lambda state: run_extras(runtime, job, state))


def upscaler_items(runtime: Any) -> list[dict[str, Any]]:
    from modules.upscaler import registry_for

    return [{"name": d.name, "model_name": d.model_name, "model_path": d.data_path, "model_url": d.model_url,
             "scale": d.scale} for d in registry_for(runtime).scalers]


def face_restorer_items(runtime: Any) -> list[dict[str, Any]]:
    from modules.face_restoration import restorers_for

    out = []
    for r in restorers_for(runtime):
        folders = getattr(r, "folders", None)
        out.append({"name": r.name(), "cmd_dir": str(folders[0]) if folders else None})
    return out


def realesrgan_items(runtime: Any) -> list[dict[str, Any]]:
    from modules.upscaler import registry_for

    return [{"name": d.name, "path": d.data_path, "scale": int(d.scale)} for d in registry_for(runtime).scalers
            if getattr(d.scaler, "name", None) == "RealESRGAN"]


def create_extras_router() -> APIRouter:
    router = APIRouter(route_class=ApiRoute)

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(request: Request, body: ExtrasParams) -> Any:
        runtime = request.app.state.runtime
        image = await run_in_threadpool(images.decode_base64_to_image, body.image, "image")
        options = ExtrasOptions(**body.model_dump(exclude={"image"}))
        job = ExtrasJob(options=options, extras_mode=EXTRAS_SINGLE, images=[(image, None)], save_output=False)
        result = await _wait(request, _submit(request, job))
        encoded = await run_in_threadpool(_encode, result.images[0], runtime.opts, result.infotext) \
            if result.images else None
        return {"html_info": result.html_info, "image": encoded}

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(request: Request, body: ExtrasBatchParams) -> Any:
        runtime = request.app.state.runtime

        def decode() -> list[tuple[Any, str | None]]:
            return [(images.decode_base64_to_image(item.data, f"imageList.{i}.data"), item.name or None)
                    for i, item in enumerate(body.imageList)]

        decoded = await run_in_threadpool(decode)
        job = ExtrasJob(options=body, extras_mode=EXTRAS_BATCH, images=decoded, save_output=False)
        result = await _wait(request, _submit(request, job))

        def encode_all() -> list[str]:
            return [_encode(im, runtime.opts, im.info.get("postprocessing", "")) for im in result.images]

        return {"html_info": result.html_info, "images": await run_in_threadpool(encode_all)}

    # routes.py still has placeholder /upscalers and /face-restorers; this router is included first, so these
    # answer. Their own operation ids keep the OpenAPI spec free of duplicate-id warnings until those go.
    @router.get("/upscalers", response_model=list[UpscalerItem], operation_id="get_upscalers")
    def upscalers(request: Request) -> Any:
        return upscaler_items(request.app.state.runtime)

    @router.get("/face-restorers", response_model=list[FaceRestorerItem], operation_id="get_face_restorers")
    def face_restorers(request: Request) -> Any:
        return face_restorer_items(request.app.state.runtime)

    @router.get("/realesrgan-models", response_model=list[RealesrganItem])
    def realesrgan_models(request: Request) -> Any:
        return realesrgan_items(request.app.state.runtime)

    return router
