"""The composition root: builds the Runtime from command-line flags (no work at import)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modules import cmd_args
from modules.devices import build_policy
from modules.hashes import HashCache
from modules.model_manager import ModelManager
from modules.model_registry import ModelRegistry
from modules.options import Options
from modules.paths import build_paths
from modules.runtime import Runtime
from modules.shared_options import RESTRICTED_OPTS, build_options_table

log = logging.getLogger(__name__)


def configure_logging(level: str | None) -> None:
    logging.basicConfig(level=(level or os.environ.get("SD_WEBUI_LOG_LEVEL") or "INFO").upper(),
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    # transformers prints a full "LOAD REPORT" table for every converted text encoder; it is noise here.
    logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.ERROR)


def _frozen_keys(cmd_opts: Any, table: dict) -> set[str]:
    keys: set[str] = set()
    if cmd_opts.freeze_specific_settings:
        keys |= {k.strip() for k in cmd_opts.freeze_specific_settings.split(",") if k.strip()}
    if cmd_opts.freeze_settings_in_sections:
        sections = {s.strip() for s in cmd_opts.freeze_settings_in_sections.split(",")}
        keys |= {k for k, info in table.items() if info.section[0] in sections}
    return keys


def create_runtime(argv: Sequence[str] = (), cmd_opts: Any = None, environ: dict[str, str] | None = None) -> Runtime:
    """Parse flags (unless given), read settings and build registries; loads no model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if cmd_opts is None:
        cmd_opts = cmd_args.parse_args(argv, environ=environ)
    paths = build_paths(cmd_opts)
    paths.ensure()
    table = build_options_table()
    opts = Options(table, frozen_all=bool(cmd_opts.freeze_settings), frozen_keys=_frozen_keys(cmd_opts, table),
                   restricted_keys=RESTRICTED_OPTS if cmd_opts.hide_ui_dir_config else set())
    opts.load(paths.settings_file)
    policy = build_policy(cmd_opts, cpu_dtype=opts.cpu_dtype)
    hash_cache = HashCache(paths.data_dir / "cache.json")
    extra = [Path(cmd_opts.ckpt).expanduser()] if cmd_opts.ckpt else []
    registry = ModelRegistry(paths.ckpt_dirs, hash_cache, no_hashing=cmd_opts.no_hashing,
                             include_hidden=bool(opts.list_hidden_files), extra_files=extra)

    def prediction() -> str | None:
        value = opts.sd2_parameterization
        return None if value == "Automatic" else value

    models = ModelManager(registry, policy, cache_limit=lambda: opts.sd_checkpoints_limit,
                          prediction_override=prediction,
                          config_override=Path(cmd_opts.config).expanduser() if cmd_opts.config else None)
    runtime = Runtime(cmd_opts=cmd_opts, paths=paths, opts=opts, policy=policy, hash_cache=hash_cache,
                      registry=registry, models=models, warnings=list(opts.load_warnings))
    from modules.styles import StyleDatabase
    from modules.textual_inversion import EmbeddingDatabase

    runtime.embeddings = EmbeddingDatabase([paths.embeddings_dir], hash_cache)

    runtime.styles = StyleDatabase(list(paths.styles_files))
    for problem in getattr(runtime.styles, "errors", []):
        runtime.warnings.append(f"styles: {problem}")
    runtime.refresh_checkpoints()
    from modules.script_loading import setup_extensions

    setup_extensions(runtime)
    log.info("Device %s, dtype %s (VAE %s); data in %s", policy.device, policy.dtype, policy.vae_dtype,
             paths.data_dir)
    return runtime
