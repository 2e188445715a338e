"""The training services the UI and the API call: create files, and `run_training(runtime, params, state)` jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.params_train import (
    CreateEmbeddingParams,
    CreateHypernetworkParams,
    TrainEmbeddingParams,
    TrainHypernetworkParams,
    TrainLoraParams,
)
from modules.training import embedding, hypernetwork, lora_trainer
from modules.training.loop import TrainingMonitor
from modules.training.session import TrainingResult

TrainParams = TrainEmbeddingParams | TrainHypernetworkParams | TrainLoraParams

_KINDS = {
    TrainEmbeddingParams: ("train-embedding", embedding),
    TrainHypernetworkParams: ("train-hypernetwork", hypernetwork),
    TrainLoraParams: ("train-lora", lora_trainer),
}


def job_name(params: TrainParams) -> str:
    return _KINDS[type(params)][0]


def check_request(runtime: Any, params: TrainParams) -> None:
    """Refuse bad input before a job is queued (the job checks again: files may change meanwhile)."""
    _KINDS[type(params)][1].check_request(runtime, params)


def run_training(runtime: Any, params: TrainParams, state: Any, monitor: TrainingMonitor | None = None,
                 *, is_api: bool = False) -> TrainingResult:
    """The job body for every kind: runs on the queue's worker, so no generation runs against a half-trained model."""
    return _KINDS[type(params)][1].run_training(runtime, params, state, monitor, is_api=is_api)


def create_embedding(runtime: Any, params: CreateEmbeddingParams) -> Path:
    return embedding.create_embedding(runtime, params)


def create_hypernetwork(runtime: Any, params: CreateHypernetworkParams) -> Path:
    return hypernetwork.create_hypernetwork(runtime, params)
