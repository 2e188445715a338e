"""What every trainer shares: a frozen model, latents, the noise-prediction loss, prompt encoding with gradients."""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.errors import ValidationError, WebUIError
from modules.training.dataset import Dataset

SUPPORTED_FAMILIES = ("sd1", "sd2")
_NAME_RE = re.compile(r"^[\w][\w \-.+()\[\]]*$")


class TrainingError(WebUIError):
    """Training cannot start or continue; the message says why."""


def check_name(name: str, field: str) -> str:
    """A file name for an embedding/network: no folders, no '..', nothing hidden."""
    name = (name or "").strip()
    if not name:
        raise ValidationError(field, "is empty")
    if "/" in name or "\\" in name or ".." in name or not _NAME_RE.match(name) or len(name) > 128:
        raise ValidationError(field, f"{name!r} is not a plain file name (letters, digits, space, - _ . + ( ) [ ]; "
                                     "no '/' or '..')")
    return name


def model_family(model: Any, trainer: str, sdxl: bool = False) -> str:
    """sd1/sd2 (and sdxl base when the trainer can); other models are refused with what is supported."""
    variant = str(model.variant)
    family = variant.split("-")[0]
    allowed = SUPPORTED_FAMILIES + (("sdxl",) if sdxl else ())
    if family not in allowed or variant.endswith("inpainting") or variant == "sdxl-refiner":
        what = "SD1.x, SD2.x and SDXL base" if sdxl else "SD1.x and SD2.x"
        raise ValidationError("sd_model_checkpoint", f"the {trainer} trainer supports {what} models (not "
                                                     f"inpainting or refiner); the loaded model is {variant}")
    return family


def seeded(seed: int) -> tuple[random.Random, torch.Generator, int]:
    if seed is None or seed < 0:
        seed = random.randrange(2**32)
    return random.Random(seed), torch.Generator().manual_seed(seed), seed


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """The model's own parameters take no gradients while training; their requires_grad flags come back after."""
    modules = [m for m in (getattr(model.pipe, n, None) for n in ("unet", "vae", "text_encoder", "text_encoder_2"))
               if isinstance(m, torch.nn.Module)]
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def clean_model(runtime: Any, model: Any) -> None:
    """Undo LoRA weights and hypernetworks left on the model by the last generation: train against the checkpoint."""
    from modules import hypernetworks, lora

    hypernetworks.apply(model, [])
    lora.activate(model, runtime.loras, [])
    conditioner = runtime.conditioner_for(model)
    conditioner.cache_salt = None
    conditioner.clear_cache()


# --- latents ----------------------------------------------------------------------------------------------------
def _pixels(images: Sequence[Any], device: Any, dtype: Any) -> torch.Tensor:
    import numpy as np

    arr = np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1.0 for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(device=device, dtype=dtype)


def cache_latents(model: Any, dataset: Dataset, method: str, generator: torch.Generator, state: Any = None) -> None:
    """Encode every image once: a sample ("once"), the mean ("deterministic"), or the distribution ("random")."""
    if method not in ("once", "deterministic", "random"):
        raise ValidationError("latent_sampling_method", f"{method!r} is not one of once, deterministic, random")
    vae = model.pipe.vae
    scale = float(getattr(vae.config, "scaling_factor", 0.18215))
    param = next(vae.parameters())
    with torch.no_grad():
        for i, entry in enumerate(dataset.entries):
            if state is not None and state.interrupted:
                raise TrainingError("interrupted while preparing the dataset; nothing was trained")
            dist = vae.encode(_pixels([entry.image], param.device, param.dtype)).latent_dist
            mean, std = dist.mean.float().cpu() * scale, dist.std.float().cpu() * scale
            if method == "random":
                entry.latent_mean, entry.latent_std = mean, std
            elif method == "deterministic":
                entry.latent = mean
            else:
                entry.latent = mean + std * torch.randn(mean.shape, generator=generator)
            if state is not None:
                state.textinfo = f"Preparing dataset: {i + 1}/{len(dataset.entries)}"


def batch_latents(entries: Sequence[Any], generator: torch.Generator) -> torch.Tensor:
    out = []
    for e in entries:
        if e.latent is not None:
            out.append(e.latent)
        else:
            out.append(e.latent_mean + e.latent_std * torch.randn(e.latent_mean.shape, generator=generator))
    return torch.cat(out)


# --- loss -------------------------------------------------------------------------------------------------------
@dataclass
class NoiseObjective:
    """The DDPM training objective of the model: noise (eps) or velocity (v) prediction."""

    scheduler: Any
    prediction_type: str

    @classmethod
    def for_model(cls, model: Any) -> NoiseObjective:
        from diffusers import DDPMScheduler

        config = dict(model.pipe.scheduler.config)
        prediction = str(getattr(model, "prediction_type", None) or config.get("prediction_type") or "epsilon")
        keep = {k: config[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                       "trained_betas", "steps_offset") if k in config}
        return cls(DDPMScheduler(**keep, prediction_type=prediction), prediction)

    def loss(self, unet: Any, latents: torch.Tensor, cond: torch.Tensor, generator: torch.Generator,
             weight: torch.Tensor | None = None, pooled: torch.Tensor | None = None) -> torch.Tensor:
        param = next(unet.parameters())
        n = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, int(self.scheduler.config.num_train_timesteps), (n,), generator=generator)
        noisy = self.scheduler.add_noise(latents, noise, t)
        v_pred = self.prediction_type == "v_prediction"
        target = self.scheduler.get_velocity(latents, noise, t) if v_pred else noise
        extra = {}
        if pooled is not None:  # SDXL: pooled bigG vector and size/crop ids (original = target, no crop)
            h, w = latents.shape[2] * 8, latents.shape[3] * 8
            ids = torch.tensor([[h, w, 0, 0, h, w]] * n, dtype=param.dtype, device=param.device)
            extra["added_cond_kwargs"] = {"text_embeds": pooled.to(param.dtype), "time_ids": ids}
        pred = unet(noisy.to(param.device, param.dtype), t.to(param.device),
                    encoder_hidden_states=cond.to(param.dtype), **extra).sample
        err = (pred.float() - target.to(pred.device)) ** 2
        if weight is not None:
            err = err * weight.to(err.device)[:, None]
        return err.mean()


