"""The CFG denoiser: per-step prompt schedules, AND (composable diffusion), SDXL extras, and hook points."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.sampling.common import SamplingInterrupted
from modules.state import JobState


@dataclass
class CFGDenoiserParams:
    """Passed to before-UNet hooks (A1111's cfg_denoiser callback); hooks may replace the tensors."""

    x: torch.Tensor
    image_cond: torch.Tensor | None
    sigma: torch.Tensor
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    """Passed to after-UNet hooks (A1111's cfg_denoised callback): x is the batch of denoised predictions."""

    x: torch.Tensor
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any


@dataclass
class AfterCFGCallbackParams:
    """Passed to after-CFG hooks (A1111's cfg_after_cfg callback)."""

    x: torch.Tensor
    sampling_step: int
    total_sampling_steps: int


@dataclass
class LatentBlend:
    """Inpainting's latent mask (A1111's init_latent / mask / nmask on the denoiser): after CFG each step, the
    kept region is put back to the original latents, so only the masked region is generated.

    `mask` is 1 where the original is kept (A1111's `mask`), `nmask` = 1 - mask where the model paints. With
    `before_denoising` (A1111's `mask_before_denoising`, used by soft inpainting) the blend is applied to the input
    x instead, with the original noised to the current sigma.
    """

    init_latent: torch.Tensor
    mask: torch.Tensor
    nmask: torch.Tensor
    before_denoising: bool = False
    # Soft masks as a per-pixel denoising strength (differential diffusion): a pixel whose mask value is v joins
    # the generation once (1 - progress) falls to v, so v = 1 changes fully and v = 0.3 only over the last 30%.
    soft: bool = False
    # Called with (current, original, blended) -> blended or None; extensions replace the blend here.
    hooks: list[Callable[..., torch.Tensor | None]] = field(default_factory=list)

    def keep_mask(self, progress: float) -> torch.Tensor:
        """1 where the original is kept at this point of the run (progress 0 at the first step, 1 at the end)."""
        if not self.soft:
            return self.mask
        threshold = 1.0 - progress
        return (self.nmask < threshold).to(self.mask.dtype) if threshold > 0 else torch.zeros_like(self.mask)

    def apply(self, current: torch.Tensor, original: torch.Tensor | None = None, progress: float = 0.0
              ) -> torch.Tensor:
        original = self.init_latent if original is None else original
        keep = self.keep_mask(progress).to(current)
        blended = current * (1 - keep) + original.to(current) * keep
        for hook in self.hooks:
            out = hook(current, original, blended)
            if out is not None:
                blended = out
        return blended


@dataclass
class DenoiserHooks:
    """Ordered hook points of the loop; extensions and our own features append callables."""

    before_unet: list[Callable[[CFGDenoiserParams], None]] = field(default_factory=list)
    after_unet: list[Callable[[CFGDenoisedParams], None]] = field(default_factory=list)
    after_cfg: list[Callable[[AfterCFGCallbackParams], None]] = field(default_factory=list)
    after_step: list[Callable[[dict], None]] = field(default_factory=list)


def pick_schedule(schedules: Sequence[Any], step: int) -> Any:
    """The cond active at `step` from A1111's [ScheduledPromptConditioning(end_at_step, cond)]."""
    for item in schedules:
        if step <= item.end_at_step:
            return item.cond
    return schedules[-1].cond


def _tokens(c: Any) -> int:
    return (c["crossattn"] if isinstance(c, dict) else c).shape[0]


def _stretch(c: Any, n: int) -> Any:
    """Make a cond n tokens long by repeating its last 77-token chunk's final row (A1111 pads the same way)."""
    if isinstance(c, dict):
        return {**c, "crossattn": _stretch(c["crossattn"], n)}
    if c.shape[0] == n:
        return c
    return torch.cat([c, c[-1:].expand(n - c.shape[0], -1)], dim=0)


def stack_conds(conds: Sequence[Any]) -> Any:
    """Stack per-prompt conds (tensors [T, D] or dicts) into a batch, stretching to a common length."""
    n = max(_tokens(c) for c in conds)
    conds = [_stretch(c, n) for c in conds]
    if isinstance(conds[0], dict):
        return {k: torch.stack([c[k] for c in conds]) for k in conds[0]}
    return torch.stack(list(conds))


def _cat(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k]]) for k in a}
    return torch.cat([a, b])


