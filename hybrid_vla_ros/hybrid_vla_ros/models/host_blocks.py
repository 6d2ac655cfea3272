"""The pieces the numpy/BLAS host kernels (:mod:`.host_kernel`) are built from, one of each.

- ``FoldedEncoder``: observation -> [Linear, SiLU]* -> Linear -> LayerNorm with the LayerNorm's
  centring folded into the last layer and its scale/shift folded into whatever matrix reads the
  features (``fold_into``); the NaN/Inf check of the observation on the LayerNorm's variance.
- ``StepLoop``: E evaluations of the sampler network (first layer | carried linear part, hidden
  layers, one output matmul per evaluation) on static row buffers, with the per-evaluation
  constants in one-hot rows of the step matrix and per-evaluation output matrices (Euler,
  midpoint and DDIM differ only in those matrices and in an optional post-op).
- ``absolute_rows`` / ``MuLaw``: the normalised chunk -> absolute chunk map as one matmul of
  (chunk, state, 1), and the mu-law expansion of the delta dims after it.
- ``FiniteCheck``, ``silu_``, ``blas_rows``, ``unit_column``, ``set_blas_threads``.

Every matrix maps (input, 1) to (output[, 1]): biases live in the last weight row and the
inputs carry a ones column, so each layer is one BLAS call with ``out=`` a static buffer.
"""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .capture import NonFiniteOutputError

# In-place SiLU without F.silu's Python-level dispatch (a fallback if the binding moves).
silu_ = getattr(torch._C._nn, 'silu_', None) or (lambda t: F.silu(t, inplace=True))


def set_blas_threads(n: int) -> None:
    """numpy's BLAS uses ``n`` threads (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api='blas')


def blas_rows(w: torch.Tensor, b: Optional[torch.Tensor] = None) -> np.ndarray:
    """(in, out) weight [+ bias as an extra input row, for inputs with a ones column]."""
    rows = [w] if b is None else [w, b.reshape(1, -1)]
    return np.ascontiguousarray(torch.cat(rows).detach().cpu().float().numpy())


def unit_column(n_in: int) -> torch.Tensor:
    """(n_in + 1, 1) column that maps an input's ones column to an output ones column."""
    col = torch.zeros(n_in + 1, 1)
    col[-1] = 1.0
    return col


def matmul_for(b: int):
    """np.dot with out= skips matmul's gufunc overhead; it needs C-contiguous outputs, which
    the (1, n) buffer views are at batch 1."""
    return np.dot if b == 1 else np.matmul


class FiniteCheck:
    """NaN/Inf anywhere in a (B, X) result makes its sum non-finite: a BLAS product with a
    ones column (the matmul code is warm here, unlike a cold reduction after the call)."""

    def __init__(self, b: int, nx: int) -> None:
        self.ones, self.total = np.ones((b * nx, 1), np.float32), np.zeros((1, 1), np.float32)
        self.flat_shape = (1, b * nx)

    def __call__(self, mm, chunk: np.ndarray) -> None:
        if not math.isfinite(mm(chunk.reshape(self.flat_shape), self.ones, out=self.total)[0, 0]):
            raise NonFiniteOutputError('the kernel produced NaN/Inf')


