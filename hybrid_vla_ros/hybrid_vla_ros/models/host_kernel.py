"""The numpy/BLAS host kernel of the coarse-to-fine experts (``HostCoarseToFine``): the
``FusedCoarseToFine`` maths on static buffers, for small batches on CPU (see the class)."""
import math
import threading
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .capture import NonFiniteOutputError

HOST_KERNEL_MAX_BATCH = 8  # larger batches use the traced graph (torch's threads, MKL)


def _set_blas_threads(n: int) -> None:
    """numpy's BLAS uses ``n`` threads (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api='blas')


def _blas_rows(w: torch.Tensor, b: Optional[torch.Tensor] = None) -> np.ndarray:
    """(in, out) weight [+ bias as an extra input row, for inputs with a ones column]."""
    rows = [w] if b is None else [w, b.reshape(1, -1)]
    return np.ascontiguousarray(torch.cat(rows).detach().cpu().float().numpy())


class _HostBuffers:
    """Static buffers of ``HostCoarseToFine`` for one batch size: numpy arrays for the BLAS
    calls and torch views of the same memory for the in-place SiLU."""

    def __init__(self, k: 'HostCoarseToFine', b: int) -> None:
        f32, nh, nx, steps = np.float32, k.nh, k.nx, k.steps
        self.obs = np.zeros((b, k.n_obs + 1), f32)
        self.obs[:, -1] = 1.0  # ones column: biases live in the weights' last row
        self.obs_t = torch.from_numpy(self.obs)[:, :k.n_obs]
        self.enc = [np.zeros((b, w.shape[1]), f32) for w in k.enc_w]
        self.enc_t = [torch.from_numpy(e)[:, :w - 1] for e, w in zip(self.enc, k.enc_widths)]
        last = self.enc[-1]
        self.h, self.hc, self.hc_row = last[:, :k.d + 1], last[:, :k.d], last[0, :k.d]
        self.raw = self.enc[0][:, k.raw_cols[0]:k.raw_cols[1]] if k.raw_cols else None
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
        self.ones, self.total = np.ones((b * nx, 1), f32), np.zeros((1, 1), f32)
        self.flat_shape = (1, b * nx)
        if steps:
            self._refiner_buffers(k, b)

    def _refiner_buffers(self, k: 'HostCoarseToFine', b: int) -> None:
        f32, nh, nx, steps = np.float32, k.nh, k.nx, k.steps
        # Step k's input is (x, one-hot k): the one-hot rows of the step matrix hold step k's
        # constants (and at batch 1 the cond term, written once per call).
        self.xs = [np.zeros((b, nx + steps), f32) for _ in range(steps)]
        for i, x in enumerate(self.xs):
            x[:, nx + i] = 1.0
        self.x0, self.x_next = self.xs[0][:, :nx], [x[:, :nx] for x in self.xs[1:]]
        self.step_w, self.cond_rows = k.step_w, None
        if b == 1:
            self.step_w = k.step_w.copy()
            self.cond_rows = self.step_w[nx:, k.step_pre[0]:k.step_pre[1]]
        self.m = np.zeros((b, k.m_width), f32)
        for j in k.ones_cols:
            self.m[:, j] = 1.0
        self.pre = self.m[:, k.pre[0]:k.pre[1]]
        self.m_t = torch.from_numpy(self.m)
        self.silu_t = [self.m_t[:, lo:hi] for lo, hi in k.silu_cols]
        self.step_out = self.m[:, k.step_cols[0]:k.step_cols[1]]
        self.hidden_io = [(self.m[:, i0:i1], self.m[:, o0:o1])
                          for (i0, i1), (o0, o1) in k.hidden_cols]
        self.final_in = self.m[:, :nh + nx]

    def flat(self, chunk: np.ndarray) -> np.ndarray:
        return chunk.reshape(self.flat_shape)


class HostCoarseToFine:
    """The ``FusedCoarseToFine`` maths as a CPU kernel: numpy/BLAS matmuls on static buffers.

    At batch 1 the hand-fused graph is a chain of ~20 tiny matrix-vector products; torch's CPU
    matmul (MKL here) pays a large fixed cost on each, numpy's BLAS (OpenBLAS) much less. This
    kernel runs the same folded weights with every bias folded into its weight matrix (inputs
    carry a ones column), the LayerNorm's centring folded into the encoder's last layer and its
    scale/shift into the head, the coarse chunk's un-normalisation and cond contribution in one
    matmul, and SiLU in place through torch views of the same buffers. It runs single-threaded:
    building one pins numpy's BLAS to 1 thread (process-wide, via threadpoolctl when installed),
    because an OpenBLAS pool spinning next to torch's OpenMP pool on a small machine costs
    milliseconds per call. Meant for small batches (the experts use it up to
    ``HOST_KERNEL_MAX_BATCH``). Calls on one instance are serialised by a lock.

    Call: ``kernel(*obs_tensors, noise) -> (refined, coarse)`` absolute (B, H, D) torch tensors,
    like the traced graph; ``NonFiniteOutputError`` (a ValueError) instead of a non-finite chunk.
    Built from a module with ``steps == 0`` (``FusedToken``: the token pass alone, no refiner),
    it stops after the coarse chunk and returns it twice (``refined`` is ``coarse``).
    """

    def __init__(self, fused: nn.Module) -> None:
        f = fused
        rest, trunk = list(f.enc_rest), list(f.trunk)
        ln = rest[-1] if rest else None
        enc_lin = [m for m in rest if isinstance(m, nn.Linear)]
        trunk_lin = [m for m in trunk if isinstance(m, nn.Linear)]
        if (not isinstance(ln, nn.LayerNorm)
                or [type(m) for m in rest] != [nn.SiLU, nn.Linear] * len(enc_lin) + [nn.LayerNorm]
                or [type(m) for m in trunk] != [nn.Linear, nn.SiLU] * len(trunk_lin)):
            raise NotImplementedError('HostCoarseToFine: unsupported encoder / trunk layout')
        with torch.no_grad():
            self.steps, self.chunk = f.steps, (f.horizon, f.action_dim)
            self.n_obs, self.n_state = f.enc_w.shape[0], f.sel.shape[0]
            d = ln.normalized_shape[0]
            self.d, self.eps = d, float(ln.eps)
            gamma = ln.weight if ln.weight is not None else torch.ones(d)
            beta = ln.bias if ln.bias is not None else torch.zeros(d)
            if self.steps:
                self.nh, self.nx = f.out_w.shape
                cond_w, n_raw = f.cond_w, self.n_obs if f.obs_skip else 0
            else:  # the token pass alone (FusedToken): no refiner, no cond (nh = 0)
                self.nh, self.nx = 0, f.horizon * f.action_dim
                cond_w, n_raw = torch.zeros(d + self.nx, 0), 0
            w_feat = cond_w[:d]
            w_raw = cond_w[d:d + n_raw]
            w_coarse = cond_w[d + n_raw:]
            # Encoder: obs -> [..SiLU] -> centred last layer (LayerNorm's mean folded in). Each
            # matrix maps (input, 1) to (output, 1) so the next layer's bias is a weight row;
            # the first one also computes the cond's raw-observation term.
            layers = [(f.enc_w, f.enc_b)] + [(m.weight.t(), m.bias) for m in enc_lin]
            self.enc_w, self.enc_widths = [], []
            for i, (w, b) in enumerate(layers):
                last = i == len(layers) - 1
                if last:
                    w, b = w - w.mean(1, keepdim=True), b - b.mean()
                cols = [torch.cat([w, b[None]]), _unit_column(w.shape[0])]
                if i == 0 and n_raw:
                    cols.append(torch.cat([w_raw, torch.zeros(1, self.nh)]))
                self.enc_w.append(_blas_rows(torch.cat(cols, dim=1)))
                self.enc_widths.append(w.shape[1] + 1)
            self.raw_cols = (self.enc_widths[0], self.enc_widths[0] + self.nh) if n_raw else None
            # Head: LayerNorm's scale and shift folded into the first matrix after it, which
            # also computes the cond's feature term: (rstd * h_c, 1) @ [first | 1 | w_feat].
            lin = [(m.weight.t(), m.bias) for m in trunk_lin]
            lin.append((f.logits_w, f.logits_b))
            w0, b0 = lin[0]
            w0, b0 = gamma[:, None] * w0, b0 + beta @ w0
            feat_cols = torch.cat([gamma[:, None] * w_feat, (beta @ w_feat)[None]])
            self.head_w, self.head_widths = [], []
            if len(lin) == 1:  # no trunk: logits and cond feature term in one matmul
                self.first_w = _blas_rows(torch.cat([torch.cat([w0, b0[None]]), feat_cols], 1))
                self.logits_w = None
            else:
                self.first_w = _blas_rows(torch.cat([torch.cat([w0, b0[None]]),
                                                     _unit_column(w0.shape[0]), feat_cols], 1))
                widths = [w0.shape[1] + 1]
                for w, b in lin[1:-1]:
                    self.head_w.append(_blas_rows(torch.cat([torch.cat([w, b[None]]),
                                                             _unit_column(w.shape[0])], 1)))
                    widths.append(w.shape[1] + 1)
                self.head_widths = widths
                self.logits_w = _blas_rows(f.logits_w, f.logits_b)
            self.n_logits = f.logits_w.shape[1]
            self.tokens_shape = (f.n_tokens, f.n_bins)
            self.centres = f.centres.detach().cpu().numpy().astype(np.float32)
            # (coarse, state, 1) @ [[diag(scale) | w_coarse], [sel | 0], [offset | 0]]:
            # the absolute coarse chunk and the cond's coarse term in one matmul.
            nx = self.nx
            q = torch.zeros(nx + self.n_state + 1, nx + self.nh)
            q[:nx, :nx] = torch.diag(f.centres_abs_scale)
            q[:nx, nx:] = w_coarse
            q[nx:nx + self.n_state, :nx] = f.sel
            q[-1, :nx] = f.off_coarse
            self.q_w = _blas_rows(q)
            # mu-law: the delta dims are expanded from the normalised chunk after the matmuls
            self.mu = float(getattr(f, 'mu', 0.0))
            if self.mu:
                self.mu_cols = np.flatnonzero(f.mu_mask.cpu().numpy())
                self.mu_state = f.sel.argmax(0).cpu().numpy()[self.mu_cols]  # state index
                self.mu_log = math.log1p(self.mu)
                self.mu_scale = (f.mu_scale.cpu().numpy()[self.mu_cols] / self.mu).astype(
                    np.float32)
                self.bin = float(f.bin) if self.steps else 0.0
            if self.steps:
                self._build_steps(f)
        self._buffers: Dict[int, _HostBuffers] = {}
        self._lock = threading.Lock()
        _set_blas_threads(1)

    def _build_steps(self, f: nn.Module) -> None:
        """The K Euler steps as 2 + 2 * hidden matmuls each, on one row buffer ``m``.

        Layout of ``m`` (batch rows): [g_L | y_x | pre | 1 | g_1 | 1 | ... | g_{L-1} | 1] with
        L hidden layers (L = 0: [pre | y_x]). The step matmul (x, one-hot k) -> (y_x, pre) writes
        x A + c_k next to the last hidden output, so the output matmul (g_L, y_x) @ [W_out; I]
        gives the next x with no separate add; SiLU runs in place on pre and each g_j.
        """
        nh, nx, steps = self.nh, self.nx, self.steps
        n_hidden = len(f.hidden_w)
        w_x, a = f.step_w[:, :nh], f.step_w[:, nh:]
        step_b = f.step_b[:, 0]  # (K, nh): time + cond bias + accumulated output bias
        consts = torch.zeros(steps, nx)
        consts[-1] = f.x_bias  # x~_K + c_K: the constant part of the last x
        if n_hidden == 0:
            self.m_width, self.step_cols, self.step_pre = nh + nx, (0, nh + nx), (0, nh)
            self.pre, self.ones_cols, self.hidden_cols = (0, nh), [], []
            rows = [torch.cat([w_x, a], 1), torch.cat([step_b, consts], 1)]
        else:
            base = nh + nx
            self.m_width = base + n_hidden * (nh + 1)
            self.step_cols, self.step_pre = (nh, base + nh), (nx, nx + nh)
            self.pre = (base, base + nh)
            regions = [base + j * (nh + 1) for j in range(n_hidden)]  # pre, g_1 .. g_{L-1}
            self.ones_cols = [r + nh for r in regions]
            outs = regions[1:] + [0]
            self.hidden_cols = [((r, r + nh + 1), (o, o + nh)) for r, o in zip(regions, outs)]
            rows = [torch.cat([a, w_x], 1), torch.cat([consts, step_b], 1)]
        self.silu_cols = [self.pre] + [o for _, o in self.hidden_cols]
        self.step_w = _blas_rows(torch.cat(rows))  # (nx + K, step width)
        self.step_b = np.ascontiguousarray(step_b.cpu().numpy().astype(np.float32))
        self.noise_scale = float(f.noise_scale)
        self.hidden_w = [_blas_rows(w, b) for w, b in f.hidden_w]
        eye = torch.eye(nx)
        self.out_w = _blas_rows(torch.cat([f.out_w, eye]))  # (g_L, y_x) -> next x
        rs = f.res_scale[None]
        self.out_w_last = _blas_rows(torch.cat([f.out_w * rs, eye * rs]))  # -> action units

    def __call__(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b = tensors[-1].shape[0]
        with self._lock:
            buf = self._buffers.get(b)
            if buf is None:
                buf = self._buffers[b] = _HostBuffers(self, b)
            try:
                return self._run(buf, [t.detach() if t.requires_grad else t for t in tensors], b)
            except FloatingPointError as err:  # np.seterr(all='raise') and a NaN/Inf input
                raise NonFiniteOutputError(str(err)) from err

    def _run(self, buf: _HostBuffers, tensors: Sequence[torch.Tensor], b: int
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        # np.dot with out= skips matmul's gufunc overhead; it needs C-contiguous outputs,
        # which the (1, n) buffer views are at batch 1.
        mm, silu_ = (np.dot if b == 1 else np.matmul), _silu_
        torch.cat(tensors[:-1], dim=1, out=buf.obs_t)
        src = buf.obs
        for i, w in enumerate(self.enc_w):
            mm(src, w, out=buf.enc[i])
            if i < len(self.enc_w) - 1:
                silu_(buf.enc_t[i])
                src = buf.enc[i][:, :self.enc_widths[i]]
        # LayerNorm: h is already centred; scale it by 1 / std (its ones column stays 1).
        hc = buf.hc
        if b == 1:
            var = float(np.dot(buf.hc_row, buf.hc_row)) / self.d
            if not math.isfinite(var):  # a NaN/Inf observation
                raise NonFiniteOutputError('non-finite encoder features')
            np.multiply(hc, 1.0 / math.sqrt(var + self.eps), out=hc)
        else:
            var = np.einsum('ij,ij->i', hc, hc)[:, None] / self.d
            if not np.isfinite(var).all():
                raise NonFiniteOutputError('non-finite encoder features')
            np.multiply(hc, 1.0 / np.sqrt(var + self.eps), out=hc)
        z = mm(buf.h, self.first_w, out=buf.z)
        if self.logits_w is not None:  # the token trunk, then the logits
            src = buf.trunk_in
            silu_(buf.trunk_t)
            for i, w in enumerate(self.head_w):
                mm(src, w, out=buf.head[i])
                silu_(buf.head_t[i])
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
                self._expand(buf.q_coarse[:, self.mu_cols], buf.q_state, r)
            if not math.isfinite(mm(buf.flat(r), buf.ones, out=buf.total)[0, 0]):
                raise NonFiniteOutputError('the kernel produced NaN/Inf')
            coarse = torch.from_numpy(r.reshape(buf.shape))
            return coarse, coarse
        nx, silu_t = self.nx, buf.silu_t
        cond = np.add(buf.feat, r[:, nx:], out=buf.cond)
        if buf.raw is not None:
            np.add(cond, buf.raw, out=cond)
        xs, step_w, step_out, final_in = buf.xs, buf.step_w, buf.step_out, buf.final_in
        np.multiply(tensors[-1].numpy(), self.noise_scale, out=buf.x0)
        one_row = buf.cond_rows is not None
        if one_row:  # batch 1: the cond term joins the one-hot rows of the step matrix
            np.add(cond, self.step_b, out=buf.cond_rows)
        last = self.steps - 1
        for k in range(self.steps):
            mm(xs[k], step_w, out=step_out)
            if not one_row:
                np.add(buf.pre, cond, out=buf.pre)
            silu_(silu_t[0])
            for (src, dst), w, dst_t in zip(buf.hidden_io, self.hidden_w, silu_t[1:]):
                mm(src, w, out=dst)
                silu_(dst_t)
            if k < last:
                mm(final_in, self.out_w, out=buf.x_next[k])
        refined = mm(final_in, self.out_w_last)  # fresh
        np.add(refined, r[:, :nx], out=refined)
        if self.mu:  # the delta dims from the normalised chunks: coarse + bin * last x
            y = buf.q_coarse[:, self.mu_cols]
            x_last = mm(final_in, self.out_w)  # fresh
            self._expand(y + self.bin * x_last[:, self.mu_cols], buf.q_state, refined)
            self._expand(y, buf.q_state, r)
        # NaN/Inf anywhere in the chunk makes its sum non-finite (a BLAS product with a ones
        # column: the matmul code is warm here, unlike a cold reduction after the call).
        if not math.isfinite(mm(buf.flat(refined), buf.ones, out=buf.total)[0, 0]):
            raise NonFiniteOutputError('the kernel produced NaN/Inf')
        return (torch.from_numpy(refined.reshape(buf.shape)),
                torch.from_numpy(r[:, :nx].reshape(buf.shape)))

    def _expand(self, y: np.ndarray, state: np.ndarray, out: np.ndarray) -> None:
        """``out``'s delta columns = state + the mu-law expansion of the normalised ``y``
        (the inverse of ``ActionNormalizer.normalize`` on the delta dims)."""
        e = np.expm1(np.abs(y) * self.mu_log)
        e *= np.sign(y)
        e *= self.mu_scale
        e += state[:, self.mu_state]
        out[:, self.mu_cols] = e


# In-place SiLU without F.silu's Python-level dispatch (a fallback if the binding moves).
_silu_ = getattr(torch._C._nn, 'silu_', None) or (lambda t: F.silu(t, inplace=True))


def _unit_column(n_in: int) -> torch.Tensor:
    """(n_in + 1, 1) column that maps an input's ones column to an output ones column."""
    col = torch.zeros(n_in + 1, 1)
    col[-1] = 1.0
    return col
