"""One clear error for extensions that import A1111's LDM back end (`ldm.*`, `sgm.*`, sampler/hijack modules).

An import finder placed last on sys.meta_path: it only sees names nothing else could import, and for the
LDM ones it raises a ModuleNotFoundError that names the extension and says it needs the LDM back end. Real
packages of the same name (if ever installed) still import normally, and `modules_forge` stays absent.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

LDM_PACKAGES = ("ldm", "sgm")
LDM_MODULES = ("modules.sd_samplers_kdiffusion", "modules.sd_samplers_timesteps", "modules.sd_samplers_compvis",
               "modules.sd_samplers_cfg_denoiser", "modules.sd_hijack_unet", "modules.sd_hijack_optimizations",
               "modules.sd_hijack_clip", "modules.sd_hijack_open_clip", "modules.sd_hijack_utils",
               "modules.sd_hijack_checkpoint", "modules.sd_hijack_xlmr", "modules.sd_models_xl",
               "modules.sd_models_config", "modules.sd_disable_initialization", "modules.xlmr", "modules.xlmr_m18")


class LDMInternalsImportError(ModuleNotFoundError):
    """An extension imported a module of A1111's LDM back end."""


def is_ldm_name(fullname: str) -> bool:
    top = fullname.split(".", 1)[0]
    return top in LDM_PACKAGES or any(fullname == m or fullname.startswith(m + ".") for m in LDM_MODULES)


def ldm_import_error(fullname: str) -> LDMInternalsImportError:
    from modules.shared import calling_extension

    return LDMInternalsImportError(
        f"Extension {calling_extension()!r} imports {fullname}: LDM internals are not supported. That module "
        f"belongs to A1111's original LDM back end, which this webui (built on diffusers) does not have; the "
        f"extension needs the original LDM back end. Its other scripts keep working.")
    # No `name=`: `from modules import sd_hijack_unet` would otherwise turn it into "cannot import name".


class _LDMFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if is_ldm_name(fullname):
            raise ldm_import_error(fullname)
        return None


_finder = _LDMFinder()


def install() -> None:
    """Idempotent; called before extension scripts and preloads run."""
    if _finder not in sys.meta_path:
        sys.meta_path.append(_finder)


def uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
