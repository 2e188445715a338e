"""The Checkpoint Merger engine: A1111's modes, streamed one tensor at a time into a file renamed into place.

Why our own code and not sd-mecha (1.1.8, tried on our tiny checkpoints in the real LDM layout): sd-mecha keys
its work on built-in model configs and silently drops every key its config does not list (42 of 585 keys
of a tiny SD1 file, "keys only in A are kept" fails), has no inpainting merge (a 9-channel A with a normal B
fails half way with a size mismatch), refuses nothing up front (SD1 with SDXL fails mid-merge) and writes
straight to the target path, leaving a half-written file behind; it also writes its own `mecha_recipe`
metadata, not A1111's `sd_merge_recipe`, and needs fuzzywuzzy/python-Levenshtein. A1111's semantics on
safetensors' header plus a streaming writer are a few hundred lines (merge_plan.py, merge_io.py).

How it streams: merge_plan checks everything from the headers and fixes every output tensor's key, dtype and
shape, so the safetensors header is written first; then each tensor is read from the memory-mapped inputs,
combined in float32 a chunk at a time in reused buffers, cast and appended: private memory stays a
constant few megabytes, whatever the tensor or model size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.errors import WebUIError
from modules.merge_io import OutputTensor, SafetensorsWriter, layout, safetensors_to_ckpt
from modules.merge_plan import Entry, MergePlan, plan_merge
from modules.params_merger import MergeParams
from modules.state import JobState

log = logging.getLogger(__name__)


class MergeInterrupted(WebUIError):
    """The user stopped the merge; the temporary file is gone and nothing in the folder changed."""


@dataclass
class MergeResult:
    filename: str
    title: str
    sha256: str | None
    message: str


# --- tensors --------------------------------------------------------------------------------------------------
CHUNK = 1 << 20
"""Elements per step. The float32 work buffers (4 MB each) are allocated once and reused: no page faults for
fresh temporaries, cache-sized passes, and memory that stays constant however large a tensor is."""


class Buffers:
    """Reusable float32 work buffers, and a ring of output buffers per dtype: a buffer handed to the writer
    thread is reused only after it has been written."""

    RING = 6  # more than the writer's queue holds, so the merging thread rarely waits

    def __init__(self) -> None:
        self.x, self.y, self.z = (torch.empty(CHUNK) for _ in range(3))
        self._rings: dict[torch.dtype, list[tuple[torch.Tensor, threading.Event]]] = {}
        self._turn: dict[torch.dtype, int] = {}

    def out(self, dtype: torch.dtype, n: int) -> tuple[torch.Tensor, Callable[[], None]]:
        """A free output buffer of n elements and the callback that frees it again."""
        ring = self._rings.get(dtype)
        if ring is None:
            ring = self._rings[dtype] = [(torch.empty(CHUNK, dtype=dtype), threading.Event()) for _ in
                                         range(self.RING)]
            for _, free in ring:
                free.set()
            self._turn[dtype] = 0
        i = self._turn[dtype]
        self._turn[dtype] = (i + 1) % self.RING
        tensor, free = ring[i]
        free.wait()
        free.clear()
        return tensor[:n], free.set


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch intra-op threads off for the merge: the passes over cache-sized chunks are memory-bound, and
    thread hand-offs made them 10-20x slower on a busy 2-core machine (measured). Merges run alone on the job
    worker, and the previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _write_converted(t: torch.Tensor, dtype: torch.dtype, writer: SafetensorsWriter, buf: Buffers) -> None:
    if t.dtype == dtype:
        writer.write_piece(t)  # straight from the memory map
        return
    flat = t.reshape(-1)
    for s in range(0, flat.numel(), CHUNK):
        piece = flat[s:s + CHUNK]
        out, done = buf.out(dtype, piece.numel())
        out.copy_(piece)
        writer.write_piece(out, done)


def _formula(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, m: float) -> torch.Tensor:
    """Weighted sum A*(1-M) + B*M, or Add difference A + (B-C)*M, in float32 (small tensors)."""
    if c is None:
        return a * (1 - m) + b * m
    return a + (b - c) * m


def emit(plan: MergePlan, e: Entry, writer: SafetensorsWriter, buf: Buffers) -> None:
    """Compute one output tensor as the plan says and write it, a chunk at a time."""
    writer.begin(e.key, e.dtype, e.shape)
    if e.op == "vae":
        assert plan.vae is not None and e.vae_key is not None
        _write_converted(plan.vae.get(e.vae_key).reshape(e.shape), e.dtype, writer, buf)
        return
    a = plan.a.source.get(e.key)
    if e.op == "copy":
        _write_converted(a, e.dtype, writer, buf)
        return
    assert plan.b is not None
    b = plan.b.source.get(e.key)
    c = plan.c.source.get(e.key) if e.use_c and plan.c is not None else None
    if e.op == "merge_channels":
        # A1111's inpainting / instruct-pix2pix merge: only the 4 latent channels B has are mixed. (An input
        # convolution: small enough to do whole.)
        out = a.float().clone()
        out[:, 0:4] = _formula(out[:, 0:4], b.float(), c.float() if c is not None else None, e.multiplier)
        writer.write_piece(out.to(e.dtype))
        return
    fa, fb = a.reshape(-1), b.reshape(-1)
    fc = c.reshape(-1) if c is not None else None
    if fc is None and a.dtype == b.dtype == e.dtype and e.dtype in (torch.float16, torch.bfloat16):
        # torch's half/bfloat16 lerp computes in float32 and rounds once: bitwise what the float32 path below
        # gives (checked on 64M random values), in one pass instead of four.
        for s in range(0, fa.numel(), CHUNK):
            n = min(CHUNK, fa.numel() - s)
            out, done = buf.out(e.dtype, n)
            writer.write_piece(torch.lerp(fa[s:s + n], fb[s:s + n], e.multiplier, out=out), done)
        return
    for s in range(0, fa.numel(), CHUNK):
        n = min(CHUNK, fa.numel() - s)
        x, y = buf.x[:n], buf.y[:n]
        x.copy_(fa[s:s + n])
        y.copy_(fb[s:s + n])
        if fc is None:
            x.lerp_(y, e.multiplier)  # A + (B - A) * M = A * (1 - M) + B * M, in one pass
        else:
            z = buf.z[:n]
            z.copy_(fc[s:s + n])
            x.add_(y.sub_(z), alpha=e.multiplier)
        out, done = buf.out(e.dtype, n)
        out.copy_(x)  # x is reused for the next chunk at once; the ring buffer waits for the writer
        writer.write_piece(out, done)


# --- metadata -------------------------------------------------------------------------------------------------
def _parsed(value: str | None) -> Any:
    if isinstance(value, str) and value.startswith("{"):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def merge_recipe_metadata(plan: MergePlan, hashes: dict[str, str | None]) -> dict[str, str]:
    """`sd_merge_recipe` and `sd_merge_models` as A1111 writes them (JSON strings)."""
    p = plan.params
    recipe = {
        "type": "webui",
        "primary_model_hash": hashes.get("A"),
        "secondary_model_hash": hashes.get("B"),
        "tertiary_model_hash": hashes.get("C"),
        "interp_method": p.interp_method,
        "multiplier": p.multiplier,
        "save_as_half": p.save_as_half,
        "custom_name": p.custom_name,
        "config_source": p.config_source,
        "bake_in_vae": p.bake_in_vae,
        "discard_weights": p.discard_weights,
        "is_inpainting": plan.is_inpainting,
        "is_instruct_pix2pix": plan.is_instruct_pix2pix,
    }
    if plan.block_weights is not None:  # ours; A1111 readers ignore unknown recipe fields
        recipe["block_weights"] = plan.block_weights.describe()
    models: dict[str, Any] = {}
    for m in plan.models():
        meta = m.source.metadata
        models[str(hashes.get(m.role))] = {
            "name": m.info.name,
            "legacy_hash": m.info.hash,
            "sd_merge_recipe": _parsed(meta.get("sd_merge_recipe")),
        }
        nested = _parsed(meta.get("sd_merge_models"))
        if isinstance(nested, dict):
            models.update(nested)
    return {"sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models)}


# --- running --------------------------------------------------------------------------------------------------
def _eta_text(state: JobState) -> str:
    eta = state.eta()
    return f", ETA {eta:.0f}s" if eta is not None else ""


def execute(plan: MergePlan, state: JobState, metadata: dict[str, str] | None) -> Path:
    """Write the merged checkpoint to a temporary file in the output folder; rename it into place when complete.

    Interrupt (checked between tensors), an error or a full disk remove the temporary file; the folder is as
    it was.
    """
    outputs = layout(OutputTensor(e.key, e.dtype, e.shape) for e in plan.entries)
    by_key = {e.key: e for e in plan.entries}
    total = len(outputs)
    state.job_count, state.job_no = 1, 0
    state.sampling_steps, state.sampling_step = total, 0
    state.textinfo = f"Merging 0/{total} tensors"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{plan.filename}.", suffix=".tmp", dir=plan.out_dir)
    tmp = Path(tmp_name)
    extra: Path | None = None
    try:
        from tqdm import tqdm

        with (os.fdopen(fd, "wb") as f, tqdm(total=total, desc="Merging", unit="tensor") as bar,
              single_thread()):
            writer = SafetensorsWriter(f, outputs, metadata)
            try:
                buffers = Buffers()
                for i, out in enumerate(outputs):
                    if state.interrupted:
                        raise MergeInterrupted("Merge interrupted; nothing was saved")
                    emit(plan, by_key[out.key], writer, buffers)
                    state.sampling_step = i + 1
                    state.textinfo = f"Merging {i + 1}/{total} tensors{_eta_text(state)}"
                    bar.update(1)
                writer.finish()
            finally:
                writer.close()  # before the file and the memory maps it writes from are closed
        final_tmp = tmp
        if plan.params.checkpoint_format == "ckpt":
            state.textinfo = "Saving as ckpt"
            fd2, extra_name = tempfile.mkstemp(prefix=f".{plan.filename}.", suffix=".tmp", dir=plan.out_dir)
            os.close(fd2)
            extra = Path(extra_name)
            safetensors_to_ckpt(tmp, extra)
            final_tmp = extra
        if plan.out_path.exists() and not plan.params.overwrite:
            raise WebUIError(f"{plan.filename} appeared in {plan.out_dir} while merging; nothing was overwritten")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(final_tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved checkpoint gets the usual mode
        os.replace(final_tmp, plan.out_path)
    except OSError as e:
        raise WebUIError(f"Could not write {plan.filename} in {plan.out_dir}: {e.strerror or e}; nothing "
                         "was saved") from None
    finally:
        for leftover in (tmp, extra):
            if leftover is not None:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        plan.close()
    return plan.out_path


def _hash_inputs(runtime: Any, plan: MergePlan, state: JobState) -> dict[str, str | None]:
    hashes: dict[str, str | None] = {}
    for m in plan.models():
        state.textinfo = f"Hashing {m.role} ({m.info.name})"
        runtime.registry.calculate_shorthash(m.info)
        hashes[m.role] = m.info.sha256
    return hashes


def _copy_config(plan: MergePlan) -> str | None:
    """A1111's create_config: the source's same-name .yaml (ours: or config folder) beside the new file."""
    src = plan.config_file
    if src is None:
        return None
    stem = str(plan.out_path)[: -len(plan.out_path.suffix)]  # "x.inpainting.safetensors" -> "x.inpainting"
    try:
        if src.is_dir():
            shutil.copytree(src, stem, dirs_exist_ok=True)
            return stem
        shutil.copyfile(src, stem + ".yaml")
    except OSError as e:  # the checkpoint itself is saved; say what is missing
        log.warning("Could not copy the config %s: %s", src, e)
        return None
    return stem + ".yaml"


def output_dir(runtime: Any) -> Path:
    """A1111: `--ckpt-dir` when given, else models/Stable-diffusion."""
    return Path(runtime.paths.ckpt_dirs[-1])


def prepare_merge(runtime: Any, params: MergeParams) -> MergePlan:
    """All checks, from headers only; raises ValidationError naming the field."""
    return plan_merge(params, runtime.registry, runtime.vaes, output_dir(runtime))


def run_merge(runtime: Any, params: MergeParams, state: JobState) -> MergeResult:
    """The merge job: validate, hash inputs for the recipe, stream, rename, copy config, refresh the list."""
    start = time.time()
    state.textinfo = "Checking"
    plan = prepare_merge(runtime, params)
    try:
        metadata = dict(plan.base_metadata) if plan.base_metadata is not None else None
        if metadata is not None and params.add_merge_recipe:
            metadata.update(merge_recipe_metadata(plan, _hash_inputs(runtime, plan, state)))
        if state.interrupted:  # hashing big inputs takes a while; honour a click made meanwhile
            raise MergeInterrupted("Merge interrupted; nothing was saved")
        state.time_start = time.time()  # the ETA is over tensors, not the hashing before them
        path = execute(plan, state, metadata)
    finally:
        plan.close()
    config = _copy_config(plan)
    state.textinfo = "Hashing the new checkpoint"
    runtime.refresh_checkpoints()
    info = runtime.registry.get(plan.filename) or runtime.registry.closest(str(path))
    sha = None
    if info is not None:
        runtime.registry.calculate_shorthash(info)
        sha = info.sha256
    title = info.title if info is not None else plan.filename
    message = f"Checkpoint saved to {path}"
    if config:
        message += f" (config copied to {Path(config).name})"
    log.info("%s in %.1fs", message, time.time() - start)
    state.textinfo = "Checkpoint saved"
    return MergeResult(filename=str(path), title=title, sha256=sha, message=message)


def read_metadata(runtime: Any, names: list[str | None]) -> str:
    """The metadata of the selected checkpoints merged (A1111's "Read metadata from selected checkpoints")."""
    from modules.merge_io import open_source

    metadata: dict[str, Any] = {}
    for name in names:
        if not name:
            continue
        info = runtime.registry.closest(name)
        if info is None or not info.filename.lower().endswith(".safetensors"):
            continue  # only safetensors files carry metadata
        try:
            source = open_source(info.filename)
        except WebUIError as e:
            log.warning("Cannot read metadata of %s: %s", name, e)
            continue
        metadata.update({k: _parsed(v) for k, v in source.metadata.items()})
        source.close()
    return json.dumps(metadata, indent=4, ensure_ascii=False)
