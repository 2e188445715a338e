"""The one long-lived Runtime: flags, paths, settings, registries and the model manager."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.devices import DevicePolicy
from modules.errors import ModelLoadError, ModelNotFoundError, WebUIError
from modules.hashes import HashCache
from modules.jobs import JobQueue
from modules.model_manager import ModelManager
from modules.model_registry import ModelRegistry
from modules.options import Options
from modules.paths import Paths
from modules.scripts import ScriptRunner

log = logging.getLogger(__name__)


def no_checkpoint_message(paths: Paths) -> str:
    return (f"No Stable Diffusion checkpoint found. Put a .safetensors or .ckpt file (or a diffusers model "
            f"folder) into {paths.ckpt_dir} and press the refresh button next to the checkpoint list.")


@dataclass
class Runtime:
    """Everything the UI and the API need, built by initialize.create_runtime."""

    cmd_opts: Any
    paths: Paths
    opts: Options
    policy: DevicePolicy
    hash_cache: HashCache
    registry: ModelRegistry
    models: ModelManager
    warnings: list[str] = field(default_factory=list)
    model_status: str = ""
    jobs: JobQueue = field(default_factory=JobQueue)
    scripts_txt2img: ScriptRunner = field(default_factory=ScriptRunner)
    scripts_img2img: ScriptRunner = field(default_factory=ScriptRunner)
    styles: Any = None
    embeddings: Any = None
    ui_loadsave: Any = None  # ui-config.json, once the page is built (modules.ui_loadsave)
    _switch_lock: threading.Lock = field(default_factory=threading.Lock)
    _conditioners: dict[int, Any] = field(default_factory=dict)
    _loras: Any = None
    _extra_networks: Any = None
    _vaes: Any = None
    _hypernetworks: Any = None

    # --- extra networks ------------------------------------------------------------------------
    @property
    def loras(self) -> Any:
        """The LoraDatabase over models/Lora (and A1111's old models/LyCORIS), scanned on first use."""
        if self._loras is None:
            from modules.lora import LoraDatabase

            dirs = [self.paths.lora_dir, self.paths.models_dir / "LyCORIS"]
            self._loras = LoraDatabase(dirs, self.hash_cache)
        return self._loras

    @property
    def vaes(self) -> Any:
        """The VaeDatabase: models/VAE (+ --vae-dir) and `*.vae.*` files beside checkpoints."""
        if self._vaes is None:
            from modules.sd_vae import VaeDatabase

            self._vaes = VaeDatabase(self.paths.vae_dirs, self.paths.ckpt_dirs, self.hash_cache)
        return self._vaes

    @property
    def hypernetworks(self) -> Any:
        """The HypernetworkDatabase over models/hypernetworks (`.pt`, recursive)."""
        if self._hypernetworks is None:
            from modules.hypernetworks import HypernetworkDatabase

            self._hypernetworks = HypernetworkDatabase([self.paths.hypernetwork_dir])
        return self._hypernetworks

    @property
    def extra_networks(self) -> Any:
        """Handlers of `<lora:...>` (alias `<lyco:...>`) and the other extra-network tags."""
        if self._extra_networks is None:
            from modules.extra_networks import ExtraNetworkRegistry
            from modules.lora import ExtraNetworkLora

            registry = ExtraNetworkRegistry()
            from modules.sd_vae import VaeSelector

            registry.before_batch.append(VaeSelector(self.vaes))
            registry.register(ExtraNetworkLora(self.loras), aliases=("lyco",))
            from modules.hypernetworks import ExtraNetworkHypernet

            registry.register(ExtraNetworkHypernet(self.hypernetworks))
            self._extra_networks = registry
        return self._extra_networks

    # --- checkpoints ---------------------------------------------------------------------------
    def refresh_checkpoints(self) -> list[str]:
        self.registry.refresh()
        titles = self.registry.titles()
        if not titles:
            self.model_status = no_checkpoint_message(self.paths)
        return titles

    def checkpoint_titles(self) -> list[str]:
        return self.registry.titles()

    def current_title(self) -> str | None:
        info = self.models.current_info
        return info.title if info else None

    def switch_checkpoint(self, name: str, progress: Callable[[str], None] | None = None, *, save: bool = True
                          ) -> str:
        """Load a checkpoint and store it as `sd_model_checkpoint` (written to the settings file unless `save` is
        False, for callers that save once for several changes); on failure the old one keeps serving."""
        with self._switch_lock:
            try:
                model = self.models.load(name, progress)
            except (ModelLoadError, ModelNotFoundError) as e:
                self.model_status = str(e)
                raise
            info = self.models.current_info
            assert info is not None
            self.opts.set("sd_model_checkpoint", info.title, run_callbacks=False)
            if save:
                self.save_settings()
            self.model_status = f"Loaded {info.title}: {model.reason} ({model.load_seconds:.1f}s)"
            return info.title

    @contextlib.contextmanager
    def checkpoint_for_job(self, name: str | None, restore_afterwards: bool = True) -> Iterator[None]:
        """`override_settings.sd_model_checkpoint`: the job runs on `name`, then the previous model is current
        again (from the RAM cache when `sd_checkpoints_limit` allows). Without restore it stays, as A1111."""
        previous = self.models.current_info
        info = self.registry.require(name) if name else None
        if info is None or (previous is not None and info.filename == previous.filename):
            yield
            return
        if not restore_afterwards:
            self.switch_checkpoint(info.title)
            yield
            return
        self.models.load(info.title)
        try:
            yield
        finally:
            if previous is not None:
                try:
                    self.models.load(previous.title)
                except WebUIError as e:
                    log.error("Could not switch back to %s after the job: %s", previous.title, e)
                    self.model_status = str(e)

    def load_initial_model(self) -> None:
        """--ckpt first, then the saved `sd_model_checkpoint`, then the first checkpoint found."""
        if getattr(self.cmd_opts, "skip_load_model_at_start", False) or getattr(self.cmd_opts, "ui_debug_mode", False):
            self.model_status = "Model loading skipped at start (--skip-load-model-at-start)."
            return
        titles = self.refresh_checkpoints()
        if not titles:
            log.warning(self.model_status)
            return
        candidates = []
        if getattr(self.cmd_opts, "ckpt", None):
            candidates.append(str(Path(self.cmd_opts.ckpt).expanduser().resolve()))
        if self.opts.sd_model_checkpoint:
            candidates.append(self.opts.sd_model_checkpoint)
        candidates.append(self.registry.list()[0].title)
        for name in candidates:
            info = self.registry.closest(name)
            if info is None:
                msg = f"Checkpoint {name!r} from the settings/command line was not found; trying the next one."
                self.warnings.append(msg)
                log.warning(msg)
                continue
            try:
                self.switch_checkpoint(info.title)
                return
            except WebUIError as e:
                self.warnings.append(str(e))
        log.error("No checkpoint could be loaded: %s", self.model_status)

    def start_initial_load(self) -> Any:
        """Queue the start-up load (`load_initial_model`) as the first job; returns the Job."""
        def load(state: Any) -> None:
            state.textinfo = "Loading the checkpoint"
            self.load_initial_model()

        return self.jobs.submit("load checkpoint", load)

    def download_default_model(self, progress: Callable[[int, int | None], None] | None = None) -> str:
        """The SD1.5 download A1111 offers when no checkpoint exists; explicit, never at start-up."""
        from modules.model_download import download_default_model

        if getattr(self.cmd_opts, "no_download_sd_model", False):
            raise WebUIError("Downloading the default model is disabled (--no-download-sd-model). "
                             + no_checkpoint_message(self.paths))
        path = download_default_model(self.paths.ckpt_dir, progress)
        self.refresh_checkpoints()
        return self.switch_checkpoint(str(path))

    def output_dir(self, key: str, common_key: str | None = None) -> Path:
        """An output folder from settings (A1111: the common folder, when set, wins), relative to the data folder."""
        value = (self.opts.get(common_key) if common_key else "") or self.opts.get(key) or "outputs"
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.paths.data_dir / path

    def conditioner_for(self, model: Any) -> Any:
        """The prompt encoder of a loaded model (one per model, keeping its cache of encoded prompts)."""
        key = id(model)
        if key not in self._conditioners:
            from modules.conditioning import ConditioningOptions, TextConditioner

            self._conditioners = {k: v for k, v in self._conditioners.items()
                                  if any(id(m) == k for m in self.models.loaded_models())}
            self._conditioners[key] = TextConditioner.from_loaded(
                model, ConditioningOptions.from_settings(self.opts.get), self.embeddings)
        return self._conditioners[key]

    # --- settings ------------------------------------------------------------------------------
    def save_settings(self) -> None:
        try:
            self.opts.save(self.paths.settings_file)
        except OSError as e:
            log.error("Could not save settings to %s: %s", self.paths.settings_file, e)
