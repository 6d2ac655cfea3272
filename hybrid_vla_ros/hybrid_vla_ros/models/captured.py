"""The captured refinement loop: K sampler steps run as one captured graph.

``SamplerLoop`` is the K-step loop of a flow / refiner (Euler or midpoint) or of DDIM, unrolled
over a fixed K, as a module ``loop(x0, cond) -> x_K`` with two tensor inputs and one output.
``plain`` is the straightforward eager loop (the network called on ``cat(x, cond, t)`` each step);
``forward`` is the hand-fused form over a snapshot of the weights (``prepare``): the first
layer's weight is split so the cond and time contributions are computed once per call, the
first layer and the linear skip share one matmul, and ``dt`` is folded into the output layer
and the skip matrix (an Euler step is ``x @ (I + dt S) + out_dt(h)``).

``CapturedLoop`` runs a ``SamplerLoop`` through one backend:

- ``cuda_graph``: ``torch.cuda.CUDAGraph`` following PyTorch's capture rules: static input
  tensors, warm-up on a side stream, capture of the whole unrolled loop, replay after copying
  the inputs into the static tensors; one graph per (batch size, dtype, device), a new
  ``SamplerLoop`` (hence a new graph) per K. Not runnable on this machine (no GPU).
- ``jit``: ``torch.jit.trace`` of the unrolled fused loop, then ``torch.jit.freeze``.
- ``compile``: ``torch.compile(fullgraph=True)`` (works offline with g++, but measured slower
  than ``jit`` here at these sizes and takes ~40 s to build).
- ``fused``: the hand-fused loop, eager.
- ``eager``: the plain loop.
- ``auto``: ``cuda_graph`` on CUDA; on CPU the fastest of ``fused`` / ``jit`` by measurement on
  the first call, among those that match ``eager`` within 1e-5.

The experts add ``set_capture('whole')``: the entire inference (encoder, head, fused loop,
un-normalisation) traced and frozen as one graph; for ``coarse_to_fine`` a dedicated
hand-fused module (``FusedCoarseToFine``). Captured paths hold a snapshot of the weights: the
experts drop them whenever they are switched to ``train()`` or re-fitted.
"""
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple
import warnings

import torch
from torch import nn
import torch.nn.functional as F

from .observation_encoder import ConditionalChunkMLP, time_features

BACKENDS = ('eager', 'fused', 'jit', 'compile', 'cuda_graph', 'auto')


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


class _CudaGraphRunner:
    """One captured CUDA graph of ``fn(static_x, static_cond)`` for fixed shapes."""

    def __init__(self, fn: Callable, x: torch.Tensor, cond: torch.Tensor,
                 warmup: int = 3) -> None:
        self.static_x = x.detach().clone()
        self.static_cond = cond.detach().clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():  # warm-up off the default stream
            for _ in range(warmup):
                fn(self.static_x, self.static_cond)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.static_out = fn(self.static_x, self.static_cond)

    def __call__(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.static_x.copy_(x)
        self.static_cond.copy_(cond)
        self.graph.replay()
        return self.static_out.clone()  # the next replay overwrites static_out


class CapturedLoop:
    """Runs a ``SamplerLoop`` through a captured backend (see the module docstring)."""

    def __init__(self, loop: SamplerLoop, backend: str = 'auto',
                 candidates: Sequence[str] = ('fused', 'jit'), atol: float = 1e-5) -> None:
        if backend not in BACKENDS:
            raise ValueError(f'capture backend {backend!r}: expected one of {BACKENDS}')
        self.loop, self.backend, self.candidates, self.atol = loop, backend, candidates, atol
        self._cache: Dict[Tuple, Tuple[str, Callable]] = {}
        self.timings: Dict[str, float] = {}  # auto-selection measurements, ms per call

    def invalidate(self) -> None:
        self._cache.clear()

    def chosen(self, x: torch.Tensor) -> Optional[str]:
        """Backend used for inputs shaped like ``x`` (None before the first call)."""
        entry = self._cache.get((x.shape[0], x.dtype, x.device))
        return entry[0] if entry else None

    def __call__(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        key = (x.shape[0], x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = self._build(x, cond)
        with torch.no_grad():
            return self._cache[key][1](x, cond)

    def _build(self, x: torch.Tensor, cond: torch.Tensor) -> Tuple[str, Callable]:
        backend = self.backend
        if backend == 'auto':
            if x.is_cuda:
                backend = 'cuda_graph'
            else:
                return self._autoselect(x, cond)
        return backend, self._make(backend, x, cond)

    def _make(self, backend: str, x: torch.Tensor, cond: torch.Tensor) -> Callable:
        loop = self.loop.eval()
        loop.prepare()  # snapshot the current weights for the fused / captured forms
        if backend == 'eager':
            return loop.plain
        if backend == 'fused':
            return loop
        if backend == 'jit':
            with torch.no_grad(), warnings.catch_warnings():
                # TorchScript is deprecated in torch 2.13 but still the fastest CPU path here.
                warnings.simplefilter('ignore', DeprecationWarning)
                warnings.simplefilter('ignore', torch.jit.TracerWarning)
                traced = torch.jit.trace(loop, (x, cond), check_trace=False)
                return torch.jit.freeze(traced)
        if backend == 'compile':
            return torch.compile(loop, fullgraph=True, dynamic=False)
        if backend == 'cuda_graph':
            if not x.is_cuda:
                raise ValueError('capture backend cuda_graph needs CUDA tensors')
            return _CudaGraphRunner(loop, x, cond)
        raise ValueError(f'capture backend {backend!r}: expected one of {BACKENDS}')

    def _autoselect(self, x: torch.Tensor, cond: torch.Tensor) -> Tuple[str, Callable]:
        with torch.no_grad():
            reference = self.loop.eval().plain(x, cond)
            best: Tuple[float, str, Optional[Callable]] = (float('inf'), 'eager', None)
            for name in self.candidates:
                try:
                    fn = self._make(name, x, cond)
                    if not torch.allclose(fn(x, cond), reference, atol=self.atol, rtol=0):
                        continue
                    ms = _median_ms(fn, x, cond)
                except Exception:  # a backend that cannot build here is simply not chosen
                    continue
                self.timings[name] = ms
                if ms < best[0]:
                    best = (ms, name, fn)
        if best[2] is None:
            return 'eager', self.loop.plain
        return best[1], best[2]


def _median_ms(fn: Callable, x: torch.Tensor, cond: torch.Tensor, iters: int = 30) -> float:
    for _ in range(5):
        fn(x, cond)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn(x, cond)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2] * 1e3
