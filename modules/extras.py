"""The Extras service: `run_extras(runtime, job, state)` runs the postprocessing operations on one image, a
batch of uploads or a folder, saves results with their infotext, and is what both the tab and the API call."""

from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from modules import infotext as infotext_mod
from modules.errors import ValidationError, WebUIError
from modules.params_extras import EXTRAS_DIRECTORY, ExtrasJob
from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessingRunner

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif")


@dataclass
class ExtrasResult:
    """Images shown (or returned by the API), the infotext of the last one, saved files and problems."""

    images: list[Image.Image] = field(default_factory=list)
    infotext: str = ""
    saved: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def html_info(self) -> str:
        """A1111's `plaintext_to_html` of the infotext, plus our notes on skipped files."""
        parts = [f"<p>{html.escape(self.infotext)}</p>"]
        parts += [f'<p class="error">{html.escape(e)}</p>' for e in self.errors]
        if self.interrupted:
            parts.append("<p>Interrupted.</p>")
        return "".join(parts)


def allowed_roots(runtime: Any) -> list[Path]:
    """Folders batch-from-directory may read and write: the data folder and every --gradio-allowed-path."""
    roots = [runtime.paths.data_dir]
    roots += [Path(p).expanduser() for p in getattr(runtime.cmd_opts, "gradio_allowed_path", None) or []]
    return [r.resolve() for r in roots]


def resolve_dir(runtime: Any, value: str, field: str, *, must_exist: bool) -> Path:
    """A user-given folder, refused when directory settings are hidden, outside the allowed roots or absent."""
    if getattr(runtime.cmd_opts, "hide_ui_dir_config", False):
        raise ValidationError(field, "batch from directory is disabled on this server (--hide-ui-dir-config)")
    if not value or not str(value).strip():
        raise ValidationError(field, "no folder given")
    path = Path(str(value).strip()).expanduser()
    if not path.is_absolute():
        path = runtime.paths.data_dir / path
    path = path.resolve()
    roots = allowed_roots(runtime)
    if not any(path == r or r in path.parents for r in roots):
        raise ValidationError(field, f"{path} is outside the folders this server may use "
                                     f"({', '.join(str(r) for r in roots)}; add more with --gradio-allowed-path)")
    if must_exist and not path.is_dir():
        raise ValidationError(field, f"the folder {path} does not exist")
    return path


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.format is None else _keep_format(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise WebUIError(f"{path.name} is not a readable image ({type(e).__name__}: {e})") from None


def _keep_format(im: Image.Image) -> Image.Image:
    copy = im.copy()
    copy.info = dict(im.info)
    copy.format = im.format
    return copy


def _directory_images(runtime: Any, job: ExtrasJob) -> list[tuple[Path, str]]:
    folder = resolve_dir(runtime, job.input_dir, "input_dir", must_exist=True)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValidationError("input_dir", f"the folder {folder} holds no images")
    return [(p, p.name) for p in files]


def output_folder(runtime: Any, job: ExtrasJob) -> Path:
    if job.extras_mode == EXTRAS_DIRECTORY and job.output_dir and job.output_dir.strip():
        return resolve_dir(runtime, job.output_dir, "output_dir", must_exist=False)
    return runtime.output_dir("outdir_extras_samples", "outdir_samples")


def format_infotext(info: dict[str, Any]) -> str:
    """A1111's extras infotext: `key: value` items joined by ", " (values quoted when needed)."""
    return ", ".join(k if k == v else f"{k}: {infotext_mod.quote(v)}" for k, v in info.items() if v is not None)


def _existing_info(image: Image.Image) -> dict[str, Any]:
    from modules.image_metadata import read_info_from_image

    try:
        parameters, items = read_info_from_image(image)
    except Exception as e:  # metadata we cannot read must not stop the upscale
        log.info("could not read metadata: %s", e)
        return {}
    info = {k: v for k, v in items.items() if isinstance(v, str)}
    if parameters:
        info["parameters"] = parameters
    return info


def build_runner(runtime: Any) -> ScriptPostprocessingRunner:
    return ScriptPostprocessingRunner.with_installed_scripts(runtime.opts.get)


def run_extras(runtime: Any, job: ExtrasJob, state: Any = None, runner: ScriptPostprocessingRunner | None = None
               ) -> ExtrasResult:
    """Run the Extras operations. Results are saved to `outdir_extras_samples` (or the batch output folder)
    when `job.save_output`, keeping the source's PNG info and adding `extras`/`postprocessing`."""
    from modules import images as images_mod
    from modules.upscaler_models import UpscaleInterrupted

    runner = runner or build_runner(runtime)
    args = job.operation_args()
    sources: list[tuple[Any, str | None]]
    if job.extras_mode == EXTRAS_DIRECTORY:
        sources = list(_directory_images(runtime, job))
    else:
        sources = list(job.images)
        if not sources:
            raise ValidationError("image", "no image given")
    outpath = output_folder(runtime, job) if job.save_output else None
    opts = runtime.opts
    result = ExtrasResult()
    if state is not None:
        state.job_count = len(sources)
    for source, name in sources:
        if state is not None:
            if state.interrupted:
                result.interrupted = True
                break
            state.textinfo = name or ""
        try:
            image = _open(source) if isinstance(source, Path) else source
        except WebUIError as e:
            result.errors.append(str(e))
            continue
        existing = _existing_info(image)
        pp = PostprocessedImage(image if image.mode in ("RGBA", "RGB") else image.convert("RGB"))
        pp.runtime, pp.state = runtime, state
        try:
            runner.run(pp, args)
        except UpscaleInterrupted:
            result.interrupted = True
            break
        if state is not None and state.skipped:
            state.nextjob()  # Skip drops this image only; the flag is cleared for the next one
            continue
        used: dict[str, int] = {}
        for out in [pp, *pp.extra_images]:
            suffix = out.get_suffix(used)
            infotext = format_infotext(out.info)
            if opts.get("enable_pnginfo", True):
                out.image.info = {**existing, "postprocessing": infotext}
            if state is not None:
                state.current_image = out.image
                state.id_live_preview = getattr(state, "id_live_preview", 0) + 1
            if outpath is not None:
                if opts.get("use_original_name_batch", True) and name:
                    basename, forced = "", os.path.splitext(os.path.basename(name))[0] + suffix
                else:
                    basename, forced = "", None
                fullfn, _ = images_mod.save_image(
                    out.image, outpath, basename, extension=opts.get("samples_format", "png"), info=infotext,
                    short_filename=True, no_prompt=True, grid=False, pnginfo_section_name="extras",
                    existing_info={**existing, "postprocessing": infotext}, forced_filename=forced,
                    suffix="" if forced else suffix, opts=opts)
                result.saved.append(fullfn)
            if job.extras_mode != EXTRAS_DIRECTORY or job.options.show_extras_results:
                result.images.append(out.image)
            result.infotext = infotext
        if state is not None:
            state.nextjob()
    return result


def run_pnginfo(image: Image.Image | None) -> tuple[str, str | None, str]:
    """A1111's `extras.run_pnginfo` for extensions: ("", the generation parameters, an HTML listing of every
    metadata item, escaped)."""
    from modules.image_metadata import read_info_from_image

    if image is None:
        return "", "", ""
    geninfo, items = read_info_from_image(image)
    rows = "".join(f"<div><p><b>{html.escape(str(k))}</b></p><p>{html.escape(str(v))}</p></div>"
                   for k, v in items.items())
    return "", geninfo, rows or "<div><p>Nothing found in the image.</p></div>"
