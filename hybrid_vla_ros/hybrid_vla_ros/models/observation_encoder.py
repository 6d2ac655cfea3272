"""Shared observation encoder: normalised (state, goal[, image_feat]) -> (B, d_model)."""
import math
from typing import Dict

import torch
from torch import nn

from .configuration import EncoderConfig
from .normalization import ObservationNormalizer, _obs_dims


def validate_observation(obs: Dict[str, torch.Tensor], cfg: EncoderConfig,
                         batch_size: int = -1, check_finite: bool = True) -> int:
    """Check keys, shapes, dtype and (unless ``check_finite=False``) finiteness.

    Returns the batch size. Raises ``ValueError`` naming the key and the expected vs actual
    shape, or the first non-finite entry (a NaN joint reading must never reach the arm as a
    command). Callers that skip the finiteness check here must check their output instead.
    """
    if not isinstance(obs, dict):
        raise ValueError(f'observation must be a dict of tensors, got {type(obs).__name__}')
    for key, dim in _obs_dims(cfg).items():
        if key not in obs:
            raise ValueError(f"observation is missing '{key}' (expected shape (B, {dim}))")
        x = obs[key]
        if not torch.is_tensor(x):
            raise ValueError(f"observation '{key}' must be a tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != dim or (batch_size >= 0 and x.shape[0] != batch_size):
            want = f'({batch_size if batch_size >= 0 else "B"}, {dim})'
            raise ValueError(f"observation '{key}' has shape {tuple(x.shape)}, expected {want}")
        if not x.is_floating_point():
            raise ValueError(f"observation '{key}' has dtype {x.dtype}, expected float32")
        # One reduction instead of isfinite + all: the sum is non-finite iff some entry is
        # NaN/Inf (or the values are so large that they are unusable anyway).
        if check_finite and not math.isfinite(x.sum().item()):
            bad = (~torch.isfinite(x)).nonzero()
            where = f' (first at index {bad[0].tolist()})' if len(bad) else ' (values overflow)'
            raise ValueError(f"observation '{key}' contains NaN/Inf{where}")
        batch_size = x.shape[0]
    return batch_size


class ObservationEncoder(nn.Module):
    """MLP from the concatenated, standardised observation features to ``d_model``."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.normalizer = ObservationNormalizer(cfg)
        layers, width = [], cfg.obs_dim
        for _ in range(cfg.n_layers - 1):
            layers += [nn.Linear(width, cfg.hidden_dim), nn.SiLU()]
            width = cfg.hidden_dim
        layers += [nn.Linear(width, cfg.d_model), nn.LayerNorm(cfg.d_model)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp(self.normalizer(obs))


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1]: (N,) -> (N, dim)."""
    half = dim // 2
    # Periods from ~2 down to ~0.06 of the unit interval: smooth in t, yet resolves 1/100 steps.
    freqs = torch.exp(torch.linspace(0.0, math.log(100.0), half, device=t.device))
    angles = t.float()[:, None] * freqs[None, :]
    feats = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        feats = torch.cat([feats, t.float()[:, None]], dim=-1)
    return feats


class ConditionalChunkMLP(nn.Module):
    """Velocity / noise network f(x, t, cond) over a flattened chunk.

    The first layer acts on ``cat(x, cond, time_features(t))``; its weight is split by
    ``SamplerLoop`` so the cond and time contributions are computed once per sample, not per step.
    """

    def __init__(self, x_dim: int, cond_dim: int, hidden_dim: int, n_layers: int,
                 time_dim: int, skip_init: float = 0.0) -> None:
        super().__init__()
        self.x_dim, self.cond_dim, self.time_dim = x_dim, cond_dim, time_dim
        self.in_proj = nn.Linear(x_dim + cond_dim + time_dim, hidden_dim)
        self.hidden = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim)
                                    for _ in range(n_layers - 1))
        self.out = nn.Linear(hidden_dim, x_dim)
        # Linear skip x -> output, initialised to skip_init * I: the part of the target that is
        # linear in x (-x0 in a velocity, +x_t in an epsilon at high noise) is there from step 0
        # instead of being learned slowly through the MLP, which then only models the rest.
        self.skip = nn.Linear(x_dim, x_dim, bias=False)
        with torch.no_grad():
            self.skip.weight.copy_(torch.eye(x_dim) * skip_init)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, X), t (B,) in [0, 1], cond (B, C) -> (B, X)."""
        h = self.in_proj(torch.cat([x, cond, time_features(t, self.time_dim)], dim=-1))
        h = torch.nn.functional.silu(h)
        for layer in self.hidden:
            h = torch.nn.functional.silu(layer(h))
        return self.out(h) + self.skip(x)
