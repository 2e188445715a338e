"""Command-line flags with A1111's names; the parser is built on demand, never at import."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

# The install folder; computed here (not taken from modules.paths) because the two are independent L0 modules.
_SCRIPT_PATH = Path(__file__).resolve().parent.parent

# Flags A1111 accepts but which have no effect here (kept so that existing launch scripts keep working).
_NOOP_BOOL_FLAGS = (
    "--skip-torch-cuda-test", "--reinstall-xformers", "--reinstall-torch", "--update-check",
    "--skip-python-version-check", "--skip-version-check", "--xformers", "--force-enable-xformers",
    "--xformers-flash-attention", "--opt-split-attention", "--opt-sub-quad-attention",
    "--opt-split-attention-invokeai", "--opt-split-attention-v1", "--opt-sdp-attention",
    "--opt-sdp-no-mem-attention", "--disable-opt-split-attention", "--opt-channelslast", "--lowram",
    "--medvram", "--medvram-sdxl", "--lowvram", "--upcast-sampling", "--always-batch-cond-uncond",
    "--unload-gfpgan", "--deepdanbooru", "--show-negative-prompt", "--gradio-queue", "--no-gradio-queue",
    "--add-stop-route", "--administrator", "--do-not-download-clip", "--use-ipex", "--disable-nan-check",
    "--disable-model-loading-ram-optimization", "--log-startup", "--enable-console-prompts", "--gradio-debug",
    "-f",
)


class ArgumentError(SystemExit):
    """Raised instead of argparse's exit so callers (and tests) can show the message."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(2)

    def __str__(self) -> str:
        return self.message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(f"{self.prog}: error: {message}\nRun with --help to list the flags.")