class UNetModel:
    """fn(x_scaled, t, cond=...) -> eps|v for a diffusers UNet, in the UNet's dtype; SDXL extras from cond dicts."""

    def __init__(self, unet: Any, time_ids: torch.Tensor | None = None) -> None:
        self.unet = unet
        self.time_ids = time_ids  # [B, n] for the batch the denoiser passes, set per call
        p = next(unet.parameters())
        self.dtype, self.device = p.dtype, p.device

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None, time_ids: torch.Tensor | None = None,
                 image_cond: torch.Tensor | None = None) -> torch.Tensor:
        added = None
        if isinstance(cond, dict):
            hidden = cond["crossattn"]
            if "vector" in cond:
                added = {"text_embeds": cond["vector"].to(self.device, self.dtype),
                         "time_ids": time_ids.to(self.device, self.dtype)}
        else:
            hidden = cond
        if image_cond is not None:
            x = torch.cat([x, image_cond.to(x.dtype)], dim=1)
        out = self.unet(x.to(self.device, self.dtype), t.to(self.device), encoder_hidden_states=hidden.to(
            self.device, self.dtype), added_cond_kwargs=added, return_dict=False)[0]
        return out.float()


class CFGDenoiser:
    """k-diffusion-style denoiser(x, sigma) -> x0 with classifier-free guidance on the denoised predictions."""

    def __init__(self, inner: Any, conds: Any, unconds: Sequence[Sequence[Any]], cfg_scale: float, *,
                 state: JobState | None = None, hooks: DenoiserHooks | None = None, total_steps: int = 0,
                 time_ids: torch.Tensor | None = None, uncond_time_ids: torch.Tensor | None = None,
                 image_cond: torch.Tensor | None = None, step_offset: int = 0,
                 blend: LatentBlend | None = None, image_cfg_scale: float | None = None) -> None:
        self.inner = inner  # a modules.sampling.discrete.DiscreteDenoiser wrapping a UNetModel
        self.conds = conds  # MulticondLearnedConditioning (A1111): .batch[i] = [Composable(schedules, weight)]
        self.unconds = unconds
        self.cfg_scale = cfg_scale
        self.state = state
        self.hooks = hooks or DenoiserHooks()
        self.total_steps = total_steps
        self.time_ids = time_ids
        self.uncond_time_ids = uncond_time_ids if uncond_time_ids is not None else time_ids
        self.image_cond = image_cond
        self.blend = blend
        # instruct-pix2pix ("edit" models): a third pass without the image, weighed by the image CFG scale.
        self.image_cfg_scale = image_cfg_scale
        self.step = step_offset  # the sampling step, set by the sampler callback; used for prompt editing

    @property
    def progress(self) -> float:
        """How far this run is: 0 at the first step, approaching 1 at the last."""
        return self.step / self.total_steps if self.total_steps > 0 else 0.0

    def _check(self) -> None:
        if self.state is not None and (self.state.interrupted or self.state.skipped):
            raise SamplingInterrupted()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        self._check()
        batch = x.shape[0]
        blend = self.blend
        if blend is not None and blend.before_denoising:
            noised = blend.init_latent.to(x) + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
            x = blend.apply(x, noised, self.progress)
        conds_list: list[list[tuple[int, float]]] = []
        flat: list[Any] = []
        for composables in self.conds.batch:
            entry = []
            for comp in composables:
                entry.append((len(flat), float(comp.weight)))
                flat.append(pick_schedule(comp.schedules, self.step))
            conds_list.append(entry)
        uncond_list = [pick_schedule(u, self.step) for u in self.unconds]
        cond = stack_conds(flat)
        uncond = stack_conds(uncond_list)
        repeats = [len(c) for c in conds_list]
        x_c = torch.cat([x[i:i + 1].expand(n, *x.shape[1:]) for i, n in enumerate(repeats)])
        sigma_c = torch.cat([sigma[i:i + 1].expand(n) for i, n in enumerate(repeats)])
        img_c = None
        if self.image_cond is not None:
            img_c = torch.cat([self.image_cond[i:i + 1].expand(n, *self.image_cond.shape[1:])
                               for i, n in enumerate(repeats)])
        tid_c = None if self.time_ids is None else torch.cat(
            [self.time_ids[i:i + 1].expand(n, -1) for i, n in enumerate(repeats)])

        if self.image_cfg_scale is not None and self.image_cond is not None:
            return self._edit_model(x, sigma, stack_conds([flat[entry[0][0]] for entry in conds_list]), uncond,
                                    blend)
        params = CFGDenoiserParams(x_c, img_c, sigma_c, self.step, self.total_steps, cond, uncond, self)
        for hook in self.hooks.before_unet:
            hook(params)
        x_c, sigma_c, cond, uncond = params.x, params.sigma, params.text_cond, params.text_uncond

        x_in = torch.cat([x_c, x])
        sigma_in = torch.cat([sigma_c, sigma])
        img_in = None if img_c is None else torch.cat([img_c, self.image_cond])
        tid_in = None if tid_c is None else torch.cat([tid_c, self.uncond_time_ids])
        if _tokens_of(cond) == _tokens_of(uncond):
            out = self.inner(x_in, sigma_in, cond=_cat(cond, uncond), time_ids=tid_in, image_cond=img_in)
        else:  # different chunk counts: two UNet calls rather than padding (A1111's default)
            n = x_c.shape[0]
            out = torch.cat([
                self.inner(x_in[:n], sigma_in[:n], cond=cond, time_ids=None if tid_in is None else tid_in[:n],
                           image_cond=None if img_in is None else img_in[:n]),
                self.inner(x_in[n:], sigma_in[n:], cond=uncond, time_ids=None if tid_in is None else tid_in[n:],
                           image_cond=None if img_in is None else img_in[n:]),
            ])
        denoised_params = CFGDenoisedParams(out, self.step, self.total_steps, self.inner)
        for hook in self.hooks.after_unet:
            hook(denoised_params)
        out = denoised_params.x

        denoised_uncond = out[-batch:]
        denoised = denoised_uncond.clone()
        for i, entry in enumerate(conds_list):
            for index, weight in entry:
                denoised[i] += (out[index] - denoised_uncond[i]) * (weight * self.cfg_scale)
        if blend is not None and not blend.before_denoising:
            denoised = blend.apply(denoised, progress=self.progress)
        after = AfterCFGCallbackParams(denoised, self.step, self.total_steps)
        for hook in self.hooks.after_cfg:
            hook(after)
        return after.x

    def _edit_model(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any, uncond: Any,
                    blend: LatentBlend | None) -> torch.Tensor:
        """instruct-pix2pix guidance (Brooks et al. 2023): uncond without the image, uncond with it, cond with it;
        `uncond_noimg + cfg * (cond - uncond_img) + image_cfg * (uncond_img - uncond_noimg)`. One prompt per image:
        AND weights do not apply to edit models, as in A1111."""
        batch = x.shape[0]
        image = self.image_cond
        x_in = torch.cat([x, x, x])
        sigma_in = torch.cat([sigma, sigma, sigma])
        img_in = torch.cat([image, image, torch.zeros_like(image)])
        tid_in = None if self.time_ids is None else torch.cat([self.time_ids, self.uncond_time_ids, self.uncond_time_ids])
        if _tokens_of(cond) == _tokens_of(uncond):
            out = self.inner(x_in, sigma_in, cond=_cat(cond, _cat(uncond, uncond)), time_ids=tid_in, image_cond=img_in)
        else:
            out = torch.cat([self.inner(x_in[:batch], sigma_in[:batch], cond=cond, image_cond=img_in[:batch]),
                             self.inner(x_in[batch:], sigma_in[batch:], cond=_cat(uncond, uncond),
                                        image_cond=img_in[batch:])])
        out_cond, out_img_cond, out_uncond = out.chunk(3)
        denoised = out_uncond + self.cfg_scale * (out_cond - out_img_cond) + self.image_cfg_scale * (
            out_img_cond - out_uncond)
        if blend is not None and not blend.before_denoising:
            denoised = blend.apply(denoised, progress=self.progress)
        after = AfterCFGCallbackParams(denoised, self.step, self.total_steps)
        for hook in self.hooks.after_cfg:
            hook(after)
        return after.x


def _tokens_of(c: Any) -> int:
    return (c["crossattn"] if isinstance(c, dict) else c).shape[1]
