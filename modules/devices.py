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


# --- A1111's module-level names for extensions (`devices.device`, `devices.dtype`, `torch_gc`, `autocast`...) ---
# They read the policy the runtime chose (bound by modules.shared.bind); nothing here changes that choice.

_bound: tuple[DevicePolicy, Any] | None = None
fp8 = False
unet_needs_upcast = False
has_xpu = False


class NansException(Exception):
    """A1111 raises this when a tensor is all NaN (e.g. a VAE overflowing in fp16)."""


def bind(policy: DevicePolicy | None, cmd_opts: Any = None) -> None:
    global _bound
    _bound = None if policy is None else (policy, cmd_opts)


def _policy() -> DevicePolicy:
    if _bound is None:
        return build_policy(None)
    return _bound[0]


def get_optimal_device() -> Any:
    return _policy().device


def get_optimal_device_name() -> str:
    return str(_policy().device)


def get_device_for(task: str) -> Any:
    """The device for a task: the CPU when `--use-cpu all|<task>` says so, else the main device."""
    cmd_opts = _bound[1] if _bound is not None else None
    use_cpu = getattr(cmd_opts, "use_cpu", ()) or ()
    if "all" in use_cpu or task in use_cpu:
        import torch

        return torch.device("cpu")
    return get_optimal_device()


def has_mps() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def autocast(disable: bool = False) -> Any:
    """A context for extension code that mixes dtypes: CUDA autocast at the model dtype, else nothing."""
    import contextlib

    import torch

    policy = _policy()
    if disable or policy.device.type != "cuda" or policy.dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=policy.dtype)


def without_autocast(disable: bool = False) -> Any:
    import contextlib

    import torch

    if torch.is_autocast_enabled() and not disable:
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()


def cond_cast_unet(x: Any) -> Any:
    return x.to(_policy().dtype) if unet_needs_upcast else x


def cond_cast_float(x: Any) -> Any:
    return x.float() if unet_needs_upcast else x


def test_for_nans(x: Any, where: str) -> None:
    """Raise NansException when the first element of the batch is all NaN (A1111's check)."""
    import torch

    if x is None or not torch.isnan(x).all().item():
        return
    if where == "vae":
        message = "A tensor with all NaNs was produced in VAE. Try --no-half-vae."
    else:
        message = f"A tensor with all NaNs was produced in {where}. Try --no-half."
    raise NansException(message)


def __getattr__(name: str) -> Any:
    if name in ("device", "device_interrogate", "device_gfpgan", "device_esrgan", "device_codeformer"):
        task = {"device": "sd"}.get(name, name.removeprefix("device_"))
        return get_device_for(task)
    if name in ("dtype", "dtype_unet", "dtype_inference"):
        return _policy().dtype
    if name == "dtype_vae":
        return _policy().vae_dtype
    if name == "cpu":
        import torch

        return torch.device("cpu")
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r}")
