"""Coarse-to-fine expert: token head for a coarse chunk, flow-matching refinement below a bin.

The refiner is a conditional flow on the residual r = (x - coarse) / bin_width (bin units, so
sub-bin corrections are O(1) numbers for the network). It starts at x0 = coarse + sigma * N(0, 1)
with sigma = ``noise_scale`` bins, and is trained with the flow-matching velocity objective
v = x1 - x0 at random t along the straight path (not by regressing the integrated output).
Sampling: one parallel token pass, then K Euler steps (the captured loop).
"""
import threading
from typing import List, Optional, Tuple, Union

import torch
from torch import nn
import torch.nn.functional as F

from .action_expert import ActionExpert, Batch
from .captured import HostCoarseToFine, NonFiniteOutputError, SamplerLoop
from .configuration import CoarseToFineConfig
from .normalization import ActionNormalizer
from .observation_encoder import ConditionalChunkMLP, ObservationEncoder
from .token_head import FusedTokenChunk, TokenHead

# A predicted coarse token further than this from the target (in bins) is replaced by the
# quantised target during training: early on the token head is random, and residuals of tens of
# bins would swamp the refiner's loss without teaching it anything about sub-bin correction.
MAX_COARSE_ERROR_BINS = 4.0


class CoarseToFine(ActionExpert):
    """Token coarse chunk + K-step flow refinement conditioned on (coarse chunk, observation)."""

    name = 'coarse_to_fine'

    def __init__(self, config: CoarseToFineConfig) -> None:
        super().__init__(config, build_modules=False)
        self.token = TokenHead(config.token_config())  # owns the shared encoder + normaliser
        # cond = (encoder features[, standardised raw observation], coarse chunk): the raw
        # skip path keeps sub-bin information the shared, token-trained features may drop.
        self.obs_skip = config.refiner_obs_skip
        self.refiner = ConditionalChunkMLP(config.chunk_size,
                                           config.encoder.d_model + config.chunk_size
                                           + (config.encoder.obs_dim if self.obs_skip else 0),
                                           config.hidden_dim, config.n_layers, config.time_dim,
                                           skip_init=-1.0)
        self.bin = 2.0 / config.n_bins  # bin width in normalised units
        # Sampling temperature of the refiner's start noise (a run-time setting, not trained):
        # 1 = the training distribution; 0 = start at the coarse chunk itself (deterministic).
        self.temperature = float(config.temperature)

    @property
    def encoder(self) -> ObservationEncoder:
        return self.token.encoder

    @property
    def action_norm(self) -> ActionNormalizer:
        return self.token.action_norm

    def _features(self, obs: Batch) -> Tuple[torch.Tensor, torch.Tensor]:
        raw = self.encoder.normalizer(obs)  # (B, obs_dim)
        return self.encoder.mlp(raw), raw

    def _cond(self, feat: torch.Tensor, raw: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        parts = [feat, raw, coarse] if self.obs_skip else [feat, coarse]
        return torch.cat(parts, dim=-1)

    def build_loop(self, steps: int) -> SamplerLoop:
        return SamplerLoop(self.refiner, 'euler', steps)

    def whole_graph_module(self, keys: List[str], steps: int) -> nn.Module:
        if steps == 0:
            return super().whole_graph_module(keys, steps)
        return FusedCoarseToFine(self, steps)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Token cross-entropy + refiner velocity MSE (bin units).

        batch keys: state, goal[, image_feat], action.
        """
        self.check_batch(batch)
        cfg = self.config
        feat, raw = self._features(batch)
        x1 = self.action_norm.normalize(batch['action'], batch['state']).flatten(1)  # (B, HD)
        logits = self.token.logits_from_features(feat)
        target_tokens = self.token.quantize(x1)
        token_loss = F.cross_entropy(logits.flatten(0, 1), target_tokens.flatten(),
                                     label_smoothing=cfg.label_smoothing)
        quantised = self.token.dequantize(target_tokens)
        with torch.no_grad():
            predicted = self.token.centres[logits.argmax(-1)]
            use_pred = torch.rand(x1.shape[0], 1, device=x1.device) >= cfg.teacher_forcing
            use_pred = use_pred & ((predicted - x1).abs() <= MAX_COARSE_ERROR_BINS * self.bin)
            coarse = torch.where(use_pred, predicted, quantised)
        r0 = cfg.noise_scale * torch.randn_like(x1)  # x0 = coarse + sigma * noise, in bins
        r1 = (x1 - coarse) / self.bin
        t = torch.rand(x1.shape[0], device=x1.device)
        rt = (1 - t[:, None]) * r0 + t[:, None] * r1
        v = self.refiner(rt, t, self._cond(feat, raw, coarse))
        return cfg.token_loss_weight * token_loss + F.mse_loss(v, r1 - r0)

    def sample(self, obs: Batch, steps: Optional[int] = None, noise: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None, return_coarse: bool = False
               ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Observation -> refined absolute chunk (B, H, D) [, coarse chunk (B, H, D)].

        ``steps`` = K refinement steps (0: coarse only); ``noise`` (B, H*D) in bin units
        (default: fresh N(0, 1) from ``generator``, or torch's global generator, times
        ``self.temperature``).
        """
        if torch.is_grad_enabled():  # = @torch.no_grad(), without its cost when already off
            with torch.no_grad():
                return self.sample(obs, steps, noise, generator, return_coarse)
        cfg = self.config
        k = cfg.steps if steps is None else steps
        fast = self.capture_backend == 'whole' and k > 0  # NaN/Inf checked on the output
        b = self.check_obs(obs, check_finite=not fast)
        if k > 0:
            if noise is None and (fast or self.temperature != 1.0):
                noise = self._fresh_noise(b, obs['state'], generator)
                if self.temperature != 1.0:
                    noise.mul_(self.temperature)
            else:
                noise = self._noise((b, cfg.chunk_size), obs['state'], noise, generator)
        try:  # the whole-inference paths raise NonFiniteOutputError instead of returning NaN/Inf
            refined, coarse = self._run_inference(obs, noise if k > 0 else None, k)
        except NonFiniteOutputError:
            err = self.non_finite_error(obs)  # raises if the observation is at fault
            if noise is not None and not bool(torch.isfinite(noise).all()):
                raise ValueError('noise contains NaN/Inf') from None
            raise err from None
        return (refined, coarse) if return_coarse else refined

    def _fresh_noise(self, b: int, ref: torch.Tensor, generator: Optional[torch.Generator]
                     ) -> torch.Tensor:
        """N(0, 1) noise (b, H*D) drawn in place into a per-thread buffer.

        ``normal_`` gives the same values and generator consumption as ``torch.randn`` without
        allocating a tensor per call; the buffer is only read within the call (the captured
        paths copy it), so it never escapes.
        """
        tls = self.__dict__.get('_noise_tls')
        if tls is None:
            tls = self.__dict__['_noise_tls'] = threading.local()
        buffers = getattr(tls, 'buffers', None)
        if buffers is None:
            buffers = tls.buffers = {}
        key = (b, ref.dtype, ref.device)
        buf = buffers.get(key)
        if buf is None:
            buf = buffers[key] = torch.empty((b, self.config.chunk_size), dtype=ref.dtype,
                                             device=ref.device)
        return buf.normal_(generator=generator)

    def infer(self, obs: Batch, noise: Optional[torch.Tensor], steps: int
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Unvalidated core: (refined, coarse) absolute chunks (B, H, D)."""
        cfg = self.config
        feat, raw = self._features(obs)
        coarse = self.token.coarse_from_features(feat)  # (B, HD) normalised
        x = coarse
        if steps > 0:
            r = self.run_loop(steps, cfg.noise_scale * noise, self._cond(feat, raw, coarse))
            x = coarse + self.bin * r
        shape = (-1, cfg.horizon, cfg.action_dim)
        return (self.action_norm.unnormalize(x.view(shape), obs['state']),
                self.action_norm.unnormalize(coarse.view(shape), obs['state']))


class FusedCoarseToFine(FusedTokenChunk):
    """Hand-fused inference of a ``CoarseToFine`` expert, for tracing + freezing as one graph.

    Same maths as ``CoarseToFine.infer`` with K Euler steps, rearranged so the graph has few
    ops: the token pass is ``FusedTokenChunk``'s (standardisation folded into the encoder's
    first layer); the observation standardisation is also folded into the refiner's cond
    weights; the cond and time contributions of the refiner's first layer are computed once;
    each step is one matmul for (first layer | skip), the hidden layers and one fused output
    matmul; the output bias accumulated over the steps is a constant added once;
    un-normalisation (and delta -> absolute) is two fused multiply-adds (with ``mu_law``, the
    mu-law expansion of the normalised refined chunk, ``absolute``). Weights are copied at
    construction (a snapshot, like every captured path). ``host_kernel()`` is the same maths as
    a numpy/BLAS CPU kernel (``captured.HostCoarseToFine``), which ``set_capture('whole')``
    uses on CPU.
    """


    def __init__(self, expert: CoarseToFine, steps: int) -> None:
        super().__init__(expert.token)
        cfg = expert.config
        nx, d, n_obs = cfg.chunk_size, cfg.encoder.d_model, cfg.encoder.obs_dim
        mean, inv_std = self.obs_mean, self.inv_std
        with torch.no_grad():
            net = expert.refiner
            loop = SamplerLoop(net, 'euler', steps).to(self.enc_w.device)
            w_in = net.in_proj.weight
            self.obs_skip = expert.obs_skip
            n_raw = n_obs if self.obs_skip else 0
            w_feat = w_in[:, nx:nx + d]
            w_raw = w_in[:, nx + d:nx + d + n_raw]
            w_coarse = w_in[:, nx + d + n_raw:nx + d + n_raw + nx]
            # cond = (feat, standardised obs, coarse) -> (feat, obs, coarse) with folded weights.
            cond_b = net.in_proj.bias
            if self.obs_skip:
                w_cond = [w_feat, w_raw * inv_std, w_coarse]
                cond_b = cond_b - w_raw @ (mean * inv_std)
            else:
                w_cond = [w_feat, w_coarse]
            self.cond_w = torch.cat(w_cond, dim=1).t().contiguous()
            t_bias = F.linear(loop.t_feats, w_in[:, nx + d + n_raw + nx:]) + cond_b  # (K, hid)
            dt = loop.dt
            a = torch.eye(nx, device=w_in.device) + dt * net.skip.weight.t()  # x <- x A + ...
            w_x = w_in[:, :nx].t()
            self.step_w = torch.cat([w_x, a], dim=1).contiguous()  # (X, hidden + X)
            self.hidden_w = [(layer.weight.t().contiguous(), layer.bias.clone())
                             for layer in net.hidden]
            self.out_w = (net.out.weight.t() * dt).contiguous()
            b_out = net.out.bias * dt
            # x_k = x~_k + c_k with c_0 = 0, c_{k+1} = c_k A + b_out: the bias never enters the
            # per-step ops; its effect on the first layer is a per-step constant.
            c = torch.zeros(nx, device=w_in.device)
            biases = []
            for k in range(steps):
                biases.append(t_bias[k] + c @ w_x)
                c = c @ a + b_out
            self.step_b = torch.stack(biases).unsqueeze(1).contiguous()  # (K, 1, hidden)
            self.noise_scale = float(cfg.noise_scale)
            self.res_scale = self.centres_abs_scale * expert.bin  # residual (bins) -> units
            self.off_refined = self.off_coarse + self.res_scale * c
            self.x_bias = c  # constant part of the last x (HostCoarseToFine folds it)
            self.bin = expert.bin  # residual (bins) -> normalised units (mu-law path)
        self.steps = steps

    def host_kernel(self) -> HostCoarseToFine:
        """The same maths as a numpy/BLAS CPU kernel (faster than the traced graph at batch 1)."""
        return HostCoarseToFine(self)

    def forward(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(state, goal[, image_feat], noise) -> (refined, coarse) absolute (B, H, D)."""
        obs, feat, coarse, base = self.token_pass(tensors)
        noise = tensors[-1]
        parts = [feat, obs, coarse] if self.obs_skip else [feat, coarse]
        h_cond = torch.mm(torch.cat(parts, dim=-1), self.cond_w)
        h_steps = h_cond.unsqueeze(0) + self.step_b  # (K, B, hidden), once for all steps
        n_hidden = self.out_w.shape[0]
        x = noise * self.noise_scale
        for k in range(self.steps):
            y = torch.mm(x, self.step_w)  # (B, hidden + X): first layer | x A
            h = F.silu(y[:, :n_hidden] + h_steps[k])
            for w, b in self.hidden_w:
                h = F.silu(torch.addmm(b, h, w))
            x = torch.addmm(y[:, n_hidden:], h, self.out_w)
        if self.mu:  # un-normalise through the mu-law: from the normalised refined chunk
            refined = self.absolute(coarse + self.bin * (x + self.x_bias), base)
            chunk = (self.horizon, self.action_dim)
            return refined.unflatten(1, chunk), self.absolute(coarse, base).unflatten(1, chunk)
        coarse_abs = torch.addcmul(base + self.off_coarse, coarse, self.centres_abs_scale)
        refined = torch.addcmul(torch.addcmul(base + self.off_refined, coarse,
                                              self.centres_abs_scale), x, self.res_scale)
        chunk = (self.horizon, self.action_dim)
        return refined.unflatten(1, chunk), coarse_abs.unflatten(1, chunk)
