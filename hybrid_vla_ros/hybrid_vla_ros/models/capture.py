"""Capture backends: a ``SamplerLoop`` (:mod:`.sampler_loop`) run as one captured graph.

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

The numpy/BLAS CPU kernels the experts run at small batches are :mod:`.host_kernel` (built
from the pieces in :mod:`.host_blocks`).
"""
import math
import time
from typing import Callable, Dict, Optional, Sequence, Tuple
import warnings

import torch

from .sampler_loop import SamplerLoop

BACKENDS = ('eager', 'fused', 'jit', 'compile', 'cuda_graph', 'auto')


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


class NonFiniteOutputError(ValueError):
    """A captured inference produced NaN/Inf (e.g. from a NaN in the observation)."""


class _FiniteChecked:
    """A captured ``fn -> chunk`` or ``fn -> (chunk, ...)`` that raises
    ``NonFiniteOutputError`` instead of returning a non-finite chunk (one reduction of the
    small output)."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, *args: torch.Tensor):
        out = self.fn(*args)
        if not math.isfinite((out if isinstance(out, torch.Tensor) else out[0]).sum().item()):
            raise NonFiniteOutputError('the captured inference produced NaN/Inf')
        return out


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
