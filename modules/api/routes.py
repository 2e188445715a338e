"""The /sdapi/v1 router: each handler parses, calls the service (jobs on the shared queue) and formats."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.api import images, models, service
from modules.api.auth import origin_allowed
from modules.errors import ModelNotFoundError, SettingsError, ValidationError, WebUIError
from modules.infotext import parse_generation_parameters
from modules.params import Txt2ImgParams

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 48 * 1024 * 1024
"""Largest request body read; more is refused with 413 before parsing (two 16 MB base64 images fit)."""


class BodyTooLargeError(Exception):
    pass


def error_response(status: int, error: str, detail: Any, errors: str) -> JSONResponse:
    """A1111's error body: {error, detail, body, errors}; never a traceback."""
    return JSONResponse(status_code=status, content={"error": error, "detail": detail, "body": "", "errors": errors})


def _validation_details(e: RequestValidationError) -> tuple[list[dict[str, Any]], str]:
    details, parts = [], []
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ())]
        field = ".".join(x for x in loc if x != "body") or "body"
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (not part of this request)"
        ctx = {
            k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
            for k, v in (err.get("ctx") or {}).items()
        }
        details.append(
            {"loc": loc, "msg": msg, "type": err.get("type", "value_error"), **({"ctx": ctx} if ctx else {})}
        )
        parts.append(f"{field}: {msg}")
    return details, "; ".join(parts)


def map_exception(e: BaseException) -> JSONResponse:
    """Our error types to A1111-shaped JSON with the right status; unknown errors are 500 without details."""
    if isinstance(e, RequestValidationError):
        details, text = _validation_details(e)
        return error_response(422, "RequestValidationError", details, text)
    if isinstance(e, BodyTooLargeError):
        return error_response(413, "RequestEntityTooLarge", str(e), str(e))
    if isinstance(e, StarletteHTTPException):
        return error_response(e.status_code, type(e).__name__, e.detail, str(e.detail))
    if isinstance(e, (ValidationError, SettingsError)):
        return error_response(422, type(e).__name__, str(e), str(e))
    if isinstance(e, ModelNotFoundError):
        return error_response(404, type(e).__name__, str(e), str(e))
    if isinstance(e, service.JobFailedError):
        return error_response(500, type(e).__name__, str(e), str(e))
    if isinstance(e, WebUIError):
        return error_response(400, type(e).__name__, str(e), str(e))
    log.exception("API request failed")
    return error_response(
        500, type(e).__name__, "Internal server error; see the server log", f"{type(e).__name__}: internal server error"
    )


