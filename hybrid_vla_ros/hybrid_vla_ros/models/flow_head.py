"""Flow expert: conditional flow matching of the whole chunk from Gaussian noise.

Straight interpolants x_t = (1 - t) x0 + t x1 (x0 ~ N(0, I), x1 = normalised target chunk) and
velocity regression onto x1 - x0; sampling integrates K Euler or midpoint steps from t = 0 to 1.
"""

import torch
import torch.nn.functional as F

from .action_expert import Batch, LoopExpert
from .captured import SamplerLoop
from .configuration import FlowConfig
from .observation_encoder import ConditionalChunkMLP


class FlowHead(LoopExpert):
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
