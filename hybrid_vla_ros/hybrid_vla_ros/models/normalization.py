"""Data statistics stored as buffers (they travel with the checkpoint).

``ObservationNormalizer``: per-feature mean/std of each observation key.
``ActionNormalizer``: absolute joint targets <-> per-(step, dim) normalised chunk in [-1, 1],
optionally relative to the current joint state (delta actions).
"""
import math
from typing import Dict, Optional

import torch
from torch import nn

from .configuration import EncoderConfig, ExpertConfig

OBS_KEYS = ('state', 'goal', 'image_feat')


def _obs_dims(cfg: EncoderConfig) -> Dict[str, int]:
    dims = {'state': cfg.state_dim, 'goal': cfg.goal_dim}
    if cfg.image_feat_dim:
        dims['image_feat'] = cfg.image_feat_dim
    return dims


class ObservationNormalizer(nn.Module):
    """Standardises each observation key; identity until ``fit`` is called."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dims = _obs_dims(cfg)
        for key, dim in self.dims.items():
            self.register_buffer(f'{key}_mean', torch.zeros(dim))
            self.register_buffer(f'{key}_std', torch.ones(dim))

    @torch.no_grad()
    def fit(self, obs: Dict[str, torch.Tensor]) -> None:
        for key in self.dims:
            x = obs[key].reshape(-1, self.dims[key]).float()
            std = x.std(0, unbiased=False)
            getattr(self, f'{key}_mean').copy_(x.mean(0))
            # Constant features (e.g. a fixed quaternion) keep unit scale instead of exploding.
            getattr(self, f'{key}_std').copy_(torch.where(std < 1e-6, torch.ones_like(std), std))

    def forward(self, obs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, obs_dim) concatenation of the standardised keys in a fixed order."""
        parts = [(obs[key] - getattr(self, f'{key}_mean')) / getattr(self, f'{key}_std')
                 for key in self.dims]
        return torch.cat(parts, dim=-1)


def mu_law_expand(y: torch.Tensor, mu: float) -> torch.Tensor:
    """The inverse of the mu-law companding: y in [-1, 1] -> x in [-1, 1] (units of the range's
    largest |value|)."""
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


class ActionNormalizer(nn.Module):
    """Absolute action chunk (B, H, D) <-> normalised chunk in [-1, 1] per (step, dim)."""

    def __init__(self, cfg: ExpertConfig) -> None:
        super().__init__()
        self.horizon, self.action_dim = cfg.horizon, cfg.action_dim
        self.delta_dims = cfg.delta_dims if cfg.delta_actions else 0
        self.margin = cfg.bin_margin
        self.mu = float(cfg.mu_law)
        self.register_buffer('low', -torch.ones(cfg.horizon, cfg.action_dim))
        self.register_buffer('high', torch.ones(cfg.horizon, cfg.action_dim))

    def relative(self, action: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Absolute (B, H, D) -> representation the expert models (delta on joint dims)."""
        if not self.delta_dims:
            return action
        n = self.delta_dims
        return torch.cat([action[..., :n] - state[:, None, :n], action[..., n:]], dim=-1)

    def absolute(self, rel: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if not self.delta_dims:
            return rel
        n = self.delta_dims
        return torch.cat([rel[..., :n] + state[:, None, :n], rel[..., n:]], dim=-1)

    @torch.no_grad()
    def fit(self, action: torch.Tensor, state: torch.Tensor) -> None:
        rel = self.relative(action.float(), state.float())
        low, high = rel.amin(0), rel.amax(0)
        # A constant dim (e.g. gripper never moves in the data) still gets a non-zero width.
        pad = torch.clamp((high - low) * self.margin, min=1e-4)
        self.low.copy_(low - pad)
        self.high.copy_(high + pad)

    def scale(self) -> torch.Tensor:
        """(H, D) half-width of the range: normalised units -> original units."""
        return (self.high - self.low) / 2

    def symmetric_scale(self) -> torch.Tensor:
        """(H, D) largest |value| of the range: the mu-law's unit on the delta dims."""
        return torch.maximum(self.low.abs(), self.high.abs())

    def normalize(self, action: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        rel = self.relative(action, state)
        x = (rel - self.low) / (self.high - self.low) * 2 - 1
        if self.mu:  # delta dims: mu-law around zero motion
            n = self.delta_dims
            u = (rel[..., :n] / self.symmetric_scale()[:, :n]).clamp(-1.0, 1.0)
            y = torch.sign(u) * torch.log1p(self.mu * u.abs()) / math.log1p(self.mu)
            x = torch.cat([y, x[..., n:]], dim=-1)
        return x

    def unnormalize(self, x: torch.Tensor, state: Optional[torch.Tensor]) -> torch.Tensor:
        rel = (x + 1) / 2 * (self.high - self.low) + self.low
        if self.mu:
            n = self.delta_dims
            u = mu_law_expand(x[..., :n], self.mu)
            rel = torch.cat([u * self.symmetric_scale()[:, :n], rel[..., n:]], dim=-1)
        return self.absolute(rel, state)
