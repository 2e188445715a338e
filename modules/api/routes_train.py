"""The Train routes of /sdapi/v1: create an embedding or hypernetwork, train one (or a LoRA) as a queue job."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from modules.api import service
from modules.api.routes import ApiRoute
from modules.params_train import (
    CreateEmbeddingParams,
    CreateHypernetworkParams,
    TrainEmbeddingParams,
    TrainHypernetworkParams,
    TrainLoraParams,
)
from modules.training import service as training

log = logging.getLogger(__name__)


class CreateResponse(BaseModel):
    info: str


class TrainResponse(BaseModel):
    """A1111's `{info}`, plus the job id (for /progress), the step reached and whether it was interrupted."""

    info: str
    id_task: str | None = None
    filename: str | None = None
    step: int | None = None
    interrupted: bool = False


async def _wait(request: Request, pending: service.PendingJob) -> Any:
    """Block like A1111's route, without holding a thread; a client that leaves interrupts its run (which saves)."""
    while not pending.done:
        await asyncio.sleep(service.WAIT_POLL_SECONDS * 5)
        if await request.is_disconnected():
            request.app.state.runtime.jobs.interrupt(pending.job)
            log.info("client left; interrupted %s", pending.job.id)
    return pending.result()


def create_router() -> APIRouter:
    router = APIRouter(route_class=ApiRoute)

    @router.post("/create/embedding", response_model=CreateResponse)
    def create_embedding(request: Request, body: CreateEmbeddingParams) -> Any:
        runtime = request.app.state.runtime
        path = service.run_job(runtime, "create-embedding", lambda state: training.create_embedding(runtime, body))
        return {"info": f"create embedding filename: {path}"}

    @router.post("/create/hypernetwork", response_model=CreateResponse)
    def create_hypernetwork(request: Request, body: CreateHypernetworkParams) -> Any:
        runtime = request.app.state.runtime
        path = service.run_job(runtime, "create-hypernetwork",
                               lambda state: training.create_hypernetwork(runtime, body))
        return {"info": f"create hypernetwork filename: {path}"}

    async def train(request: Request, body: Any, what: str) -> dict[str, Any]:
        runtime = request.app.state.runtime
        await run_in_threadpool(training.check_request, runtime, body)
        pending = service.submit(runtime, training.job_name(body),
                                     lambda state: training.run_training(runtime, body, state, is_api=True),
                                     body.force_task_id)
        result = await _wait(request, pending)
        return {"info": f"train {what} complete: filename: {result.filename} error: None", "id_task": pending.job.id,
                "filename": result.filename, "step": result.step, "interrupted": result.interrupted}

    @router.post("/train/embedding", response_model=TrainResponse)
    async def train_embedding(request: Request, body: TrainEmbeddingParams) -> Any:
        return await train(request, body, "embedding")

    @router.post("/train/hypernetwork", response_model=TrainResponse)
    async def train_hypernetwork(request: Request, body: TrainHypernetworkParams) -> Any:
        return await train(request, body, "hypernetwork")

    @router.post("/train/lora", response_model=TrainResponse)
    async def train_lora(request: Request, body: TrainLoraParams) -> Any:
        return await train(request, body, "lora")

    return router
