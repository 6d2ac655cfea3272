"""Token expert: per-dimension uniform bins, all H x D tokens decoded in one parallel pass.

One fused linear layer maps the observation embedding to (B, H*D, n_bins) logits; the loss is
cross-entropy against the binned target chunk. Bins are uniform over each (step, dim)'s
normalised range [-1, 1], so in original units a bin is ``(high - low) / n_bins`` wide.
"""
from typing import Optional

import torch
from torch import nn
import torch.nn.functional as F

from .action_expert import ActionExpert, Batch
from .configuration import TokenConfig


class TokenHead(ActionExpert):
    """Tokenised coarse actions decoded in parallel (fast; precision limited by the bin width)."""

    name = 'token'

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        d = config.encoder.d_model
        trunk = []
        for _ in range(config.trunk_layers):
            trunk += [nn.Linear(d, d), nn.SiLU()]
        self.trunk = nn.Sequential(*trunk)
        self.n_tokens = config.horizon * config.action_dim
        self.logits_proj = nn.Linear(d, self.n_tokens * config.n_bins)  # all tokens, one matmul
        self.register_buffer('centres', self._centres(config.n_bins), persistent=False)

    @staticmethod
    def _centres(n_bins: int) -> torch.Tensor:
        return -1 + (torch.arange(n_bins, dtype=torch.float32) + 0.5) * (2.0 / n_bins)

    # -- continuous <-> tokens ----------------------------------------------------------------
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised values in [-1, 1] -> bin indices (out-of-range values clamp to the ends)."""
        n = self.config.n_bins
        return ((x + 1) * (n / 2)).floor().clamp(0, n - 1).long()

    def dequantize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bin indices -> normalised bin centres."""
        return self.centres[tokens]

    def encode(self, action: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Absolute chunk (B, H, D) -> tokens (B, H, D) int64."""
        return self.quantize(self.action_norm.normalize(action, state))

    def decode(self, tokens: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H, D) -> absolute chunk at the bin centres (error <= half a bin)."""
        return self.action_norm.unnormalize(self.dequantize(tokens), state)

    def bin_width(self) -> torch.Tensor:
        """(H, D) width of one bin in action units (rad for joints after un-normalising)."""
        return (self.action_norm.high - self.action_norm.low) / self.config.n_bins

    # -- network ------------------------------------------------------------------------------
    def logits_from_features(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, d_model) -> (B, H*D, n_bins), one fused pass for every step and dim."""
        out = self.logits_proj(self.trunk(feat))
        return out.view(feat.shape[0], self.n_tokens, self.config.n_bins)

    def coarse_from_features(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, d_model) -> normalised coarse chunk (B, H*D)."""
        logits = self.logits_from_features(feat)
        if self.config.decode == 'expectation':
            return torch.softmax(logits, dim=-1) @ self.centres
        return self.centres[logits.argmax(dim=-1)]

    def loss(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy of all H x D tokens; batch keys: state, goal[, image_feat], action."""
        self.check_batch(batch)
        feat = self.encoder(batch)
        target = self.encode(batch['action'], batch['state']).flatten(1)  # (B, H*D)
        logits = self.logits_from_features(feat)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(),
                               label_smoothing=self.config.label_smoothing)

    @torch.no_grad()
    def sample(self, obs: Batch, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Observation -> absolute chunk (B, H, D) (deterministic: argmax or expectation)."""
        self.check_obs(obs)
        return self._run_inference(obs, None, 0)

    def infer(self, obs: Batch, noise: Optional[torch.Tensor], steps: int) -> torch.Tensor:
        cfg = self.config
        coarse = self.coarse_from_features(self.encoder(obs))
        return self.action_norm.unnormalize(coarse.view(-1, cfg.horizon, cfg.action_dim),
                                            obs['state'])