async def _read_capped_body(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLargeError(f"request body of {int(length)} bytes is over the {limit // (1024 * 1024)} MB limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body is over the {limit // (1024 * 1024)} MB limit")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # FastAPI reads the cached body from here


class ApiRoute(APIRoute):
    """Per-route wrapper: origin check, capped body, A1111 error bodies, X-Process-Time, optional --api-log."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            settings = request.app.state.api_settings
            try:
                origin = request.headers.get("origin")
                if (
                    request.method not in ("GET", "HEAD", "OPTIONS")
                    and origin is not None
                    and not origin_allowed(
                        origin,
                        request.headers.get("host"),
                        request.url.scheme,
                        settings["cors_origins"],
                        settings["cors_regex"],
                    )
                ):
                    raise HTTPException(403, f"cross-origin request from {origin} refused")
                if request.method in ("POST", "PUT", "PATCH"):
                    await _read_capped_body(request, settings["max_body"])
                response = await handler(request)
            except Exception as e:  # every error leaves as JSON, the server keeps serving
                response = map_exception(e)
            elapsed = time.perf_counter() - start
            response.headers["X-Process-Time"] = f"{elapsed:.4f}"
            if settings["api_log"]:
                log.info("API %s %s -> %s in %.3fs", request.method, request.url.path, response.status_code, elapsed)
            return response

        return wrapped


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _encode_all(processed: Any, opts: Any) -> list[str]:
    fmt = opts.get("samples_format", "png")
    fmt = fmt if fmt in ("png", "jpg", "jpeg", "webp") else "png"
    return [
        images.encode_pil_to_base64(
            img, fmt, quality=opts.get("jpeg_quality", 80), lossless_webp=opts.get("webp_lossless", False)
        )
        for img in processed.images
    ]


async def _wait(request: Request, pending: service.PendingJob) -> Any:
    """Wait without holding a worker thread; a client that goes away gets its queued or running job interrupted."""
    while not pending.done:
        await asyncio.sleep(service.WAIT_POLL_SECONDS)
        if await request.is_disconnected():
            request.app.state.runtime.jobs.interrupt(pending.job)
            log.info("client left; interrupted %s", pending.job.id)
    return pending.result()


def create_router() -> APIRouter:
    router = APIRouter(route_class=ApiRoute)

    @router.post("/txt2img", response_model=models.TextToImageResponse)
    async def txt2img(request: Request, body: Txt2ImgParams) -> Any:
        runtime = _runtime(request)
        pending = await run_in_threadpool(service.submit_generation, runtime, body)
        processed = await _wait(request, pending)
        encoded = await run_in_threadpool(_encode_all, processed, runtime.opts) if body.send_images else []
        return {"images": encoded, "parameters": body.model_dump(), "info": processed.js()}

    @router.post("/img2img", response_model=models.ImageToImageResponse)
    async def img2img(request: Request, body: models.ImageToImageRequest) -> Any:
        runtime = _runtime(request)
        params = await run_in_threadpool(service.img2img_params, body)
        pending = await run_in_threadpool(service.submit_generation, runtime, params)
        processed = await _wait(request, pending)
        encoded = await run_in_threadpool(_encode_all, processed, runtime.opts) if body.send_images else []
        if body.include_init_images:
            encoded += body.init_images
        # A1111 leaves the (large) init images and mask out of the echoed parameters.
        echoed = body.model_dump(exclude={"init_images", "mask", "latent_mask"})
        echoed.update(init_images=None, mask=None)
        return {"images": encoded, "parameters": echoed, "info": processed.js()}

    @router.post("/png-info", response_model=models.PNGInfoResponse)
    def png_info(body: models.PNGInfoRequest) -> Any:
        from modules.image_metadata import read_info_from_image

        image = images.decode_base64_to_image(body.image, "image")
        geninfo, items = read_info_from_image(image)
        geninfo = geninfo if isinstance(geninfo, str) else ""
        params = parse_generation_parameters(geninfo) if geninfo else {}
        safe_items = {
            str(k): v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in items.items()
        }
        return {"info": geninfo, "items": safe_items, "parameters": params}

    @router.get("/progress", response_model=models.ProgressResponse)
    def progress(
        request: Request, skip_current_image: bool = False, id_task: str | None = Query(None, max_length=200)
    ) -> Any:
        out, preview = service.progress(_runtime(request), id_task)
        out["current_image"] = None
        if preview is not None and not skip_current_image:
            buf = io.BytesIO()
            preview.save(buf, format="PNG")
            out["current_image"] = base64.b64encode(buf.getvalue()).decode("ascii")
        return out

    @router.post("/interrupt", response_model=models.InterruptResponse)
    def interrupt(request: Request, id_task: str | None = Query(None, max_length=200)) -> Any:
        job = service.target_job(_runtime(request), id_task)
        _runtime(request).jobs.interrupt(job)
        return {"id_task": job.id if job else None}

    @router.post("/skip", response_model=models.InterruptResponse)
    def skip(request: Request, id_task: str | None = Query(None, max_length=200)) -> Any:
        job = service.target_job(_runtime(request), id_task)
        _runtime(request).jobs.skip(job)
        return {"id_task": job.id if job else None}

    @router.get("/options")
    def get_options(request: Request) -> dict[str, Any]:
        return service.get_options(_runtime(request))

    @router.post("/options")
    def set_options(request: Request, body: dict[str, Any]) -> None:
        service.set_options(_runtime(request), body)

    @router.get("/cmd-flags")
    def cmd_flags(request: Request) -> dict[str, Any]:
        return service.cmd_flags(_runtime(request))

    @router.get("/samplers", response_model=list[models.SamplerItem])
    def samplers() -> Any:
        return service.samplers()

    @router.get("/schedulers", response_model=list[models.SchedulerItem])
    def schedulers() -> Any:
        return service.schedulers()

    @router.get("/latent-upscale-modes", response_model=list[models.LatentUpscalerModeItem])
    def latent_upscale_modes() -> Any:
        return service.latent_upscale_modes()

    @router.get("/sd-models", response_model=list[models.SDModelItem])
    def sd_models(request: Request) -> Any:
        return service.sd_models(_runtime(request))

    @router.get("/sd-vae", response_model=list[models.SDVaeItem])
    def sd_vae(request: Request) -> Any:
        return service.sd_vaes(_runtime(request))

    @router.get("/hypernetworks", response_model=list[models.HypernetworkItem])
    def hypernetworks(request: Request) -> Any:
        return service.hypernetworks(_runtime(request))

    @router.get("/prompt-styles", response_model=list[models.PromptStyleItem])
    def prompt_styles(request: Request) -> Any:
        return service.prompt_styles(_runtime(request))

    @router.get("/embeddings", response_model=models.EmbeddingsResponse)
    def embeddings(request: Request) -> Any:
        return service.embeddings(_runtime(request))

    @router.get("/loras", response_model=list[models.LoraItem])
    def loras(request: Request) -> Any:
        return service.loras(_runtime(request))

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints(request: Request) -> None:
        _runtime(request).refresh_checkpoints()

    @router.post("/refresh-vae")
    def refresh_vae() -> None:
        return None  # the VAE list is read from disk on every request

    @router.post("/refresh-loras")
    def refresh_loras() -> None:
        return None  # the LoRA list is read from disk on every request

    @router.post("/refresh-embeddings")
    def refresh_embeddings(request: Request) -> None:
        service.refresh_embeddings(_runtime(request))

    @router.get("/memory", response_model=models.MemoryResponse)
    def memory() -> Any:
        return service.memory()

    @router.get("/scripts", response_model=models.ScriptsList)
    def scripts(request: Request) -> Any:
        return service.scripts_list(_runtime(request))

    @router.get("/script-info", response_model=list[models.ScriptInfo])
    def script_info(request: Request) -> Any:
        return service.script_info(_runtime(request))

    @router.post("/unload-checkpoint")
    def unload_checkpoint(request: Request) -> None:
        service.unload_checkpoint(_runtime(request))

    @router.post("/reload-checkpoint")
    def reload_checkpoint(request: Request) -> None:
        service.reload_checkpoint(_runtime(request))

    return router
