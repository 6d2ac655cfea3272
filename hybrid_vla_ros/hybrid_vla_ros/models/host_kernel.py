"""The numpy/BLAS host kernels of the experts, for small batches on CPU: ``HostCoarseToFine``
(the ``FusedCoarseToFine`` / ``FusedToken`` maths) and ``HostLoopExpert`` (flow's Euler or
midpoint steps, diffusion's DDIM steps), both assembled from the pieces of
:mod:`.host_blocks` (folded encoder, K-step loop on static buffers, absolute-chunk matmul,
mu-law expansion, finite check).
"""
import threading
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .capture import NonFiniteOutputError
from .host_blocks import (
    FiniteCheck,
    FoldedEncoder,
    MuLaw,
    StepLoop,
    absolute_rows,
    blas_rows,
    chunk_unnormalizer,
    matmul_for,
    set_blas_threads,
    silu_,
    unit_column,
)

HOST_KERNEL_MAX_BATCH = 8  # larger batches use the traced graph (torch's threads, MKL)


class _HostKernel:
    """What every host kernel shares: static buffers per batch size, one lock per instance,
    NonFiniteOutputError for non-finite results, and single-threaded BLAS.

    Building one pins numpy's BLAS to 1 thread (process-wide, via threadpoolctl when
    installed), because an OpenBLAS pool spinning next to torch's OpenMP pool on a small
    machine costs milliseconds per call. Subclasses define ``_buffers(b)`` and
    ``_run(buf, tensors, b)``.
    """

    def __init__(self) -> None:
        self._buffer_cache: Dict[int, object] = {}
        self._lock = threading.Lock()
        set_blas_threads(1)

    def __call__(self, *tensors: torch.Tensor):
        b = tensors[-1].shape[0]
        with self._lock:
            buf = self._buffer_cache.get(b)
            if buf is None:
                buf = self._buffer_cache[b] = self._buffers(b)
            try:
                return self._run(buf, [t.detach() if t.requires_grad else t for t in tensors], b)
            except FloatingPointError as err:  # np.seterr(all='raise') and a NaN/Inf input
                raise NonFiniteOutputError(str(err)) from err

    def _buffers(self, b: int):
        raise NotImplementedError

    def _run(self, buf, tensors: Sequence[torch.Tensor], b: int):
        raise NotImplementedError


class _CoarseBuffers:
    """Static buffers of ``HostCoarseToFine`` for one batch size."""

    def __init__(self, k: 'HostCoarseToFine', b: int) -> None:
        f32, nh, nx = np.float32, k.nh, k.nx
        self.enc = k.encoder.buffers(b)
        self.z = np.zeros((b, k.first_w.shape[1]), f32)
        if k.logits_w is None:
            self.feat = self.z[:, k.n_logits:]
        else:
            width = k.head_widths[0]
            self.feat, self.trunk_in = self.z[:, width:], self.z[:, :width]
            self.trunk_t = torch.from_numpy(self.z)[:, :width - 1]
        self.head = [np.zeros((b, w.shape[1]), f32) for w in k.head_w]
        self.head_t = [torch.from_numpy(h)[:, :w - 1]
                       for h, w in zip(self.head, k.head_widths[1:])]
        self.logits = None if k.logits_w is None else np.zeros((b, k.logits_w.shape[1]), f32)
        src = self.z if k.logits_w is None else self.logits
        self.logits3 = src[:, :k.n_logits].reshape((b,) + k.tokens_shape)
        if not np.shares_memory(self.logits3, src):
            self.logits3 = None  # reshaped per call instead
        self.tokens = np.zeros((b, k.tokens_shape[0]), np.int64)
        self.q = np.zeros((b, nx + k.n_state + 1), f32)  # (coarse, state, 1)
        self.q[:, -1] = 1.0
        self.q_coarse, self.q_state = self.q[:, :nx], self.q[:, nx:-1]
        self.cond = np.zeros((b, nh), f32)
        self.shape = (b,) + k.chunk
        self.check = FiniteCheck(b, nx)
        self.loop = k.loop.buffers(b) if k.steps else None


