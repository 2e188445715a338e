"""L3 processing: img2img's init step as A1111 does it: init images resized and encoded, masks blurred, cropped,
filled and turned into the latent blend; and afterwards the result pasted back onto the original."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from modules import color_correction, images, masking, rng, vae
from modules.denoiser import LatentBlend
from modules.errors import ValidationError
from modules.image_resize import flatten, resize_image

INPAINTING_FILL = ("fill", "original", "latent noise", "latent nothing")
LATENT_RESIZE_MODE = 3


def _number(value: Any, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        lo <= value <= hi)


def validate(p: Any) -> None:
    """The img2img fields, before any work; each error names its field."""
    if not p.init_images:
        raise ValidationError("init_images", "img2img needs an init image")
    for i, im in enumerate(p.init_images):
        if not isinstance(im, Image.Image):
            raise ValidationError(f"init_images.{i}", "is not an image")
    if not isinstance(p.resize_mode, int) or isinstance(p.resize_mode, bool) or not 0 <= p.resize_mode <= 3:
        raise ValidationError("resize_mode", f"must be 0 (Just resize), 1 (Crop and resize), 2 (Resize and fill) or "
                                             f"3 (Just resize (latent upscale)), got {p.resize_mode!r}")
    if not _number(p.denoising_strength, 0, 1):
        raise ValidationError("denoising_strength", f"must be a number from 0 to 1, got {p.denoising_strength!r}")
    if p.inpainting_fill not in (0, 1, 2, 3):
        raise ValidationError("inpainting_fill", f"must be 0-3 ({', '.join(INPAINTING_FILL)}), got "
                                                 f"{p.inpainting_fill!r}")
    for name in ("mask_blur_x", "mask_blur_y", "inpaint_full_res_padding"):
        if not _number(getattr(p, name), 0, 256):
            raise ValidationError(name, f"must be from 0 to 256 pixels, got {getattr(p, name)!r}")
    if p.mask is not None and not isinstance(p.mask, Image.Image):
        raise ValidationError("mask", "is not an image")
    if p.initial_noise_multiplier is not None and not _number(p.initial_noise_multiplier, 0, 2):
        raise ValidationError("initial_noise_multiplier", f"must be from 0 to 2, got {p.initial_noise_multiplier!r}")
    if len(p.init_images) > 1 and len(p.init_images) > p.batch_size:
        raise ValidationError("init_images", f"{len(p.init_images)} images for a batch of {p.batch_size}: give one "
                                             f"image or at most batch size images")


def check_request(params: Any) -> None:
    """What can be refused about an img2img request before it is queued: images present and images, an empty
    mask (after "inpaint not masked" inverts it)."""
    if not params.init_images:
        raise ValidationError("init_images", "img2img needs an init image")
    for i, im in enumerate(params.init_images):
        if not isinstance(im, Image.Image):
            raise ValidationError(f"init_images.{i}", "is not an image")
    if params.mask is not None:
        if not isinstance(params.mask, Image.Image):
            raise ValidationError("mask", "is not an image")
        mask = masking.create_binary_mask(params.mask, round=params.mask_round)
        if params.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        if mask.getbbox() is None:
            raise ValidationError("mask", EMPTY_MASK)


EMPTY_MASK = "the mask is empty (all black): paint the area to change, or use img2img without a mask"


def _prepare_mask(p: Any) -> Image.Image | None:
    mask = p.image_mask
    if mask is None:
        return None
    mask = masking.create_binary_mask(ImageOps.exif_transpose(mask) or mask, round=p.mask_round)
    if p.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    if mask.getbbox() is None:
        raise ValidationError("mask", EMPTY_MASK)
    first = p.init_images[0]
    if mask.size != first.size:  # a mask of another size is stretched to the image, as A1111
        mask = mask.resize(first.size, Image.Resampling.LANCZOS)
    mask = masking.grow(mask, int(p.mask_grow))
    if mask.getbbox() is None:
        raise ValidationError("mask_grow", f"shrinking by {-p.mask_grow} pixels leaves the mask empty")
    return masking.blur(mask, int(p.mask_blur_x), int(p.mask_blur_y))


def _save_init_image(p: Any, im: Image.Image) -> None:
    """A1111's save_init_img: the init image as given, named by the MD5 of its pixels, which the infotext keeps
    as `Init image hash` so a result can be traced back to its source."""
    p.init_img_hash = hashlib.md5(im.tobytes()).hexdigest()
    p.extra_generation_params["Init image hash"] = p.init_img_hash
    runtime = getattr(p, "runtime", None)
    if runtime is None:
        return
    images.save_image(im, runtime.output_dir("outdir_init_images"), "", forced_filename=p.init_img_hash,
                      save_to_dirs=False, existing_info=im.info, opts=p.opts)


def init(p: Any, all_seeds: list[int]) -> None:
    """A1111's img2img init: sets init_latent, the latent blend, overlays and the source for the conditioning."""
    background = p.opt("img2img_background_color", "#ffffff")
    mask = _prepare_mask(p)
    crop = None
    latent_mask = None
    if mask is not None:
        if p.inpaint_full_res:  # "Only masked": work on the mask's box at the full processing size
            p.mask_for_overlay = mask
            box = masking.get_crop_region(mask, int(p.inpaint_full_res_padding))
            assert box is not None
            crop = masking.expand_crop_region(box, p.width, p.height, mask.width, mask.height)
            x1, y1, x2, y2 = crop
            mask = resize_image(2, mask.crop(crop), p.width, p.height).convert("L")
            p.paste_to = (x1, y1, x2 - x1, y2 - y1)
        else:
            mask = resize_image(p.resize_mode, mask, p.width, p.height).convert("L")
            # Doubled so the blurred edge overlays at full strength half-way in (A1111's mask_for_overlay); soft
            # inpainting keeps the whole gradient so the paste fades like the per-pixel strength did.
            gain = 1 if p.soft_inpainting else 2
            arr = np.clip(np.asarray(mask, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
            p.mask_for_overlay = Image.fromarray(arr, "L")
        p.overlay_images = []
        latent_mask = p.latent_mask if p.latent_mask is not None else mask
    sources = []
    for im in p.init_images:
        if p.opt("save_init_img", False):
            _save_init_image(p, im)
        image = flatten(im, background)
        if crop is None and p.resize_mode != LATENT_RESIZE_MODE:
            image = resize_image(p.resize_mode, image, p.width, p.height, p.opt("upscaler_for_img2img", None),
                                 model_upscale=_model_upscaler(p))
        if mask is not None:
            overlay = Image.new("RGBa", image.size)
            overlay.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(p.mask_for_overlay))
            p.overlay_images.append(overlay.convert("RGBA"))
        if crop is not None:
            image = resize_image(2, image.crop(crop), p.width, p.height)
        if mask is not None and p.inpainting_fill == 0:
            image = masking.fill(image, latent_mask)
        if p.opt("img2img_color_correction", False):
            p.color_corrections.append(color_correction.to_lab(image))
        sources.append(image)
    if len(sources) == 1:
        sources = sources * p.batch_size
        if p.overlay_images:
            p.overlay_images = p.overlay_images * p.batch_size
        p.color_corrections = p.color_corrections * p.batch_size
    elif len(sources) < p.batch_size:
        p.batch_size = len(sources)
    batch = vae.images_to_tensor(sources)
    model = p.sd_model
    latents = vae.encode_images(model, batch)
    if p.resize_mode == LATENT_RESIZE_MODE:
        latents = torch.nn.functional.interpolate(latents, size=(p.height // 8, p.width // 8), mode="bilinear")
        batch = torch.nn.functional.interpolate(batch, size=(p.height, p.width), mode="bilinear")
    p.source_images = batch
    if latent_mask is not None:
        h, w = latents.shape[-2:]
        lat = np.asarray(latent_mask.convert("L").resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        lat = np.clip(lat, 0, 1)
        if p.mask_round and not p.soft_inpainting:
            lat = np.around(lat)
        nmask = torch.from_numpy(lat)[None, None].expand(latents.shape[0], latents.shape[1], h, w).contiguous()
        keep = 1.0 - nmask
        if p.inpainting_fill == 2:  # latent noise: the masked part starts from the first image's seeded noise
            noise = rng.ImageRNG(tuple(latents.shape[1:]), all_seeds[: latents.shape[0]]).first()
            latents = latents * keep + noise.to(latents) * nmask
        elif p.inpainting_fill == 3:  # latent nothing
            latents = latents * keep
        p.latent_blend = LatentBlend(init_latent=latents, mask=keep, nmask=nmask, soft=bool(p.soft_inpainting))
        pix = np.asarray(latent_mask.convert("L").resize((p.width, p.height)), dtype=np.float32) / 255
        if p.mask_round:
            pix = np.around(pix)
        p.pixel_mask = torch.from_numpy(pix)[None, None].expand(latents.shape[0], 1, p.height, p.width)
        p.extra_generation_params["Mask blur"] = (p.mask_blur_x if p.mask_blur_x == p.mask_blur_y
                                                  else f"{p.mask_blur_x}x{p.mask_blur_y}")
        if p.inpainting_mask_invert:
            p.extra_generation_params["Mask mode"] = "Inpaint not masked"
        if p.mask_grow:
            p.extra_generation_params["Mask grow"] = p.mask_grow
        if p.soft_inpainting:
            p.extra_generation_params["Soft inpainting enabled"] = True
        p.extra_generation_params["Masked content"] = INPAINTING_FILL[p.inpainting_fill]
        p.extra_generation_params["Inpaint area"] = "Only masked" if p.inpaint_full_res else None
        if p.inpaint_full_res:
            p.extra_generation_params["Only masked padding, pixels"] = p.inpaint_full_res_padding
    p.init_latent = latents
    p.extra_generation_params["Denoising strength"] = p.denoising_strength
    if p.image_cfg_scale is not None and _is_ip2p(model):
        p.extra_generation_params["Image CFG scale"] = p.image_cfg_scale


def _model_upscaler(p: Any) -> Any:
    runtime = getattr(p, "runtime", None)
    if runtime is None:
        return None
    from modules import upscaler

    return lambda image, name, size: upscaler.upscale_image(runtime, name, image, size, p.state,
                                                            "upscaler_for_img2img")


def _is_ip2p(model: Any) -> bool:
    from modules.image_conditioning import kind

    return kind(model) == "instruct-pix2pix"


def apply_overlay(p: Any, index: int, image: Image.Image) -> Image.Image:
    """Colour correction if asked for, then paste the generated image back: into the crop box for "Only masked",
    then under the original's overlay, so pixels outside the (blurred) mask are the input's pixels."""
    if p.color_corrections:
        image = color_correction.apply(p.color_corrections[index % len(p.color_corrections)], image)
        p.extra_generation_params["Color correction"] = True
    overlays = p.overlay_images
    if not overlays:
        return image
    overlay = overlays[index % len(overlays)]
    info = dict(image.info)
    if p.paste_to is not None:
        x, y, w, h = p.paste_to
        base = Image.new("RGBA", overlay.size)
        base.paste(resize_image(1, image, w, h), (x, y))
        image = base
    out = image.convert("RGBA")
    out.alpha_composite(overlay)
    result = out.convert("RGB")
    result.info.update(info)
    return result


def mask_previews(p: Any, index: int, image: Image.Image) -> list[Image.Image]:
    """`return_mask` / `return_mask_composite`: the mask and the result over it, shown beside the result."""
    if p.mask_for_overlay is None:
        return []
    out = []
    if p.opt("return_mask", False):
        out.append(p.mask_for_overlay.convert("RGB"))
    if p.opt("return_mask_composite", False):
        composite = Image.composite(image.convert("RGBA"), Image.new("RGBA", image.size), p.mask_for_overlay.resize(
            image.size)).convert("RGB")
        out.append(composite)
    return out
