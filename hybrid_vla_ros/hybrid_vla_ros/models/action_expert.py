"""Base class of the action experts: the interface the router, nodes, training and bench use.

An expert is ``loss(batch) -> scalar`` for training and ``sample(obs) -> (B, H, D)`` absolute
joint targets (+ gripper) for inference. ``batch`` = observation keys (``state`` (B, S),
``goal`` (B, G), optional ``image_feat`` (B, F)) plus ``action`` (B, H, D), all float32.
"""
import math
from typing import Callable, Dict, List, Optional, Tuple
import warnings

import torch
from torch import nn

from .captured import (
    BACKENDS,
    HOST_KERNEL_MAX_BATCH,
    CapturedLoop,
    NonFiniteOutputError,
    SamplerLoop,
    _FiniteChecked,
)
from .configuration import ExpertConfig
from .host_kernel import HostLoopExpert
from .normalization import OBS_KEYS, ActionNormalizer
from .observation_encoder import ObservationEncoder, validate_observation

Batch = Dict[str, torch.Tensor]


class ActionExpert(nn.Module):
    """Shared plumbing: encoder, action normalisation, validation, captured sampler loops."""

    name = 'expert'
    # set_capture('whole') on CPU: use the module's numpy/BLAS kernel when it has one (False:
    # always the traced + frozen TorchScript graph).
    host_kernel = True

    def __init__(self, config: ExpertConfig, build_modules: bool = True) -> None:
        super().__init__()
        self.config = config
        if build_modules:
            self.encoder = ObservationEncoder(config.encoder)
            self.action_norm = ActionNormalizer(config)
        self.capture_backend: Optional[str] = None  # None: the plain eager loop
        self._loops: Dict[int, SamplerLoop] = {}
        self._captured: Dict[int, CapturedLoop] = {}
        self._whole: Dict[Tuple, Tuple[List[str], Callable]] = {}
        self._tracing = False

    # -- data statistics ----------------------------------------------------------------------
    def fit_normalization(self, batch: Batch) -> None:
        """Compute observation and action statistics from a (large) batch of demonstrations."""
        self.check_batch(batch)
        self.encoder.normalizer.fit(batch)
        self.action_norm.fit(batch['action'], batch['state'])
        self._invalidate()

    # -- validation ---------------------------------------------------------------------------
    def check_obs(self, obs: Batch, check_finite: bool = True) -> int:
        """Batch size of a valid observation; ValueError on a missing key, shape, NaN/Inf."""
        return validate_observation(obs, self.config.encoder, check_finite=check_finite)

    def check_output(self, obs: Batch, chunk: torch.Tensor) -> None:
        """Raise ValueError if ``chunk`` is not finite, naming the observation key at fault.

        A NaN/Inf anywhere in the observation reaches every refined output through the
        encoder's first layer and LayerNorm, so checking the (small) output once replaces
        one check per observation key on the fast path; the slow path names the culprit.
        """
        if not math.isfinite(chunk.sum().item()):
            raise self.non_finite_error(obs)

    def non_finite_error(self, obs: Batch) -> ValueError:
        """The error for a non-finite output: raises the observation's own error (naming the key
        and index of the bad entry) if it has one, else returns a corrupted-weights error."""
        self.check_obs(obs)
        return ValueError('the expert produced a non-finite action chunk from a finite '
                          'observation (corrupted weights?)')

    def check_batch(self, batch: Batch) -> int:
        b = self.check_obs(batch)
        cfg = self.config
        want = (b, cfg.horizon, cfg.action_dim)
        action = batch.get('action') if isinstance(batch, dict) else None
        if action is None:
            raise ValueError(f"batch is missing 'action' (expected shape {want})")
        if tuple(action.shape) != want:
            raise ValueError(f"batch 'action' has shape {tuple(action.shape)}, expected {want}")
        if not bool(torch.isfinite(action).all()):
            raise ValueError("batch 'action' contains NaN/Inf")
        return b

    # -- captured loops -----------------------------------------------------------------------
    def set_capture(self, backend: Optional[str] = 'auto') -> None:
        """Run the K-step sampler loop through a captured backend (None: plain eager).

        ``'whole'``: the entire inference (encoder, head, fused K-step loop, un-normalisation)
        as one captured path per (batch size, K): on CPU up to ``HOST_KERNEL_MAX_BATCH`` the
        expert's numpy/BLAS kernel (``_host_kernel``), otherwise one traced + frozen
        TorchScript graph.
        """
        if backend is not None and backend != 'whole' and backend not in BACKENDS:
            raise ValueError(f"capture backend {backend!r}: expected None, 'whole' or one of "
                             f'{BACKENDS}')
        self.capture_backend = backend
        self._captured.clear()
        self._whole.clear()

    def train(self, mode: bool = True) -> 'ActionExpert':
        if mode:
            self._invalidate()  # captured graphs hold the old weights
        return super().train(mode)

    def _invalidate(self) -> None:
        for captured in self._captured.values():
            captured.invalidate()
        for loop in self._loops.values():
            loop.invalidate()  # fused-weight snapshots are stale
        self._whole.clear()

    def build_loop(self, steps: int) -> SamplerLoop:
        raise NotImplementedError

    def sampler_loop(self, steps: int) -> SamplerLoop:
        """The (cached) unrolled K-step loop of this expert."""
        if steps not in self._loops:
            self._loops[steps] = self.build_loop(steps).to(self._device())
        return self._loops[steps]

    def run_loop(self, steps: int, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        loop = self.sampler_loop(steps)
        if self._tracing:
            return loop(x, cond)  # inside a whole-graph trace: the fused loop
        if self.capture_backend in (None, 'whole') or torch.is_grad_enabled() and self.training:
            return loop.plain(x, cond)
        if steps not in self._captured:
            self._captured[steps] = CapturedLoop(loop, self.capture_backend)
        return self._captured[steps](x, cond)

    def infer(self, obs: Batch, noise: Optional[torch.Tensor], steps: int):
        """Unvalidated inference core (tensors in, tensors out); ``sample`` wraps it."""
        raise NotImplementedError

    def whole_graph_module(self, keys: List[str], steps: int) -> nn.Module:
        """The module traced for ``set_capture('whole')``: forward(*obs[keys], noise)."""
        return _InferenceGraph(self, keys, steps)

    def _run_inference(self, obs: Batch, noise: Optional[torch.Tensor], steps: int):
        if self.capture_backend != 'whole':
            return self.infer(obs, noise, steps)
        state = obs['state']
        if noise is None:  # the token head: no noise, keep the graph's signature uniform
            noise = state[:, :1]
        key = (state.shape[0], steps, state.is_cuda, noise.shape[1])  # cheap to hash
        entry = self._whole.get(key)
        if entry is None:
            entry = self._whole[key] = self._trace_whole(obs, noise, steps)
        keys, fn = entry
        if len(keys) == 2:  # the common case without image features, no generator
            return fn(state, obs[keys[1]], noise)
        return fn(*[obs[k] for k in keys], noise)

    def _trace_whole(self, obs: Batch, noise: torch.Tensor, steps: int
                     ) -> Tuple[List[str], Callable]:
        keys = [k for k in OBS_KEYS if k in self.encoder.normalizer.dims]
        if steps > 0:
            self.sampler_loop(steps).prepare()  # the current weights, fused
        graph = self.whole_graph_module(keys, steps)
        args = tuple(obs[k] for k in keys) + (noise,)
        kernel = self._host_kernel(graph, args, obs, steps)
        if kernel is not None:
            return keys, kernel
        was_training, self._tracing = self.training, True
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # TorchScript is deprecated in torch 2.13 but still the fastest CPU path here.
                warnings.simplefilter('ignore', DeprecationWarning)
                warnings.simplefilter('ignore', torch.jit.TracerWarning)
                traced = torch.jit.trace(nn.Module.train(graph, False), args, check_trace=False)
                # every traced form keeps the kernel's contract: NonFiniteOutputError, not NaN
                return keys, _FiniteChecked(torch.jit.freeze(traced))
        finally:
            self._tracing = False
            nn.Module.train(self, was_training)  # restore without invalidating

    def _host_kernel(self, graph: nn.Module, args: Tuple[torch.Tensor, ...], obs: Batch,
                     steps: int) -> Optional[Callable]:
        """The module's CPU kernel (``graph.host_kernel()``) if it has one that matches eager.

        Checked once per (batch size, K) on the first inputs against the eager ``infer``
        (within 1e-5); None (so the traced graph is used) on CUDA, above
        ``HOST_KERNEL_MAX_BATCH``, with ``host_kernel = False``, for layouts the kernel does not
        cover, or on a mismatch.
        """
        make = getattr(graph, 'host_kernel', None)
        if (make is None or not self.host_kernel or args[-1].is_cuda
                or args[-1].shape[0] > HOST_KERNEL_MAX_BATCH):
            return None
        try:
            kernel = make()
        except NotImplementedError:
            return None
        with torch.no_grad():
            want = self.infer(obs, args[-1], steps)
            got = kernel(*args)
        if isinstance(want, torch.Tensor):  # one chunk (token), not (refined, coarse)
            got, want = (got,), (want,)
        if all(torch.allclose(g, w, atol=1e-5, rtol=0) for g, w in zip(got, want)):
            return kernel
        warnings.warn(f'{self.name}: the CPU kernel does not match eager here; using the '
                      'traced graph', stacklevel=2)
        return None

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _apply(self, fn, *args, **kwargs):  # .to()/.cuda(): loops and graphs are per device
        self._loops.clear()
        self._captured.clear()
        self._whole.clear()
        return super()._apply(fn, *args, **kwargs)

    # -- the interface ------------------------------------------------------------------------
    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, obs: Batch, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _noise(shape, ref: torch.Tensor, noise: Optional[torch.Tensor],
               generator: Optional[torch.Generator]) -> torch.Tensor:
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f'noise has shape {tuple(noise.shape)}, expected {tuple(shape)}')
            return noise.to(ref)
        return torch.randn(shape, generator=generator, device=ref.device, dtype=ref.dtype)


