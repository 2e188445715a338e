"""Noise sources for stochastic samplers: plain Gaussian noise from a provided generator and Brownian-tree noise."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RandnLike = Callable[[torch.Tensor], torch.Tensor]


def default_noise_sampler(x: torch.Tensor, randn_like: RandnLike | None = None) -> NoiseSampler:
    """Fresh N(0, 1) noise shaped like x for every call, ignoring the sigmas.

    A1111 routes this through its per-image RNG (ImageRNG.next()); pass that as `randn_like`.
    Without it the global torch generator is used, as k-diffusion does.
    """
    draw = randn_like if randn_like is not None else torch.randn_like
    return lambda sigma, sigma_next: draw(x)


class BrownianTreeNoiseSampler:
    """Noise from a torchsde Brownian tree over [sigma_min, sigma_max], normalised to unit variance per interval.

    With a list of seeds there is one tree per image (A1111 passes the batch's seeds so a picture does not depend
    on the batch it was made in); with a single int one tree covers the whole batch; None draws a random seed.
    """

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min,
        sigma_max,
        seed: int | Sequence[int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] = lambda s: s,
    ):
        import torchsde  # imported late: only SDE samplers need it

        self.transform = transform
        t0 = self.transform(torch.as_tensor(sigma_min))
        t1 = self.transform(torch.as_tensor(sigma_max))
        t0, t1, self._sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        if seed is None:
            seed = torch.randint(0, 2**63 - 1, []).item()
        if isinstance(seed, int):
            self._per_image = False
            seeds = [seed]
            w0 = torch.zeros_like(x)
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != x.shape[0]:
                raise ValueError(f"got {len(seeds)} seeds for a batch of {x.shape[0]} images")
            self._per_image = True
            w0 = torch.zeros_like(x[0])
        self._trees = [torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds]

    def _increment(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        lo, hi, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        w = torch.stack([tree(lo, hi) for tree in self._trees]) * (self._sign * sign)
        return w if self._per_image else w[0]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0 = self.transform(torch.as_tensor(sigma))
        t1 = self.transform(torch.as_tensor(sigma_next))
        return self._increment(t0, t1) / (t1 - t0).abs().sqrt()
