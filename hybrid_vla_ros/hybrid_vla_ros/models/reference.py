"""The lesson's straightforward eager coarse-to-fine model, kept as the speed baseline.

Observation features 512 -> d_model 256; coarse head = one linear head per action dimension
(7 of them, 64 bins x chunk 8 each) looped in Python; refinement MLP 256 wide, 5 Euler steps
from coarse + 0.1 noise. Its loss is the lesson's: plain MSE of the (soft) coarse chunk and of
the integrated refined output against the target, not a flow-matching objective.
"""
import torch
from torch import nn
import torch.nn.functional as F


class ReferenceCoarseToFine(nn.Module):
    """Eager reference: (B, obs_dim) -> refined (B, H, D), coarse (B, H, D) in [-1, 1]."""

    def __init__(self, obs_dim: int = 512, d_model: int = 256, n_bins: int = 64,
                 horizon: int = 8, action_dim: int = 7, refine_hidden: int = 256,
                 steps: int = 5, noise: float = 0.1) -> None:
        super().__init__()
        self.horizon, self.action_dim, self.n_bins = horizon, action_dim, n_bins
        self.steps, self.noise = steps, noise
        self.encoder = nn.Sequential(nn.Linear(obs_dim, d_model), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(d_model, horizon * n_bins)
                                   for _ in range(action_dim))
        self.register_buffer('centres', torch.linspace(-1, 1, n_bins))
        chunk = horizon * action_dim
        self.refiner = nn.Sequential(
            nn.Linear(chunk + d_model + 1, refine_hidden), nn.ReLU(),
            nn.Linear(refine_hidden, refine_hidden), nn.ReLU(),
            nn.Linear(refine_hidden, chunk))

    def coarse(self, feat: torch.Tensor, soft: bool = False) -> torch.Tensor:
        dims = []
        for head in self.heads:  # one head per action dimension, looped in Python
            logits = head(feat).view(-1, self.horizon, self.n_bins)
            if soft:
                dims.append(torch.softmax(logits, -1) @ self.centres)
            else:
                dims.append(self.centres[logits.argmax(-1)])
        return torch.stack(dims, dim=-1)  # (B, H, D)

    def refine_step(self, x: torch.Tensor, feat: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.full((x.shape[0], 1), t)
        return self.refiner(torch.cat([x, feat, tt], dim=-1))

    def refine(self, feat: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        x = coarse.flatten(1) + self.noise * torch.randn_like(coarse.flatten(1))
        for k in range(self.steps):
            x = x + self.refine_step(x, feat, k / self.steps) / self.steps
        return x.view_as(coarse)

    def forward(self, obs: torch.Tensor):
        feat = self.encoder(obs)
        coarse = self.coarse(feat)
        return self.refine(feat, coarse), coarse

    def loss(self, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        feat = self.encoder(obs)
        coarse = self.coarse(feat, soft=True)
        refined = self.refine(feat, coarse)
        return F.mse_loss(coarse, target) + F.mse_loss(refined, target)