class HostCoarseToFine(_HostKernel):
    """The ``FusedCoarseToFine`` maths as a CPU kernel: numpy/BLAS matmuls on static buffers.

    At batch 1 the hand-fused graph is a chain of ~20 tiny matrix-vector products; torch's CPU
    matmul (MKL here) pays a large fixed cost on each, numpy's BLAS (OpenBLAS) much less. This
    kernel runs the same folded weights with every bias folded into its weight matrix (inputs
    carry a ones column): the encoder is a ``FoldedEncoder`` (LayerNorm's centring in its last
    layer, its scale/shift in the head's first matrix, which also computes the cond's feature
    term), the coarse chunk's un-normalisation and cond contribution are one matmul
    (``absolute_rows``), and the K Euler steps are a ``StepLoop`` (its first layer's constants
    include the output bias accumulated over the steps, ``FusedCoarseToFine.step_b``; the last
    output matrix maps straight to action units). Single-threaded BLAS, one lock per instance
    (``_HostKernel``). Meant for small batches (the experts use it up to
    ``HOST_KERNEL_MAX_BATCH``).

    Call: ``kernel(*obs_tensors, noise) -> (refined, coarse)`` absolute (B, H, D) torch tensors,
    like the traced graph; ``NonFiniteOutputError`` (a ValueError) instead of a non-finite chunk.
    Built from a module with ``steps == 0`` (``FusedToken``: the token pass alone, no refiner),
    it stops after the coarse chunk and returns it twice (``refined`` is ``coarse``).
    """

    def __init__(self, fused: nn.Module) -> None:
        f = fused
        trunk = list(f.trunk)
        trunk_lin = [m for m in trunk if isinstance(m, nn.Linear)]
        if [type(m) for m in trunk] != [nn.Linear, nn.SiLU] * len(trunk_lin):
            raise NotImplementedError('HostCoarseToFine: unsupported trunk layout')
        with torch.no_grad():
            self.steps, self.chunk = f.steps, (f.horizon, f.action_dim)
            n_obs, self.n_state = f.enc_w.shape[0], f.sel.shape[0]
            if self.steps:
                self.nh, self.nx = f.out_w.shape
                cond_w, n_raw = f.cond_w, n_obs if f.obs_skip else 0
                d = cond_w.shape[0] - n_raw - self.nx
            else:  # the token pass alone (FusedToken): no refiner, no cond (nh = 0)
                self.nh, self.nx, n_raw = 0, f.horizon * f.action_dim, 0
                d, cond_w = f.logits_w.shape[0], None
            # the first encoder layer also computes the cond's raw-observation term
            extra = torch.cat([cond_w[d:d + n_raw], torch.zeros(1, self.nh)]) if n_raw else None
            self.encoder = FoldedEncoder(f.enc_w, f.enc_b, f.enc_rest, extra)
            if self.encoder.d != d:
                raise NotImplementedError('HostCoarseToFine: feature width mismatch')
            w_feat = cond_w[:d] if self.steps else torch.zeros(d, 0)
            w_coarse = cond_w[d + n_raw:] if self.steps else None
            # Head: (rstd * h_c, 1) @ [first | 1 | w_feat] with the LayerNorm's scale and shift
            # folded in: the first head layer and the cond's feature term in one matmul.
            lin = [(m.weight.t(), m.bias) for m in trunk_lin]
            lin.append((f.logits_w, f.logits_b))
            w0, b0 = lin[0]
            first, feat_cols = self.encoder.fold_into(w0, b0), self.encoder.fold_into(w_feat)
            self.head_w, self.head_widths = [], []
            if len(lin) == 1:  # no trunk: logits and cond feature term in one matmul
                self.first_w = blas_rows(torch.cat([first, feat_cols], 1))
                self.logits_w = None
            else:
                self.first_w = blas_rows(torch.cat([first, unit_column(w0.shape[0]),
                                                    feat_cols], 1))
                widths = [w0.shape[1] + 1]
                for w, b in lin[1:-1]:
                    self.head_w.append(blas_rows(torch.cat([torch.cat([w, b[None]]),
                                                            unit_column(w.shape[0])], 1)))
                    widths.append(w.shape[1] + 1)
                self.head_widths = widths
                self.logits_w = blas_rows(f.logits_w, f.logits_b)
            self.n_logits = f.logits_w.shape[1]
            self.tokens_shape = (f.n_tokens, f.n_bins)
            self.centres = f.centres.detach().cpu().numpy().astype(np.float32)
            # (coarse, state, 1) -> (absolute coarse chunk, cond's coarse term)
            self.q_w = absolute_rows(f.centres_abs_scale, f.sel, f.off_coarse, w_coarse)
            # mu-law: the delta dims are expanded from the normalised chunk after the matmuls
            self.mu = float(getattr(f, 'mu', 0.0))
            self.mu_law = MuLaw(self.mu, f.mu_mask, f.mu_scale, f.sel) if self.mu else None
            self.bin = float(f.bin) if self.steps else 0.0
            if self.steps:
                self._build_steps(f)
        super().__init__()

    def _build_steps(self, f: nn.Module) -> None:
        """The K Euler steps: y = x A (+ c_K at the last step: the output bias accumulated over
        the steps), next x = (g_L, y) @ [W_out; I]; the last matrix is scaled to action units."""
        nh, nx, steps = self.nh, self.nx, self.steps
        y_b = torch.zeros(steps, nx)
        y_b[-1] = f.x_bias
        eye = torch.eye(nx)
        out = torch.cat([f.out_w, eye])
        rs = f.res_scale[None]
        out_last = torch.cat([f.out_w * rs, eye * rs])  # -> action units
        self.loop = StepLoop(f.step_w[:, :nh], f.step_w[:, nh:], f.step_b[:, 0], y_b,
                             f.hidden_w, [out] * (steps - 1) + [out_last])
        self.out_w = blas_rows(out)  # the normalised last x (mu-law path)
        self.noise_scale = float(f.noise_scale)

    def _buffers(self, b: int) -> _CoarseBuffers:
        return _CoarseBuffers(self, b)

    def _run(self, buf: _CoarseBuffers, tensors: Sequence[torch.Tensor], b: int
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        mm, silu = matmul_for(b), silu_
        h = self.encoder.run(buf.enc, tensors[:-1], mm)
        z = mm(h, self.first_w, out=buf.z)
        if self.logits_w is not None:  # the token trunk, then the logits
            src = buf.trunk_in
            silu(buf.trunk_t)
            for i, w in enumerate(self.head_w):
                mm(src, w, out=buf.head[i])
                silu(buf.head_t[i])
                src = buf.head[i]
            mm(src, self.logits_w, out=buf.logits)
        logits = buf.logits3 if buf.logits3 is not None else \
            (z if self.logits_w is None else buf.logits)[:, :self.n_logits].reshape(
                b, *self.tokens_shape)
        tokens = logits.argmax(2, out=buf.tokens)
        self.centres.take(tokens, out=buf.q_coarse, mode='clip')
        buf.q_state[...] = tensors[0].numpy()
        r = mm(buf.q, self.q_w)  # fresh: (absolute coarse chunk, cond's coarse term)
        if not self.steps:  # the token pass alone
            if self.mu:
                self.mu_law.expand(buf.q_coarse[:, self.mu_law.cols], buf.q_state, r)
            buf.check(mm, r)
            coarse = torch.from_numpy(r.reshape(buf.shape))
            return coarse, coarse
        nx = self.nx
        cond = np.add(buf.feat, r[:, nx:], out=buf.cond)
        if buf.enc.extra is not None:
            np.add(cond, buf.enc.extra, out=cond)
        np.multiply(tensors[-1].numpy(), self.noise_scale, out=buf.loop.x0)
        refined = self.loop.run(buf.loop, cond, mm)  # fresh, action units
        np.add(refined, r[:, :nx], out=refined)
        if self.mu:  # the delta dims from the normalised chunks: coarse + bin * last x
            cols = self.mu_law.cols
            y = buf.q_coarse[:, cols]
            x_last = mm(buf.loop.final_in, self.out_w)  # fresh
            self.mu_law.expand(y + self.bin * x_last[:, cols], buf.q_state, refined)
            self.mu_law.expand(y, buf.q_state, r)
        buf.check(mm, refined)
        return (torch.from_numpy(refined.reshape(buf.shape)),
                torch.from_numpy(r[:, :nx].reshape(buf.shape)))


class _LoopBuffers:
    """Static buffers of ``HostLoopExpert`` for one batch size."""

    def __init__(self, k: 'HostLoopExpert', b: int) -> None:
        nx = k.nx
        self.enc = k.encoder.buffers(b)
        self.cond = np.zeros((b, k.loop.nh), np.float32)
        self.loop = k.loop.buffers(b)
        self.q = np.zeros((b, nx + k.n_state + 1), np.float32)  # (x_K, state, 1)
        self.q[:, -1] = 1.0
        self.q_x, self.q_state = self.q[:, :nx], self.q[:, nx:-1]
        self.shape = (b,) + k.chunk
        self.check = FiniteCheck(b, nx)


class HostLoopExpert(_HostKernel):
    """A ``LoopExpert``'s inference (``flow``: Euler or midpoint steps of the velocity net;
    ``diffusion``: DDIM steps of the noise net) as a CPU kernel on static buffers.

    The pieces are ``HostCoarseToFine``'s: the encoder is a ``FoldedEncoder`` (observation
    standardisation in its first layer, LayerNorm's scale/shift in the cond matrix), the K
    steps a ``StepLoop`` built from the ``SamplerLoop``'s fused weights (step size folded in),
    and the normalised chunk -> absolute chunk one matmul of (x_K, state, 1) (``absolute_rows``;
    mu-law dims expanded after it). Each sampler is a choice of the loop's matrices, with
    ``y`` the part of the step linear in the input u and a ones column for the output bias:

    - Euler: y = (u (I + dt S), 1), next = (g, y) @ [dt W; I; dt b];
    - midpoint (2 evaluations per step, s = dt / 2): y = (u, s u S, 1); the half step is
      [s W; I; I; s b], the full step [2 s W; 0; 2 I; 2 s b] plus the step's start (post-op);
    - DDIM with eps = g W + u S + b: y = (u, u S, 1); without clipping next = alpha_k u +
      beta_k eps (per-step output matrices); with ``clip_sample``, next = gamma_k clamp(x0) +
      delta_k u = clamp(gamma_k x0, -gamma_k, gamma_k) + delta_k u with x0 = (u - s1m eps) / sa:
      one output matrix per step for gamma_k x0, then the clamp-and-add post-op (gamma_k >= 0
      for any schedule whose alpha_bar decreases; otherwise NotImplementedError).

    Call: ``kernel(*obs_tensors, noise) -> chunk`` absolute (B, H, D), like the traced graph;
    ``NonFiniteOutputError`` instead of a non-finite chunk. Layouts the kernel does not cover
    raise NotImplementedError at build time.
    """

    def __init__(self, expert: nn.Module, steps: int) -> None:
        cfg, net = expert.config, expert.net
        loop = expert.sampler_loop(steps)
        norm, mlp = expert.encoder.normalizer, expert.encoder.mlp
        if not isinstance(mlp[0], nn.Linear):
            raise NotImplementedError('HostLoopExpert: unsupported encoder layout')
        with torch.no_grad():
            loop.prepare()  # the current weights, fused (step size folded in)
            mean = torch.cat([getattr(norm, f'{k}_mean') for k in norm.dims]).cpu()
            inv_std = 1.0 / torch.cat([getattr(norm, f'{k}_std') for k in norm.dims]).cpu()
            first = mlp[0]
            w0, b0 = first.weight.cpu(), first.bias.cpu()
            self.encoder = FoldedEncoder((w0 * inv_std).t(), b0 - w0 @ (mean * inv_std),
                                         list(mlp[1:]))
            if net.cond_dim != self.encoder.d:
                raise NotImplementedError('HostLoopExpert: cond is not the encoder features')
            self.nx, self.n_state = net.x_dim, cfg.encoder.state_dim
            self.chunk = (cfg.horizon, cfg.action_dim)
            nh = net.in_proj.out_features
            fw = {name: getattr(loop, name).detach().cpu() for name in
                  ['f_w_x', 'f_w_c', 'f_t_bias', 'f_w_out', 'f_b_out']
                  + [f'f_{p}_h{i}' for i in range(len(net.hidden)) for p in 'wb']}
            self.cond_w = blas_rows(self.encoder.fold_into(fw['f_w_c']))
            y_w, outs, posts = _sampler_matrices(loop, fw['f_w_x'][:, nh:], fw['f_w_out'],
                                                 fw['f_b_out'])
            n_eval = len(outs)
            y_b = torch.zeros(n_eval, y_w.shape[1])
            y_b[:, -1] = 1.0  # y's ones column: the output bias row
            hidden = [(fw[f'f_w_h{i}'], fw[f'f_b_h{i}']) for i in range(len(net.hidden))]
            self.loop = StepLoop(fw['f_w_x'][:, :nh], y_w, fw['f_t_bias'][:, 0], y_b,
                                 hidden, outs, posts)
            scale, sel, offset, mu = chunk_unnormalizer(expert.action_norm, self.n_state)
            self.q_w = absolute_rows(scale, sel, offset)
            self.mu = float(mu[0]) if mu else 0.0
            self.mu_law = MuLaw(*mu) if mu else None
        self.kind = loop.kind
        super().__init__()

    def _buffers(self, b: int) -> _LoopBuffers:
        return _LoopBuffers(self, b)

    def _run(self, buf: _LoopBuffers, tensors: Sequence[torch.Tensor], b: int) -> torch.Tensor:
        mm = matmul_for(b)
        h = self.encoder.run(buf.enc, tensors[:-1], mm)
        cond = mm(h, self.cond_w, out=buf.cond)
        np.copyto(buf.loop.x0, tensors[-1].numpy())
        buf.q_state[...] = tensors[0].numpy()
        self.loop.run(buf.loop, cond, mm, last_out=buf.q_x)
        chunk = mm(buf.q, self.q_w)  # fresh: the absolute chunk
        if self.mu_law is not None:
            self.mu_law.expand(buf.q_x[:, self.mu_law.cols], buf.q_state, chunk)
        buf.check(mm, chunk)
        return torch.from_numpy(chunk.reshape(buf.shape))


def _sampler_matrices(loop: nn.Module, y_fused: torch.Tensor, w_out: torch.Tensor,
                      b_out: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor], List]:
    """A ``SamplerLoop``'s steps as ``StepLoop`` matrices: the carried map Y (nx, ny) whose last
    column is y's ones column, one output matrix (nh + ny, nx) and post-op per network
    evaluation (see ``HostLoopExpert``). ``y_fused``, ``w_out``, ``b_out``: the loop's fused
    skip matrix and output layer (step size folded in)."""
    nx = y_fused.shape[0]
    eye, zero, ones_col = torch.eye(nx), torch.zeros(nx, nx), torch.zeros(nx, 1)
    b_row = b_out[None]
    if loop.kind == 'euler':
        out = torch.cat([w_out, eye, b_row])
        return torch.cat([y_fused, ones_col], 1), [out] * loop.steps, [None] * loop.steps
    y_w = torch.cat([eye, y_fused, ones_col], 1)  # (u, u S', 1)
    if loop.kind == 'midpoint':
        half = torch.cat([w_out, eye, eye, b_row])  # u + v(u)
        full = torch.cat([2 * w_out, zero, 2 * eye, 2 * b_row])  # 2 v(u_mid), + x_k after
        outs, posts = [], []
        for k in range(loop.steps):
            outs += [half, full]
            posts += [None, ('add', 2 * k)]
        return y_w, outs, posts
    outs, posts = [], []
    for sa, s1m, sa_prev, s1m_prev in loop.ddim:
        if sa <= 0 or s1m <= 0:
            raise NotImplementedError('HostLoopExpert: degenerate DDIM schedule')
        eps_rows = [w_out, zero, eye, b_row]  # eps = (g, u, u S, 1) @ these
        u_rows = [torch.zeros_like(w_out), eye, zero, torch.zeros_like(b_row)]
        if not loop.clip_sample:  # next = alpha u + beta eps
            alpha, beta = sa_prev / sa, s1m_prev - sa_prev * s1m / sa
            outs.append(torch.cat([beta * e + alpha * u for e, u in zip(eps_rows, u_rows)]))
            posts.append(None)
            continue
        gamma, delta = sa_prev - s1m_prev * sa / s1m, s1m_prev / s1m
        if gamma < 0:
            raise NotImplementedError('HostLoopExpert: DDIM step with gamma < 0')
        p, q = gamma / sa, -gamma * s1m / sa  # gamma x0 = p u + q eps
        outs.append(torch.cat([q * e + p * u for e, u in zip(eps_rows, u_rows)]))
        posts.append(('clip', gamma, delta))
    return y_w, outs, posts