def build_parser() -> argparse.ArgumentParser:
    """Return the flag parser; extensions' preload.py may add to it before parsing."""
    p = _Parser(prog="webui", description="Stable Diffusion web UI (A1111-compatible flags).")
    add = p.add_argument

    # Paths and data
    add("--data-dir", type=str, default=str(_SCRIPT_PATH), help="base folder for all user data (default: install folder)")
    add("--models-dir", type=str, default=None, help="base folder for models (default: <data-dir>/models)")
    add("--ckpt", type=str, default=None, help="checkpoint to load at start (and add to the list)")
    add("--ckpt-dir", type=str, default=None, help="extra folder with Stable Diffusion checkpoints")
    add("--vae-dir", type=str, default=None, help="extra folder with VAE files")
    add("--vae-path", type=str, default=None, help="VAE file to always use (disables VAE settings)")
    add("--lora-dir", type=str, default=None, help="folder with LoRA networks (default: models/Lora)")
    add("--lyco-dir-backcompat", type=str, default=None, help="old LyCORIS folder (also scanned)")
    add("--embeddings-dir", type=str, default=None, help="folder with textual inversion embeddings")
    add("--hypernetwork-dir", type=str, default=None, help="folder with hypernetworks")
    add("--styles-file", type=str, action="append", default=[], help="styles file; repeatable")
    add("--ui-config-file", type=str, default=None, help="ui-config.json path")
    add("--ui-settings-file", type=str, default=None, help="config.json path (settings)")
    add("--config", type=str, default=None, help="LDM yaml for --ckpt (overrides the detected architecture)")
    add("--no-download-sd-model", action="store_true", help="never offer to download SD1.5 when no model exists")
    for name in _MODEL_FOLDER_FLAGS:
        add(f"--{name}-models-path", type=str, default=None, help=f"folder with {name} models")
    add("--clip-models-path", type=str, default=None, help="folder with CLIP models")
    add("--textual-inversion-templates-dir", type=str, default=None, help="folder with textual inversion templates")
    add("--localizations-dir", type=str, default=None, help="folder with localization JSON files")

    # Precision, device
    add("--use-cpu", nargs="+", default=[], help="run these tasks on the CPU: all sd interrogate gfpgan esrgan ...")
    add("--device-id", type=str, default=None, help="CUDA device index to use")
    add("--precision", choices=["full", "half", "autocast", "bf16"], default="autocast",
        help="evaluate at this precision (autocast: fp16 on GPU, bf16 on CPU when supported)")
    add("--no-half", action="store_true", help="keep the model in fp32")
    add("--no-half-vae", action="store_true", help="keep the VAE in fp32")
    add("--no-hashing", action="store_true", help="do not compute sha256 of checkpoints")
    add("--skip-load-model-at-start", action="store_true", help="do not load a model at start")
    add("--ui-debug-mode", action="store_true", help="start the UI without loading a model")

    # Server
    add("--listen", action="store_true", help="listen on 0.0.0.0 (reachable from the network)")
    add("--port", type=int, default=None, help="port (default 7860; 7861 with --nowebui)")
    add("--server-name", type=str, default=None, help="host name or address to bind")
    add("--share", action="store_true", help="(unsupported offline) Gradio share link")
    add("--ngrok", type=str, default=None, help="(unsupported offline) ngrok token")
    add("--subpath", type=str, default=None, help="root path when served behind a reverse proxy")
    add("--tls-keyfile", type=str, default=None, help="TLS key file")
    add("--tls-certfile", type=str, default=None, help="TLS certificate file")
    add("--cors-allow-origins", type=str, default=None, help="comma-separated allowed CORS origins")
    add("--cors-allow-origins-regex", type=str, default=None, help="regex of allowed CORS origins")
    add("--timeout-keep-alive", type=int, default=30, help="uvicorn keep-alive timeout")
    add("--autolaunch", action="store_true", help="open the UI in the system browser at start")
    add("--theme", choices=["light", "dark"], default=None, help="force a UI theme")
    add("--gradio-auth", type=str, default=None, help='UI credentials "user:pass[,user2:pass2]"')
    add("--gradio-auth-path", type=str, default=None, help="file with UI credentials, one user:pass per line")
    add("--api-auth", type=str, default=None, help='API credentials "user:pass[,user2:pass2]"')
    add("--api", action="store_true", help="enable the /sdapi/v1 REST API")
    add("--nowebui", action="store_true", help="serve only the API")
    add("--api-log", action="store_true", help="log every API call")
    add("--api-server-stop", action="store_true", help="enable the server stop/restart routes")

    # Security and admin
    add("--enable-insecure-extension-access", action="store_true",
        help="allow installing extensions even when listening on the network")
    add("--disable-safe-unpickle", action="store_true",
        help="(refused) A1111's switch to unpickle untrusted files; kept only to explain the refusal")
    add("--allow-code", action="store_true", help="allow the Custom code script")
    add("--hide-ui-dir-config", action="store_true", help="hide and refuse folder settings in the UI")
    add("--freeze-settings", action="store_true", help="settings cannot be changed from the UI or API")
    add("--freeze-settings-in-sections", type=str, default=None, help="comma list of frozen settings sections")
    add("--freeze-specific-settings", type=str, default=None, help="comma list of frozen setting keys")
    add("--gradio-allowed-path", action="append", default=[], help="extra folder the UI may serve files from")
    add("--disable-all-extensions", action="store_true", help="load no extension")
    add("--disable-extra-extensions", action="store_true", help="load only built-in extensions")

    # Launcher
    add("--skip-install", action="store_true", help="do not install requirements or run install.py")
    add("--skip-prepare-environment", action="store_true", help="skip every preparation step")
    add("--update-all-extensions", action="store_true", help="git pull every extension at start")
    add("--dump-sysinfo", action="store_true", help="print system information as JSON and exit")
    add("--test-server", action="store_true", help="configure for tests")

    # UI and logging
    add("--use-textbox-seed", action="store_true", help="seed as a textbox")
    add("--disable-console-progressbars", action="store_true", help="no tqdm bars in the console")
    add("--no-progressbar-hiding", action="store_true", help="keep progress bars visible")
    add("--loglevel", type=str, default=None, help="log level (DEBUG, INFO, WARNING...)")
    add("--unix-filenames-sanitization", action="store_true", help="only replace / in file names")
    add("--filenames-max-length", type=int, default=128, help="maximum length of a file name part")
    add("--disable-tls-verify", action="store_false", help="accept self-signed certificates")
    add("--no-prompt-history", action="store_true", help="do not write params.txt")

    for flag in _NOOP_BOOL_FLAGS:
        add(flag, action="store_true", help=argparse.SUPPRESS)
    for flag in ("--gradio-img2img-tool", "--gradio-inpaint-tool", "--gfpgan-dir", "--gfpgan-model"):
        add(flag, type=str, default=None, help=argparse.SUPPRESS)
    # Parsed with A1111's types and defaults; extensions read them (sub-quad sizes) though nothing here uses them.
    add("--ngrok-region", type=str, default="", help=argparse.SUPPRESS)
    add("--ngrok-options", type=json.loads, default={}, help=argparse.SUPPRESS)
    add("--max-batch-count", type=int, default=16, help=argparse.SUPPRESS)
    add("--sub-quad-q-chunk-size", type=int, default=1024, help=argparse.SUPPRESS)
    add("--sub-quad-kv-chunk-size", type=int, default=None, help=argparse.SUPPRESS)
    add("--sub-quad-chunk-threshold", type=int, default=None, help=argparse.SUPPRESS)
    return p


