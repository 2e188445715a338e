"""Device and dtype choice, made in one place from the flags and settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DevicePolicy:
    """Where models run and in which precision; built once by the runtime and passed down."""

    device: Any  # torch.device
    dtype: Any  # torch.dtype for UNet and text encoders
    vae_dtype: Any  # torch.dtype for the VAE

    @property
    def device_type(self) -> str:
        return self.device.type


def choose_device(use_cpu: list[str] | tuple[str, ...] = (), device_id: str | None = None,
                  task: str = "sd") -> Any:
    """CUDA (optionally --device-id) when present, then Apple MPS, else CPU; --use-cpu all|<task> forces CPU."""
    import torch

    if "all" in use_cpu or task in use_cpu:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device(f"cuda:{device_id}" if device_id not in (None, "") else "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtypes(device: Any, *, precision: str = "autocast", no_half: bool = False,
                  no_half_vae: bool = False, cpu_dtype: str = "bfloat16") -> tuple[Any, Any]:
    """(model dtype, VAE dtype) for a device.

    CUDA: fp16 (bf16 with --precision bf16). MPS: fp16. CPU: bf16 when the setting asks for it (about
    3x faster matmuls on current CPUs), else fp32. --no-half / --precision full force fp32 everywhere;
    --no-half-vae keeps only the VAE in fp32.
    """
    import torch

    if no_half or precision == "full":
        dtype = torch.float32
    elif device.type == "cuda":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    elif device.type == "mps":
        dtype = torch.float16
    else:
        dtype = torch.bfloat16 if (cpu_dtype == "bfloat16" or precision == "bf16") else torch.float32
    vae_dtype = torch.float32 if no_half_vae else dtype
    return dtype, vae_dtype


def build_policy(cmd_opts: Any, cpu_dtype: str = "bfloat16") -> DevicePolicy:
    device = choose_device(getattr(cmd_opts, "use_cpu", ()) or (), getattr(cmd_opts, "device_id", None))
    dtype, vae_dtype = choose_dtypes(device, precision=getattr(cmd_opts, "precision", "autocast"),
                                     no_half=getattr(cmd_opts, "no_half", False),
                                     no_half_vae=getattr(cmd_opts, "no_half_vae", False), cpu_dtype=cpu_dtype)
    return DevicePolicy(device=device, dtype=dtype, vae_dtype=vae_dtype)


def torch_gc() -> None:
    """Return cached device memory after a model leaves (no-op on CPU beyond Python's GC)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        mps.empty_cache()
