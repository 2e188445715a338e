"""A1111 names that belong in modules other engineers own right now, grouped by target module for re-export.

Each group says which module should re-export it (`from modules.compat_surface import ...`) when merging.
Until then extensions reach them here only through the re-exports; tests use them directly.
"""

from __future__ import annotations

import random
from collections import namedtuple
from typing import Any

from PIL import Image

# ---------------------------------------------------------------------------------------------------------------
# -> modules.processing: create_binary_mask, create_random_tensors, get_fixed_seed, opt_f, opt_C
# ---------------------------------------------------------------------------------------------------------------

opt_C = 4  # latent channels (SD1/2/XL)
opt_f = 8  # VAE downsampling factor


def get_fixed_seed(seed: Any) -> int:
    """-1, None, "" or a non-number -> a random seed, else the seed as an int (A1111's helper)."""
    if seed == "" or seed is None:
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed)
        except ValueError:
            seed = -1
    if seed == -1:
        return int(random.randrange(4294967294))
    return int(seed)


def create_binary_mask(image: Image.Image, round: bool = True) -> Image.Image:  # noqa: A002 - A1111's name
    """An "L" mask: the alpha channel when the image has real transparency (thresholded at 50% with `round`),
    else the image's grey values."""
    has_alpha = image.mode == "RGBA" and image.getextrema()[-1] != (255, 255)
    if not has_alpha:
        return image.convert("L")
    alpha = image.getchannel("A")
    return alpha.point(lambda v: 255 if v > 128 else 0) if round else alpha


def create_random_tensors(shape: Any, seeds: list[int], subseeds: list[int] | None = None,
                          subseed_strength: float = 0.0, seed_resize_from_h: int = 0, seed_resize_from_w: int = 0,
                          p: Any = None) -> Any:
    """Initial latent noise (batch, C, H, W), the same numbers the job would draw for these seeds."""
    from modules.rng import ImageRNG

    source, device = "GPU", "cpu"
    opts = None
    try:
        from modules import shared

        opts = shared.opts
        device = shared.device
    except AttributeError:
        pass
    if opts is not None:
        source = opts.get("randn_source", "GPU") or "GPU"
    rng = ImageRNG(shape, seeds, subseeds=subseeds, subseed_strength=subseed_strength,
                   seed_resize_from_h=seed_resize_from_h, seed_resize_from_w=seed_resize_from_w, source=source,
                   device=device)
    return rng.next()


# ---------------------------------------------------------------------------------------------------------------
# -> modules.images: flatten, read_info_from_image, GridAnnotation
#    (get_next_sequence_number and FilenameGenerator already exist there)
# ---------------------------------------------------------------------------------------------------------------


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    """Replace transparency with `bgcolor` (A1111's helper; RGB result)."""
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    """(infotext or None, the image's other metadata), from PNG text, EXIF UserComment or NovelAI fields."""
    from modules.image_metadata import read_info_from_image as read

    return read(image)


class GridAnnotation:
    def __init__(self, text: str = "", is_active: bool = True) -> None:
        self.text = text
        self.is_active = is_active
        self.size: Any = None


# ---------------------------------------------------------------------------------------------------------------
# -> modules.txt2img: txt2img, txt2img_create_processing
# ---------------------------------------------------------------------------------------------------------------

_UI_ARGS_MESSAGE = ("modules.txt2img.{name} takes A1111's positional Gradio arguments, whose order this webui's "
                    "txt2img tab does not share. Build the job with processing.StableDiffusionProcessingTxt2Img "
                    "and processing.process_images, or POST /sdapi/v1/txt2img.")


def txt2img_create_processing(id_task: str, request: Any, *args: Any, force_enable_hr: bool = False) -> Any:
    from modules.errors import WebUIError

    raise WebUIError(_UI_ARGS_MESSAGE.format(name="txt2img_create_processing"))


def txt2img(id_task: str, request: Any, *args: Any) -> Any:
    from modules.errors import WebUIError

    raise WebUIError(_UI_ARGS_MESSAGE.format(name="txt2img"))


# ---------------------------------------------------------------------------------------------------------------
# -> modules.sd_vae: vae_dict, refresh_vae_list, load_vae_dict (module __getattr__ for vae_dict)
# ---------------------------------------------------------------------------------------------------------------


def _vaes() -> Any:
    from modules import shared

    return shared._need_runtime("sd_vae").vaes


def vae_dict() -> dict[str, str]:
    """A1111's `vae_dict`: VAE file name -> path (read it as `sd_vae.vae_dict` after the re-export)."""
    db = _vaes()
    if not db.scanned:
        db.refresh()
    return {name: str(path) for name, path in db.files.items()}


def refresh_vae_list() -> None:
    _vaes().refresh()


def load_vae_dict(filename: str, map_location: str | None = None) -> dict[str, Any]:
    """The VAE file's tensors, without the `loss`/`model_ema` entries A1111 drops."""
    from modules.safe_load import load_state_dict

    sd = load_state_dict(filename)
    return {k: v for k, v in sd.items() if k[0:4] != "loss" and k not in ("model_ema.decay", "model_ema.num_updates")}


# ---------------------------------------------------------------------------------------------------------------
# -> modules.sd_samplers: samplers, all_samplers, samplers_for_img2img, samplers_map, create_sampler
# ---------------------------------------------------------------------------------------------------------------

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


def _sampler_data() -> list[Any]:
    from modules.sd_samplers import SAMPLERS

    return [SamplerData(c.name, None, list(c.aliases), dict(c.options)) for c in SAMPLERS]


all_samplers = _sampler_data()
samplers = all_samplers
samplers_for_img2img = all_samplers
samplers_map = {alias.lower(): s.name for s in all_samplers for alias in (s.name, *s.aliases)}


def create_sampler(name: str, model: Any) -> Any:
    """A1111 returns its k-diffusion/LDM sampler object; ours samples inside the job (names are shared)."""
    from modules.shared import ldm_only_error

    raise ldm_only_error("modules.sd_samplers.create_sampler")


# ---------------------------------------------------------------------------------------------------------------
# -> modules.shared.interrogator (already wired there)
# ---------------------------------------------------------------------------------------------------------------


class Interrogator:
    """A1111's CLIP interrogator needs BLIP and CLIP weights this webui does not ship; asking says so."""

    def interrogate(self, image: Image.Image) -> str:
        from modules.errors import WebUIError

        raise WebUIError("CLIP interrogate is not available in this webui (it needs the BLIP and CLIP models "
                         "A1111 downloads at run time).")

    def load(self) -> None:
        self.interrogate(Image.new("RGB", (1, 1)))

    def unload(self) -> None: ...

    def send_clip_to_ram(self) -> None: ...

    def send_blip_to_ram(self) -> None: ...
