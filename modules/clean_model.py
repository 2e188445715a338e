"""L2 backend: a loaded model guaranteed to hold its checkpoint's own weights and modules, for training and merging.

Generation leaves one deliberate cache on a model after a job: LoRA deltas stay merged (A1111 does the same, so the
next job with the same LoRAs costs nothing) and the chosen VAE stays in place until the next job picks one.
Everything else a job changes is undone when it ends (see process_loop.job_model_scope). `clean_model` undoes the
caches too: weights restored bit-exactly through the model patcher, hypernetwork hooks off, the checkpoint's VAE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from modules import hypernetworks, sd_vae
from modules.model_patcher import patcher_for


def make_clean(model: Any) -> None:
    """Put the model back to its checkpoint's own state (the next generation re-applies what it needs)."""
    patcher = patcher_for(model)
    patcher.set_extra(None)
    patcher.restore()
    patcher.release()
    hypernetworks.remove(model)
    sd_vae.apply_vae(model, None)
    model.extra["lora_te_salt"] = None  # the text encoders are the checkpoint's again


@contextlib.contextmanager
def clean_model(model: Any) -> Iterator[Any]:
    """`with clean_model(model) as m:` m holds exactly the checkpoint's weights for the whole block."""
    make_clean(model)
    yield model