class _InferenceGraph(nn.Module):
    """Positional-tensor wrapper of ``expert.infer`` for tracing the whole inference."""

    def __init__(self, expert: ActionExpert, keys: List[str], steps: int) -> None:
        super().__init__()
        self.expert, self.keys, self.steps = expert, keys, steps
        if steps > 0:  # registered so its fused-weight buffers are folded by freeze
            self.loop = expert.sampler_loop(steps)

    def forward(self, *tensors: torch.Tensor):
        obs = dict(zip(self.keys, tensors[:-1]))
        noise = tensors[-1]
        return self.expert.infer(obs, noise if self.expert.name != 'token' else None,
                                 self.steps)


class LoopExpert(ActionExpert):
    """An expert whose chunk is K steps of its sampler loop from noise, conditioned on the
    encoder features (``flow``: Euler steps of the velocity field; ``diffusion``: DDIM).

    ``set_capture('whole')`` runs the numpy/BLAS kernel (``HostLoopExpert``) on CPU up to
    ``HOST_KERNEL_MAX_BATCH``; larger batches and CUDA run the traced graph of ``infer``."""

    @torch.no_grad()
    def sample(self, obs: Batch, steps: Optional[int] = None, noise: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Observation -> absolute chunk (B, H, D) by K loop steps from ``noise`` (B, H*D;
        default: fresh N(0, 1) from ``generator``), which fixes the start point."""
        fast = self.capture_backend == 'whole'  # NaN/Inf checked on the output
        b = self.check_obs(obs, check_finite=not fast)
        cfg = self.config
        noise = self._noise((b, cfg.chunk_size), obs['state'], noise, generator)
        try:  # the whole-inference paths raise NonFiniteOutputError instead of returning NaN
            return self._run_inference(obs, noise, steps or cfg.steps)
        except NonFiniteOutputError:
            err = self.non_finite_error(obs)  # raises if the observation is at fault
            if not bool(torch.isfinite(noise).all()):
                raise ValueError('noise contains NaN/Inf') from None
            raise err from None

    def infer(self, obs: Batch, noise: Optional[torch.Tensor], steps: int) -> torch.Tensor:
        cfg = self.config
        x = self.run_loop(steps, noise, self.encoder(obs))
        return self.action_norm.unnormalize(x.view(-1, cfg.horizon, cfg.action_dim),
                                            obs['state'])

    def whole_graph_module(self, keys: List[str], steps: int) -> nn.Module:
        return _LoopInferenceGraph(self, keys, steps)


class _LoopInferenceGraph(_InferenceGraph):
    """``_InferenceGraph`` of a ``LoopExpert``, with its CPU kernel (``host_kernel()``)."""

    def host_kernel(self) -> HostLoopExpert:
        return HostLoopExpert(self.expert, self.steps)
