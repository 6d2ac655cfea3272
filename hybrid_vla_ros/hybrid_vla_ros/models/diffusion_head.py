"""Diffusion expert: DDPM training (epsilon prediction), DDIM sampling in K steps.

Represents multimodal chunk distributions (two ways around an obstacle) instead of averaging
them, which is what a regression or a token-expectation head would do.
"""
import math

import torch
import torch.nn.functional as F

from .action_expert import Batch, LoopExpert
from .captured import SamplerLoop
from .configuration import DiffusionConfig
from .observation_encoder import ConditionalChunkMLP


def make_betas(schedule: str, n: int) -> torch.Tensor:
    """Noise schedule: 'linear' (DDPM, scaled to n steps) or 'cosine' (Nichol & Dhariwal)."""
    if schedule == 'linear':
        scale = 1000.0 / n
        return torch.linspace(scale * 1e-4, scale * 0.02, n, dtype=torch.float64)
    s = 0.008
    steps = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


class DiffusionHead(LoopExpert):
    """Multimodal chunk head; the chunk lives in [-1, 1] so DDIM can clip its x0 estimate."""

    name = 'diffusion'

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)
        self.net = ConditionalChunkMLP(config.chunk_size, config.encoder.d_model,
                                       config.hidden_dim, config.n_layers, config.time_dim,
                                       skip_init=1.0)
        betas = make_betas(config.schedule, config.train_timesteps)
        self.register_buffer('alphas_cumprod', torch.cumprod(1 - betas, 0).float(),
                             persistent=False)

    def build_loop(self, steps: int) -> SamplerLoop:
        return SamplerLoop(self.net, 'ddim', steps, alphas_cumprod=self.alphas_cumprod,
                           clip_sample=self.config.clip_sample)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Epsilon MSE at a random timestep; batch keys: state, goal[, image_feat], action."""
        self.check_batch(batch)
        cond = self.encoder(batch)
        x0 = self.action_norm.normalize(batch['action'], batch['state']).flatten(1)
        n_train = self.config.train_timesteps
        t = torch.randint(0, n_train, (x0.shape[0],), device=x0.device)
        ab = self.alphas_cumprod[t][:, None]
        eps = torch.randn_like(x0)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        return F.mse_loss(self.net(xt, t.float() / n_train, cond), eps)
