"""Sigma-space (k-diffusion style) and timestep samplers, noise schedules and noise sources, as A1111 1.10 runs them."""
