"""Flow expert: conditional flow matching of the whole chunk from Gaussian noise.

Straight interpolants x_t = (1 - t) x0 + t x1 (x0 ~ N(0, I), x1 = normalised target chunk) and
velocity regression onto x1 - x0; sampling integrates K Euler or midpoint steps from t = 0 to 1.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from .action_expert import ActionExpert, Batch
from .captured import SamplerLoop
from .configuration import FlowConfig
from .observation_encoder import ConditionalChunkMLP


class FlowHead(ActionExpert):
    """Smooth continuous chunks (dexterous, precise); K network evaluations per sample."""

    name = 'flow'

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        self.net = ConditionalChunkMLP(config.chunk_size, config.encoder.d_model,
                                       config.hidden_dim, config.n_layers, config.time_dim,
                                       skip_init=-1.0)

    def build_loop(self, steps: int) -> SamplerLoop:
        return SamplerLoop(self.net, self.config.method, steps)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Flow-matching velocity MSE; batch keys: state, goal[, image_feat], action."""
        self.check_batch(batch)
        cond = self.encoder(batch)
        x1 = self.action_norm.normalize(batch['action'], batch['state']).flatten(1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        return F.mse_loss(self.net(xt, t, cond), x1 - x0)

    @torch.no_grad()
    def sample(self, obs: Batch, steps: Optional[int] = None, noise: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Observation -> absolute chunk (B, H, D); ``noise`` (B, H*D) fixes the start point."""
        b = self.check_obs(obs)
        cfg = self.config
        noise = self._noise((b, cfg.chunk_size), obs['state'], noise, generator)
        return self._run_inference(obs, noise, steps or cfg.steps)

    def infer(self, obs: Batch, noise: Optional[torch.Tensor], steps: int) -> torch.Tensor:
        cfg = self.config
        x = self.run_loop(steps, noise, self.encoder(obs))
        return self.action_norm.unnormalize(x.view(-1, cfg.horizon, cfg.action_dim),
                                            obs['state'])
