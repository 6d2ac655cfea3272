"""The K-step sampler loop of a flow / refiner (Euler or midpoint) or of DDIM, as one module.

``SamplerLoop`` unrolls the loop over a fixed K, as a module ``loop(x0, cond) -> x_K`` with two
tensor inputs and one output.
``plain`` is the straightforward eager loop (the network called on ``cat(x, cond, t)`` each step);
``forward`` is the hand-fused form over a snapshot of the weights (``prepare``): the first
layer's weight is split so the cond and time contributions are computed once per call, the
first layer and the linear skip share one matmul, and ``dt`` is folded into the output layer
and the skip matrix (an Euler step is ``x @ (I + dt S) + out_dt(h)``).

The capture backends that run it (CUDA graph, TorchScript, ...) are in :mod:`.capture`.
"""
from typing import List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from .observation_encoder import ConditionalChunkMLP, time_features


class SamplerLoop(nn.Module):
    """K unrolled sampler steps over a ``ConditionalChunkMLP``.

    kind ``'euler'`` / ``'midpoint'``: x <- x + dt * v(x, t) from t = 0 to 1.
    kind ``'ddim'``: deterministic DDIM (eta = 0) over ``timesteps`` (descending ints) of a
    ``train_timesteps``-step schedule with cumulative alphas ``alphas_cumprod``.
    """

    def __init__(self, net: ConditionalChunkMLP, kind: str, steps: int, *,
                 alphas_cumprod: Optional[torch.Tensor] = None, clip_sample: bool = False
                 ) -> None:
        super().__init__()
        if kind not in ('euler', 'midpoint', 'ddim'):
            raise ValueError(f"SamplerLoop kind {kind!r}: expected 'euler', 'midpoint', 'ddim'")
        if steps < 1:
            raise ValueError(f'SamplerLoop steps = {steps}: expected >= 1')
        self.net, self.kind, self.steps, self.clip_sample = net, kind, steps, clip_sample
        self.dt = 1.0 / steps
        self.ddim: List[Tuple[float, float, float, float]] = []
        if kind == 'ddim':
            if alphas_cumprod is None:
                raise ValueError("SamplerLoop kind 'ddim' needs alphas_cumprod")
            n_train = alphas_cumprod.shape[0]
            # 'leading' spacing (DDIM paper, diffusers' default): starts at T - T/K, where
            # sqrt(alpha_bar) is not ~1e-4, so x0 = (x - s * eps) / sqrt(alpha_bar) stays
            # well-conditioned and every backend agrees with the eager loop to float rounding.
            ts = (torch.arange(steps) * (n_train // steps)).flip(0).tolist()
            times = [t / n_train for t in ts]
            for i, t in enumerate(ts):
                ab = float(alphas_cumprod[t])
                ab_prev = float(alphas_cumprod[ts[i + 1]]) if i + 1 < steps else 1.0
                self.ddim.append((ab ** 0.5, (1 - ab) ** 0.5, ab_prev ** 0.5,
                                  (1 - ab_prev) ** 0.5))
        elif kind == 'euler':
            times = [k * self.dt for k in range(steps)]
        else:  # midpoint: two evaluations per step
            times = [t for k in range(steps) for t in (k * self.dt, (k + 0.5) * self.dt)]
        self.times = times
        self.register_buffer('t_values', torch.tensor(times, dtype=torch.float32),
                             persistent=False)
        self.register_buffer('t_feats', time_features(self.t_values, net.time_dim),
                             persistent=False)
        self._prepared = False

    def invalidate(self) -> None:
        """Drop the fused-weight snapshot (the next fused call re-prepares)."""
        self._prepared = False

    # -- the straightforward loop: the network on cat(x, cond, t) each step ------------------
    def plain(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, X) at the start, cond (B, C) -> x (B, X) after K steps; eager reference."""
        b = x.shape[0]

        def v(x_: torch.Tensor, i: int) -> torch.Tensor:
            return self.net(x_, self.t_values[i].expand(b), cond)

        for k in range(self.steps):
            if self.kind == 'euler':
                x = x + self.dt * v(x, k)
            elif self.kind == 'midpoint':
                x_mid = x + 0.5 * self.dt * v(x, 2 * k)
                x = x + self.dt * v(x_mid, 2 * k + 1)
            else:
                x = self._ddim_update(x, v(x, k), k)
        return x

    def _ddim_update(self, x: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        sa, s1m, sa_prev, s1m_prev = self.ddim[k]
        x0 = (x - s1m * eps) / sa
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            # Keep eps consistent with the clipped x0 so the update moves towards it; leading
            # spacing keeps sqrt(1 - alpha_bar) >= ~0.02, so this division is well-conditioned.
            eps = (x - sa * x0) / s1m
        return sa_prev * x0 + s1m_prev * eps

    # -- the hand-fused loop --------------------------------------------------------------------
    def prepare(self) -> None:
        """Snapshot the fused weights (contiguous, pre-transposed, step size folded in).

        Called by every capture backend when it builds; a weight change needs a new
        ``prepare`` (the experts invalidate their captured loops on ``train()``).
        """
        net = self.net
        nx, nc = net.x_dim, net.cond_dim
        with torch.no_grad():
            w_in = net.in_proj.weight
            # Scale of the velocity inside one update: the step size is folded into the output
            # layer and the skip matrix, so an Euler step is x <- x @ (I + dt S)^T + out_dt(h).
            scale = {'ddim': 1.0, 'euler': self.dt, 'midpoint': 0.5 * self.dt}[self.kind]
            w_skip = net.skip.weight.t() * scale
            if self.kind == 'euler':
                w_skip = w_skip + torch.eye(nx, dtype=w_in.dtype, device=w_in.device)
            # x enters twice per evaluation (first layer, skip): one matmul with both weights
            # side by side, (X, hidden + X). (Two addmm sharing x would also trip freeze's
            # concat-linear pass in torch 2.13, which mis-broadcasts their biases.)
            fused = {
                'f_w_x': torch.cat([w_in[:, :nx].t(), w_skip], dim=1),
                'f_w_c': w_in[:, nx:nx + nc].t(),  # (C, hidden)
                # (E, 1, hidden): bias + time contribution of every evaluation, computed once.
                'f_t_bias': (F.linear(self.t_feats, w_in[:, nx + nc:])
                             + net.in_proj.bias).unsqueeze(1),
                'f_w_out': net.out.weight.t() * scale,
                'f_b_out': net.out.bias * scale,
            }
            for i, layer in enumerate(net.hidden):
                fused[f'f_w_h{i}'] = layer.weight.t()
                fused[f'f_b_h{i}'] = layer.bias
            # Non-persistent buffers: traced as attributes, folded to constants by freeze.
            for name, tensor in fused.items():
                self.register_buffer(name, tensor.detach().clone().contiguous(),
                                     persistent=False)
            self._prepared = True

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if not self._prepared:
            self.prepare()
        w_x, w_out, b_out = self.f_w_x, self.f_w_out, self.f_b_out
        n_hidden = w_out.shape[0]
        hidden = [(getattr(self, f'f_w_h{i}'), getattr(self, f'f_b_h{i}'))
                  for i in range(len(self.net.hidden))]
        h_step = torch.mm(cond, self.f_w_c).unsqueeze(0) + self.f_t_bias  # (E, B, hidden)

        def v(x_: torch.Tensor, i: int) -> torch.Tensor:
            y = torch.mm(x_, w_x)  # (B, hidden + X): first-layer and skip parts at once
            h = F.silu(y[:, :n_hidden] + h_step[i])
            for w, b in hidden:
                h = F.silu(torch.addmm(b, h, w))
            return torch.addmm(y[:, n_hidden:], h, w_out) + b_out

        for k in range(self.steps):
            if self.kind == 'euler':
                x = v(x, k)  # the identity is inside w_skip
            elif self.kind == 'midpoint':
                x = x + 2.0 * v(x + v(x, 2 * k), 2 * k + 1)
            else:
                x = self._ddim_update(x, v(x, k), k)
        return x
