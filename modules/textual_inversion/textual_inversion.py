"""A1111's `modules.textual_inversion.textual_inversion` names for extensions, over our embedding code."""

from __future__ import annotations

from typing import Any

from modules.textual_inversion import Embedding, EmbeddingDatabase, embedding_from_data

__all__ = ["Embedding", "EmbeddingDatabase", "create_embedding_from_data"]


def create_embedding_from_data(data: Any, name: str, filename: str = "unknown embedding file",
                               filepath: str | None = None) -> Embedding:
    """An Embedding from a loaded file's contents (A1111 .pt/.bin/.safetensors layouts), as A1111's helper."""
    return embedding_from_data(data, name, filepath or filename)