# --- prompts with gradients -------------------------------------------------------------------------------------
def encode_prompts(conditioner: Any, texts: list[str], trainable: dict[str, torch.Tensor] | None = None
                   ) -> torch.Tensor:
    """[B, 77*k, D] conditioning as the conditioner computes it, but with autograd on (SD1/SD2 callers)."""
    return encode_prompts_pooled(conditioner, texts, trainable)[0]


def _pick_layer(conditioner: Any, enc: Any, out: Any, inner: Any) -> torch.Tensor:
    """The hidden state A1111 reads from each encoder (see conditioning.TextConditioner._pick_layer)."""
    skip = conditioner.options.clip_skip
    if enc.layer == "last":
        return out.last_hidden_state
    if enc.layer == "penultimate":
        return out.hidden_states[-2]
    if enc.layer == "sdxl_l":
        return out.hidden_states[-skip] if conditioner.options.sdxl_clip_l_skip else out.hidden_states[-2]
    return out.last_hidden_state if skip == 1 else inner.final_layer_norm(out.hidden_states[-skip])


def encode_prompts_pooled(conditioner: Any, texts: list[str], trainable: dict[str, torch.Tensor] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(conditioning, pooled vector or None): every encoder's chunks, concatenated on the width for SDXL.

    `trainable` maps embedding names to tensors that replace those embeddings' stored vectors, so the
    gradient reaches them; the text encoders' own weights stay frozen (LoRA hooks on them still get gradients).
    """
    trainable = trainable or {}
    conditioner.refresh_embeddings()
    outputs, pooled = [], None
    for enc in conditioner.encoders:
        chunker, model = enc.chunker, enc.model
        per_text = [chunker.tokenize_line(t)[0] for t in texts]
        n_chunks = max(len(c) for c in per_text)
        zs = []
        for i in range(n_chunks):
            batch = [c[i] if i < len(c) else chunker.empty_chunk() for c in per_text]
            tokens = torch.tensor([c.tokens for c in batch], dtype=torch.long, device=model.device)
            if enc.id_pad != chunker.id_end:
                for row, chunk in enumerate(batch):
                    tokens[row, chunk.tokens.index(chunker.id_end) + 1:] = enc.id_pad
            fixes = [c.fixes for c in batch]

            def hook(_module: Any, _inputs: Any, output: torch.Tensor, fixes: list = fixes, enc: Any = enc
                     ) -> torch.Tensor:
                output = output.clone()
                for row, row_fixes in enumerate(fixes):
                    for offset, emb in row_fixes:
                        vec = trainable.get(emb.name)
                        vec = emb.vectors_for(enc.key, conditioner.widths) if vec is None else vec
                        vec = vec.to(device=output.device, dtype=output.dtype)
                        n = min(output.shape[1] - offset - 1, vec.shape[0])
                        output[row, offset + 1:offset + 1 + n] = vec[:n]
                return output

            inner = getattr(model, "text_model", model)
            handle = inner.embeddings.token_embedding.register_forward_hook(hook) if any(fixes) else None
            hidden = enc.layer != "last" and not (enc.layer == "sd1" and conditioner.options.clip_skip == 1)
            try:
                out = model(input_ids=tokens, output_hidden_states=hidden)
            finally:
                if handle is not None:
                    handle.remove()
            z = _pick_layer(conditioner, enc, out, inner)
            if i == 0 and enc.pooled:
                pooled = out.text_embeds
            weights = torch.tensor([c.multipliers for c in batch], dtype=torch.float32, device=z.device)
            if conditioner.options.emphasis in ("Original", "No norm") and bool((weights != 1.0).any()):
                zf = z.float()
                weighted = zf * weights.unsqueeze(-1)
                if conditioner.options.emphasis == "Original":
                    weighted = weighted * (zf.mean() / weighted.mean())
                z = weighted.to(z.dtype)
            zs.append(z)
        outputs.append(torch.cat(zs, dim=1))
    if len({o.shape[1] for o in outputs}) != 1:
        raise TrainingError("the text encoders split a training prompt into different chunk counts")
    return torch.cat(outputs, dim=-1), pooled


def clip_gradients(params: list[torch.Tensor], mode: str, value: float | None) -> None:
    if mode == "value" and value is not None:
        torch.nn.utils.clip_grad_value_(params, value)
    elif mode == "norm" and value is not None:
        torch.nn.utils.clip_grad_norm_(params, value)


def resolve_log_dir(data_dir: Path, value: str, name: str, day: str, *, allow_outside: bool) -> Path:
    """`<log_directory>/<date>/<name>` (A1111's layout); relative to the data folder, never outside it for the API."""
    raw = Path(str(value or "textual_inversion")).expanduser()
    if ".." in raw.parts:
        raise ValidationError("log_directory", "must not contain '..'")
    base = raw if raw.is_absolute() else data_dir / raw
    if not allow_outside and not base.resolve().is_relative_to(data_dir.resolve()):
        raise ValidationError("log_directory", f"must be inside the data folder {data_dir}")
    return base / day / name
