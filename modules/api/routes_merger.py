"""POST /sdapi/v1/checkpoint-merger: A1111's run_modelmerger arguments as JSON, run as a job on the shared queue."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from modules.api import service
from modules.api.routes import ApiRoute
from modules.merger import prepare_merge, run_merge
from modules.params_merger import MergeParams

log = logging.getLogger(__name__)


class MergeResponse(BaseModel):
    info: str
    filename: str
    title: str
    sha256: str | None = None


def _check(runtime: Any, params: MergeParams) -> None:
    prepare_merge(runtime, params).close()


def create_merger_router() -> APIRouter:
    router = APIRouter(route_class=ApiRoute)

    @router.post("/checkpoint-merger", response_model=MergeResponse)
    async def checkpoint_merger(request: Request, body: MergeParams) -> Any:
        runtime = request.app.state.runtime
        # Everything that can be refused is refused here (422), before the job waits in the queue.
        await run_in_threadpool(_check, runtime, body)
        pending = service.submit(runtime, "model-merge", lambda state: run_merge(runtime, body, state))
        while not pending.done:
            await asyncio.sleep(service.WAIT_POLL_SECONDS)
            if await request.is_disconnected():
                runtime.jobs.interrupt(pending.job)  # the temporary file is removed; nothing is left behind
                log.info("client left; interrupted %s", pending.job.id)
        result = pending.result()
        return {"info": result.message, "filename": result.filename, "title": result.title, "sha256": result.sha256}

    return router
