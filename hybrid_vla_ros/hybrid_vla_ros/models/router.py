"""Learned expert router: (task / sub-goal embedding, state) -> probabilities over experts.

Trained from per-situation labels of which expert did best (e.g. from evaluation rollouts:
the expert with the lowest final error, or success at the lowest latency).
"""
from typing import Dict, List, Sequence, Union

import torch
from torch import nn
import torch.nn.functional as F

from .configuration import RouterConfig


class Router(nn.Module):
    """MLP classifier over ``config.experts`` (the registry's names)."""

    def __init__(self, config: RouterConfig) -> None:
        super().__init__()
        self.config = config
        in_dim = config.task_dim + config.state_dim
        self.register_buffer('in_mean', torch.zeros(in_dim))
        self.register_buffer('in_std', torch.ones(in_dim))
        layers, width = [], in_dim
        for _ in range(config.n_layers - 1):
            layers += [nn.Linear(width, config.hidden_dim), nn.SiLU()]
            width = config.hidden_dim
        layers.append(nn.Linear(width, len(config.experts)))
        self.mlp = nn.Sequential(*layers)

    def _inputs(self, task: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        for name, x, dim in (('task', task, cfg.task_dim), ('state', state, cfg.state_dim)):
            if x.dim() != 2 or x.shape[1] != dim:
                raise ValueError(f"router input '{name}' has shape {tuple(x.shape)}, "
                                 f'expected (B, {dim})')
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"router input '{name}' contains NaN/Inf")
        if task.shape[0] != state.shape[0]:
            raise ValueError(f'router inputs disagree on batch size: task {task.shape[0]}, '
                             f'state {state.shape[0]}')
        return (torch.cat([task, state], dim=-1) - self.in_mean) / self.in_std

    def forward(self, task: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """task (B, E), state (B, S) -> logits (B, n_experts)."""
        return self.mlp(self._inputs(task, state))

    @torch.no_grad()
    def probabilities(self, task: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(task, state), dim=-1)

    @torch.no_grad()
    def select(self, task: torch.Tensor, state: torch.Tensor) -> List[str]:
        """The most probable expert name per row."""
        return [self.config.experts[i] for i in self(task, state).argmax(-1).tolist()]

    def labels_to_indices(self, labels: Union[Sequence[str], torch.Tensor]) -> torch.Tensor:
        if torch.is_tensor(labels):
            return labels.long()
        index = {name: i for i, name in enumerate(self.config.experts)}
        unknown = sorted({name for name in labels if name not in index})
        if unknown:
            raise ValueError(f'router labels {unknown} are not experts of this router '
                             f'({list(self.config.experts)})')
        return torch.tensor([index[name] for name in labels], dtype=torch.long)


def train_router(router: Router, task: torch.Tensor, state: torch.Tensor,
                 labels: Union[Sequence[str], torch.Tensor], *, steps: int = 300,
                 lr: float = 3e-3, batch_size: int = 256, weight_decay: float = 1e-4,
                 seed: int = 0) -> Dict[str, float]:
    """Fit the router on situations (task embedding, state) labelled with the best expert.

    ``labels``: expert names, or int indices, or a float (N, n_experts) score matrix (higher =
    better; the argmax is the label). Also fits the input standardisation. Returns the final
    training loss and accuracy.
    """
    if torch.is_tensor(labels) and labels.is_floating_point():
        labels = labels.argmax(-1)
    target = router.labels_to_indices(labels).to(task.device)
    x = torch.cat([task, state], dim=-1)
    std = x.std(0, unbiased=False)
    router.in_mean.copy_(x.mean(0))
    router.in_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=weight_decay)
    router.train()
    n = task.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        loss = F.cross_entropy(router(task[idx], state[idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    router.eval()
    with torch.no_grad():
        logits = router(task, state)
        return {'loss': float(F.cross_entropy(logits, target)),
                'accuracy': float((logits.argmax(-1) == target).float().mean())}