class FoldedEncoder:
    """The observation encoder: (obs, 1) -> [..SiLU] -> centred last layer -> (h_c, 1), then
    ``h_c`` scaled in place by the LayerNorm's 1 / std (``run``). The LayerNorm's scale and
    shift are folded into the matrix that reads the features (``fold_into``).

    ``first_w`` (obs, hidden) / ``first_b``: the first layer with the observation's
    standardisation already folded in; ``rest``: the modules after it, [SiLU, Linear]* +
    [LayerNorm] (NotImplementedError otherwise). ``extra_first`` (obs + 1, k): extra columns of
    the first matmul (a linear term of the raw observation, read back as ``buf.extra``).
    """

    def __init__(self, first_w: torch.Tensor, first_b: torch.Tensor,
                 rest: Sequence[nn.Module], extra_first: Optional[torch.Tensor] = None) -> None:
        rest = list(rest)
        ln = rest[-1] if rest else None
        lin = [m for m in rest if isinstance(m, nn.Linear)]
        if (not isinstance(ln, nn.LayerNorm) or len(ln.normalized_shape) != 1
                or [type(m) for m in rest] != [nn.SiLU, nn.Linear] * len(lin) + [nn.LayerNorm]):
            raise NotImplementedError('host kernel: unsupported encoder layout')
        with torch.no_grad():
            d = ln.normalized_shape[0]
            self.d, self.eps, self.n_obs = d, float(ln.eps), first_w.shape[0]
            self.gamma = ln.weight.detach() if ln.weight is not None else torch.ones(d)
            self.beta = ln.bias.detach() if ln.bias is not None else torch.zeros(d)
            layers = [(first_w, first_b)] + [(m.weight.t(), m.bias) for m in lin]
            self.w, self.widths = [], []
            for i, (w, b) in enumerate(layers):
                if i == len(layers) - 1:  # LayerNorm's mean folded in: the output is centred
                    w, b = w - w.mean(1, keepdim=True), b - b.mean()
                cols = [torch.cat([w, b[None]]), unit_column(w.shape[0])]
                if i == 0 and extra_first is not None:
                    cols.append(extra_first)
                self.w.append(blas_rows(torch.cat(cols, dim=1)))
                self.widths.append(w.shape[1] + 1)
        self.extra_cols = None if extra_first is None else \
            (self.widths[0], self.widths[0] + extra_first.shape[1])

    def fold_into(self, w: torch.Tensor, b: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(d, out) weight [+ bias] reading the LayerNorm's output -> (d + 1, out) rows reading
        (rstd * h_c, 1): the scale on the weight, the shift (and bias) on the ones row."""
        shift = self.beta @ w if b is None else self.beta @ w + b
        return torch.cat([self.gamma[:, None] * w, shift[None]])

    def buffers(self, b: int) -> 'EncoderBuffers':
        return EncoderBuffers(self, b)

    def run(self, buf: 'EncoderBuffers', obs_tensors: Sequence[torch.Tensor], mm) -> np.ndarray:
        """Observation tensors -> (B, d + 1) buffer (normalised features without the scale and
        shift, ones column); NonFiniteOutputError for a NaN/Inf observation."""
        torch.cat(obs_tensors, dim=1, out=buf.obs_t)
        src, last = buf.obs, len(self.w) - 1
        for i, w in enumerate(self.w):
            mm(src, w, out=buf.enc[i])
            if i < last:
                silu_(buf.enc_t[i])
                src = buf.enc[i][:, :self.widths[i]]
        hc = buf.hc  # already centred; scale it by 1 / std (its ones column stays 1)
        if buf.hc_row is not None:
            var = float(np.dot(buf.hc_row, buf.hc_row)) / self.d
            if not math.isfinite(var):  # a NaN/Inf observation
                raise NonFiniteOutputError('non-finite encoder features')
            np.multiply(hc, 1.0 / math.sqrt(var + self.eps), out=hc)
        else:
            var = np.einsum('ij,ij->i', hc, hc)[:, None] / self.d
            if not np.isfinite(var).all():
                raise NonFiniteOutputError('non-finite encoder features')
            np.multiply(hc, 1.0 / np.sqrt(var + self.eps), out=hc)
        return buf.h


class EncoderBuffers:
    """Static buffers of a ``FoldedEncoder`` for one batch size: numpy arrays for the BLAS
    calls and torch views of the same memory for the in-place SiLU."""

    def __init__(self, enc: FoldedEncoder, b: int) -> None:
        f32 = np.float32
        self.obs = np.zeros((b, enc.n_obs + 1), f32)
        self.obs[:, -1] = 1.0  # ones column: biases live in the weights' last row
        self.obs_t = torch.from_numpy(self.obs)[:, :enc.n_obs]
        self.enc = [np.zeros((b, w.shape[1]), f32) for w in enc.w]
        self.enc_t = [torch.from_numpy(e)[:, :w - 1] for e, w in zip(self.enc, enc.widths)]
        last, d = self.enc[-1], enc.d
        self.h, self.hc = last[:, :d + 1], last[:, :d]
        self.hc_row = last[0, :d] if b == 1 else None
        self.extra = None if enc.extra_cols is None else \
            self.enc[0][:, enc.extra_cols[0]:enc.extra_cols[1]]


class StepLoop:
    """E evaluations of a ``ConditionalChunkMLP``-shaped net on static buffers.

    Evaluation e reads u_e (B, nx) and computes, with cond (B, nh) the per-call conditioning
    term of the first layer:

    - step matmul ``(u_e, one-hot e) @ [[Y | W_x], [y_b | pre_b]]`` -> y = u_e Y + y_b[e]
      (width ny: the linear part the output needs) and pre = u_e W_x + pre_b[e] (+ cond);
    - SiLU(pre), then each hidden layer ``g_j = SiLU((g_{j-1}, 1) @ W_j)``;
    - output matmul ``(g_L, y) @ outs[e]`` -> u_{e+1} (the last: the loop's result);
    - an optional post-op: ``('clip', c, d)``: u_{e+1} = clamp(output, -c, c) + d u_e;
      ``('add', j)``: u_{e+1} = output + u_j.

    Euler, midpoint and DDIM are these matrices (see the kernels that build them); identical
    ``outs`` entries (the same tensor object) share one array. The row buffer ``m`` is
    [g_L | y | pre | 1 | g_1 | 1 | ... | g_{L-1} | 1] with L hidden layers (L = 0:
    [pre | y]), so the output matmul's input (g_L, y) is one contiguous slice; SiLU runs in
    place on pre and each g_j. At batch 1 the cond term joins the one-hot rows of a copy of the
    step matrix (written once per call), so no per-evaluation add.
    """

    def __init__(self, w_x: torch.Tensor, y_w: torch.Tensor, pre_b: torch.Tensor,
                 y_b: torch.Tensor, hidden: Sequence[Tuple[torch.Tensor, torch.Tensor]],
                 outs: Sequence[torch.Tensor], posts: Optional[Sequence] = None) -> None:
        nx, nh = w_x.shape
        ny, n_eval = y_w.shape[1], pre_b.shape[0]
        self.nx, self.nh, self.ny, self.n_eval = nx, nh, ny, n_eval
        posts = list(posts) if posts is not None else [None] * n_eval
        # ('clip', c, d) -> ('clip', c, -c, d, d == 0), the scalars as 0-d float32 arrays
        # (the cheapest ufunc operands)
        self.posts = [p if p is None or p[0] == 'add' else
                      ('clip',) + tuple(np.array(v, np.float32) for v in (p[1], -p[1], p[2]))
                      + (p[2] == 0,) for p in posts]
        if len(outs) != n_eval or len(posts) != n_eval or y_b.shape != (n_eval, ny):
            raise ValueError('StepLoop: one output matrix, post-op and constant row per '
                             'evaluation')
        n_hidden = len(hidden)
        if n_hidden == 0:
            self.m_width, self.step_cols, self.step_pre = nh + ny, (0, nh + ny), (0, nh)
            self.pre, self.ones_cols, self.hidden_cols = (0, nh), [], []
            rows = [torch.cat([w_x, y_w], 1), torch.cat([pre_b, y_b], 1)]
        else:
            base = nh + ny
            self.m_width = base + n_hidden * (nh + 1)
            self.step_cols, self.step_pre = (nh, base + nh), (ny, ny + nh)
            self.pre = (base, base + nh)
            regions = [base + j * (nh + 1) for j in range(n_hidden)]  # pre, g_1 .. g_{L-1}
            self.ones_cols = [r + nh for r in regions]
            outs_at = regions[1:] + [0]
            self.hidden_cols = [((r, r + nh + 1), (o, o + nh)) for r, o in zip(regions, outs_at)]
            rows = [torch.cat([y_w, w_x], 1), torch.cat([y_b, pre_b], 1)]
        self.silu_cols = [self.pre] + [o for _, o in self.hidden_cols]
        self.step_w = blas_rows(torch.cat(rows))  # (nx + E, step width)
        self.pre_b = np.ascontiguousarray(pre_b.detach().cpu().numpy().astype(np.float32))
        self.hidden_w = [blas_rows(w, b) for w, b in hidden]
        shared = {}
        self.out_w = [shared.setdefault(id(o), blas_rows(o)) for o in outs]
        for o in self.out_w:
            if o.shape != (nh + ny, nx):
                raise ValueError(f'StepLoop: output matrix {o.shape}, expected {(nh + ny, nx)}')

    def buffers(self, b: int) -> 'StepBuffers':
        return StepBuffers(self, b)

    def run(self, buf: 'StepBuffers', cond: np.ndarray, mm,
            last_out: Optional[np.ndarray] = None) -> np.ndarray:
        """The E evaluations from ``buf.x0`` (written by the caller); the last one's output
        goes to ``last_out`` (default: a fresh array), which is returned."""
        silu_t, xs, step_w, step_out, final_in = (buf.silu_t, buf.xs, buf.step_w, buf.step_out,
                                                  buf.final_in)
        one_row = buf.cond_rows is not None
        if one_row:  # batch 1: the cond term joins the one-hot rows of the step matrix
            np.add(cond, self.pre_b, out=buf.cond_rows)
        last = self.n_eval - 1
        out = None
        for e in range(self.n_eval):
            mm(xs[e], step_w, out=step_out)
            if not one_row:
                np.add(buf.pre, cond, out=buf.pre)
            silu_(silu_t[0])
            for (src, dst), w, dst_t in zip(buf.hidden_io, self.hidden_w, silu_t[1:]):
                mm(src, w, out=dst)
                silu_(dst_t)
            target = buf.x_next[e] if e < last else last_out
            post = self.posts[e]
            if post is None:
                out = mm(final_in, self.out_w[e], out=target)
                continue
            r = mm(final_in, self.out_w[e], out=buf.scratch[e])
            if post[0] == 'clip':  # u_{e+1} = clamp(r, -c, c) + d u_e
                _, c, neg_c, d, no_d = post
                np.minimum(r, c, out=r)
                if no_d:
                    out = np.maximum(r, neg_c, out=target)
                else:
                    np.maximum(r, neg_c, out=r)
                    out = np.multiply(buf.x_in[e], d, out=target)
                    np.add(out, r, out=out)
            else:  # ('add', j): u_{e+1} = output + u_j
                out = np.add(r, buf.x_in[post[1]], out=target)
        return out


class StepBuffers:
    """Static buffers of a ``StepLoop`` for one batch size."""

    def __init__(self, loop: StepLoop, b: int) -> None:
        f32, nx, n_eval = np.float32, loop.nx, loop.n_eval
        # Evaluation e's input is (u_e, one-hot e): the one-hot rows of the step matrix hold
        # evaluation e's constants (and at batch 1 the cond term, written once per call).
        self.xs = [np.zeros((b, nx + n_eval), f32) for _ in range(n_eval)]
        for i, x in enumerate(self.xs):
            x[:, nx + i] = 1.0
        self.x_in = [x[:, :nx] for x in self.xs]
        self.x0, self.x_next = self.x_in[0], self.x_in[1:]
        self.step_w, self.cond_rows = loop.step_w, None
        if b == 1:
            self.step_w = loop.step_w.copy()
            self.cond_rows = self.step_w[nx:, loop.step_pre[0]:loop.step_pre[1]]
        self.m = np.zeros((b, loop.m_width), f32)
        for j in loop.ones_cols:
            self.m[:, j] = 1.0
        self.pre = self.m[:, loop.pre[0]:loop.pre[1]]
        m_t = torch.from_numpy(self.m)
        self.silu_t = [m_t[:, lo:hi] for lo, hi in loop.silu_cols]
        self.step_out = self.m[:, loop.step_cols[0]:loop.step_cols[1]]
        self.hidden_io = [(self.m[:, i0:i1], self.m[:, o0:o1])
                          for (i0, i1), (o0, o1) in loop.hidden_cols]
        self.final_in = self.m[:, :loop.nh + loop.ny]
        self.scratch = [None if p is None else np.zeros((b, w.shape[1]), f32)
                        for p, w in zip(loop.posts, loop.out_w)]


def absolute_rows(scale: torch.Tensor, sel: torch.Tensor, offset: torch.Tensor,
                  extra: Optional[torch.Tensor] = None) -> np.ndarray:
    """(chunk, state, 1) @ [[diag(scale) | extra], [sel | 0], [offset | 0]]: the absolute
    chunk (base = state @ sel on the delta dims) [and a linear term of the chunk] in one
    matmul."""
    nx, n_state = scale.shape[0], sel.shape[0]
    n_extra = 0 if extra is None else extra.shape[1]
    q = torch.zeros(nx + n_state + 1, nx + n_extra)
    q[:nx, :nx] = torch.diag(scale)
    if extra is not None:
        q[:nx, nx:] = extra
    q[nx:nx + n_state, :nx] = sel
    q[-1, :nx] = offset
    return blas_rows(q)


class MuLaw:
    """The mu-law delta dims of a chunk: ``expand`` writes state + the expansion of the
    normalised ``y`` (the inverse of ``ActionNormalizer.normalize`` on those dims)."""

    def __init__(self, mu: float, mask: torch.Tensor, scale: torch.Tensor,
                 sel: torch.Tensor) -> None:
        self.mu = float(mu)
        self.cols = np.flatnonzero(mask.cpu().numpy())
        self.state = sel.argmax(0).cpu().numpy()[self.cols]  # state index of each column
        self.log = math.log1p(self.mu)
        self.scale = (scale.cpu().numpy()[self.cols] / self.mu).astype(np.float32)

    def expand(self, y: np.ndarray, state: np.ndarray, out: np.ndarray) -> None:
        e = np.expm1(np.abs(y) * self.log)
        e *= np.sign(y)
        e *= self.scale
        e += state[:, self.state]
        out[:, self.cols] = e


def chunk_unnormalizer(action_norm: nn.Module, state_dim: int
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List]:
    """An ``ActionNormalizer`` as (scale, sel, offset, mu-law args or []) over the flat chunk:
    absolute = base + offset + x * scale with base = state @ sel (delta dims), and the mu-law
    dims expanded instead when ``mu > 0`` (``MuLaw(*args)``)."""
    horizon, action_dim = action_norm.low.shape
    scale = action_norm.scale().flatten().detach()
    sel = torch.zeros(state_dim, horizon * action_dim)
    n = action_norm.delta_dims
    for h in range(horizon if n else 0):
        for j in range(n):
            sel[j, h * action_dim + j] = 1.0
    offset = action_norm.low.flatten().detach() + scale
    mu = []
    if action_norm.mu:
        mask = torch.zeros(horizon, action_dim, dtype=torch.bool)
        mask[:, :n] = True
        mu = [action_norm.mu, mask.flatten(), action_norm.symmetric_scale().flatten().detach(),
              sel]
    return scale, sel, offset, mu
