"""Where the program and the user's data live: one dataclass, built once from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SCRIPT_PATH = Path(__file__).resolve().parent.parent
"""The install folder (holds webui.py, configs/, modules/)."""

CONFIGS_PATH = SCRIPT_PATH / "configs"


@dataclass(frozen=True)
class Paths:
    """Folders the app reads and writes, with A1111's defaults relative to the data folder."""

    data_dir: Path
    models_dir: Path
    ckpt_dirs: tuple[Path, ...]
    vae_dirs: tuple[Path, ...]
    lora_dir: Path
    embeddings_dir: Path
    hypernetwork_dir: Path
    extensions_dir: Path
    extensions_builtin_dir: Path
    outputs_dir: Path
    cache_dir: Path
    settings_file: Path
    ui_config_file: Path
    styles_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def ckpt_dir(self) -> Path:
        """The main checkpoint folder (`models/Stable-diffusion`)."""
        return self.ckpt_dirs[0]

    def model_folder(self, name: str) -> Path:
        """A subfolder of the models folder, e.g. `ESRGAN`, `GFPGAN`."""
        return self.models_dir / name

    def ensure(self) -> None:
        """Create the folders a user is told to drop files into."""
        for folder in (self.ckpt_dir, self.vae_dirs[0], self.lora_dir, self.embeddings_dir, self.outputs_dir):
            folder.mkdir(parents=True, exist_ok=True)


def build_paths(cmd_opts: object) -> Paths:
    """Resolve every folder from parsed flags (A1111 names: --data-dir, --models-dir, --ckpt-dir...)."""

    def opt(name: str) -> str | None:
        value = getattr(cmd_opts, name, None)
        return str(value) if value else None

    data_dir = Path(opt("data_dir") or SCRIPT_PATH).expanduser().resolve()
    models_dir = Path(opt("models_dir") or data_dir / "models").expanduser().resolve()
    main_ckpt = models_dir / "Stable-diffusion"
    ckpt_dirs = [main_ckpt]
    if opt("ckpt_dir"):
        extra = Path(opt("ckpt_dir")).expanduser().resolve()  # type: ignore[arg-type]
        if extra != main_ckpt:
            ckpt_dirs.append(extra)
    vae_dirs = [models_dir / "VAE"]
    if opt("vae_dir"):
        vae_dirs.append(Path(opt("vae_dir")).expanduser().resolve())  # type: ignore[arg-type]
    styles = getattr(cmd_opts, "styles_file", None) or [str(data_dir / "styles.csv")]
    return Paths(
        data_dir=data_dir,
        models_dir=models_dir,
        ckpt_dirs=tuple(ckpt_dirs),
        vae_dirs=tuple(vae_dirs),
        lora_dir=Path(opt("lora_dir") or models_dir / "Lora").expanduser().resolve(),
        embeddings_dir=Path(opt("embeddings_dir") or data_dir / "embeddings").expanduser().resolve(),
        hypernetwork_dir=Path(opt("hypernetwork_dir") or models_dir / "hypernetworks").expanduser().resolve(),
        extensions_dir=data_dir / "extensions",
        extensions_builtin_dir=SCRIPT_PATH / "extensions-builtin",
        outputs_dir=data_dir / "outputs",
        cache_dir=data_dir / "cache",
        settings_file=Path(opt("ui_settings_file") or data_dir / "config.json").expanduser().resolve(),
        ui_config_file=Path(opt("ui_config_file") or data_dir / "ui-config.json").expanduser().resolve(),
        styles_files=tuple(Path(s).expanduser() for s in styles),
    )


def __getattr__(name: str) -> object:
    """A1111's module-level names (`models_path`, `data_path`, `script_path`, `extensions_dir`...) for extensions."""
    from modules import paths_internal

    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(paths_internal, name)