# `--<name>-models-path` flags and their A1111 default folder under the models folder.
_MODEL_FOLDERS = {"codeformer": "Codeformer", "gfpgan": "GFPGAN", "esrgan": "ESRGAN", "bsrgan": "BSRGAN",
                  "realesrgan": "RealESRGAN", "dat": "DAT", "scunet": "ScuNET", "swinir": "SwinIR", "ldsr": "LDSR"}
_MODEL_FOLDER_FLAGS = tuple(_MODEL_FOLDERS)


def apply_default_paths(opts: argparse.Namespace) -> argparse.Namespace:
    """Give every folder flag left unset A1111's default path, so extensions reading `cmd_opts.<x>_dir` get a path.

    A1111 computes these defaults from the pre-parsed --data-dir/--models-dir; we fill them after parsing, which
    gives the same values. Folders the app itself uses resolve to the same place in modules.paths either way.
    """
    data = Path(opts.data_dir or _SCRIPT_PATH).expanduser().resolve()
    models = Path(opts.models_dir).expanduser().resolve() if opts.models_dir else data / "models"
    defaults = {
        "embeddings_dir": data / "embeddings",
        "hypernetwork_dir": models / "hypernetworks",
        "lora_dir": models / "Lora",
        "lyco_dir_backcompat": models / "LyCORIS",
        "textual_inversion_templates_dir": _SCRIPT_PATH / "textual_inversion_templates",
        "localizations_dir": _SCRIPT_PATH / "localizations",
        "ui_config_file": data / "ui-config.json",
        "ui_settings_file": data / "config.json",
        **{f"{flag}_models_path": models / folder for flag, folder in _MODEL_FOLDERS.items()},
    }
    for name, default in defaults.items():
        if getattr(opts, name, None) in (None, ""):
            setattr(opts, name, str(default))
    # A1111's default --ckpt is <install>/model.ckpt, used only when that file exists; we leave it unset otherwise
    # so that a missing default file is not reported as a missing checkpoint.
    if getattr(opts, "ckpt", None) is None and (_SCRIPT_PATH / "model.ckpt").is_file():
        opts.ckpt = str(_SCRIPT_PATH / "model.ckpt")
    return opts


def argv_with_env(argv: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """A1111 appends the shell-split COMMANDLINE_ARGS variable to the real arguments."""
    env = os.environ if environ is None else environ
    return [*argv, *shlex.split(env.get("COMMANDLINE_ARGS", ""))]


def parse_args(argv: Sequence[str], parser: argparse.ArgumentParser | None = None,
               environ: dict[str, str] | None = None) -> argparse.Namespace:
    """Parse flags; unknown flags raise ArgumentError unless IGNORE_CMD_ARGS_ERRORS is set (as A1111)."""
    parser = parser or build_parser()
    env = os.environ if environ is None else environ
    args = argv_with_env(argv, env)
    if env.get("IGNORE_CMD_ARGS_ERRORS"):
        opts, _unknown = parser.parse_known_args(args)
    else:
        opts = parser.parse_args(args)
    if opts.disable_safe_unpickle:
        raise ArgumentError("--disable-safe-unpickle is refused: pickled files are only read through the "
                            "restricted loader. Convert the file to .safetensors instead.")
    # Derived values A1111 exposes on cmd_opts.
    opts.webui_is_non_local = bool(opts.listen or opts.share or opts.ngrok or opts.server_name)
    opts.disable_extension_access = opts.webui_is_non_local and not opts.enable_insecure_extension_access
    if opts.port is None:
        opts.port = 7861 if opts.nowebui else 7860
    return apply_default_paths(opts)


_parser: argparse.ArgumentParser | None = None


def __getattr__(name: str) -> object:
    """A1111's module-level `parser` (extensions read its defaults); built on first use, not at import."""
    global _parser
    if name == "parser":
        if _parser is None:
            _parser = build_parser()
        return _parser
    raise AttributeError(f"module 'modules.cmd_args' has no attribute {name!r}")
