"""A1111's `modules.sd_hijack`: `model_hijack` keeps the parts with a diffusers meaning; the rest raises clearly.

Extensions use `model_hijack.embedding_db` (to list embeddings), `get_prompt_lengths` (token counters) and
`comments` (notes for the infotext). Hijacking the LDM model (`hijack`, `undo_hijack`, `clip`,
`optimization_method`, ...) has no equivalent and raises an error naming the extension.
"""

from __future__ import annotations

from typing import Any


class StableDiffusionModelHijack:
    def __init__(self) -> None:
        self.comments: list[str] = []
        self.extra_generation_params: dict[str, Any] = {}

    @property
    def embedding_db(self) -> Any:
        from modules import shared

        return shared._need_runtime("sd_hijack.model_hijack.embedding_db").embeddings

    def get_prompt_lengths(self, text: str) -> tuple[int, int]:
        """(tokens used, tokens the prompt will be padded to), from the loaded model's tokenizer."""
        from modules import shared

        rt = shared._need_runtime("sd_hijack.model_hijack.get_prompt_lengths")
        model = rt.models.current
        if model is None:
            from modules.errors import WebUIError

            raise WebUIError("no model is loaded: load a checkpoint to count tokens")
        return rt.conditioner_for(model).get_prompt_lengths(text)

    def clear_comments(self) -> None:
        self.comments = []
        self.extra_generation_params = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from modules.shared import ldm_only_error

        raise ldm_only_error(f"modules.sd_hijack.model_hijack.{name}")


model_hijack = StableDiffusionModelHijack()


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.shared import ldm_only_error

    raise ldm_only_error(f"modules.sd_hijack.{name}")
