"""Token expert: per-dimension uniform bins, all H x D tokens decoded in one parallel pass.

One fused linear layer maps the observation embedding to (B, H*D, n_bins) logits; the loss is
cross-entropy against the binned target chunk. Bins are uniform over each (step, dim)'s
normalised range [-1, 1], so in original units a bin is ``(high - low) / n_bins`` wide.
"""
import copy
from typing import List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from .action_expert import ActionExpert, Batch
from .captured import HostCoarseToFine, NonFiniteOutputError
from .configuration import TokenConfig
from .normalization import mu_law_expand


class TokenHead(ActionExpert):
    """Tokenised coarse actions decoded in parallel (fast; precision limited by the bin width)."""

    name = 'token'

    def __init__(self, config: TokenConfig) -> None:
        super().__init__(config)
        d = config.encoder.d_model
        trunk = []
        for _ in range(config.trunk_layers):
            trunk += [nn.Linear(d, d), nn.SiLU()]
        self.trunk = nn.Sequential(*trunk)
        self.n_tokens = config.horizon * config.action_dim
        self.logits_proj = nn.Linear(d, self.n_tokens * config.n_bins)  # all tokens, one matmul
        self.register_buffer('centres', self._centres(config.n_bins), persistent=False)

    @staticmethod
    def _centres(n_bins: int) -> torch.Tensor:
        return -1 + (torch.arange(n_bins, dtype=torch.float32) + 0.5) * (2.0 / n_bins)

    # -- continuous <-> tokens ----------------------------------------------------------------
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised values in [-1, 1] -> bin indices (out-of-range values clamp to the ends)."""
        n = self.config.n_bins
        return ((x + 1) * (n / 2)).floor().clamp(0, n - 1).long()

    def dequantize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bin indices -> normalised bin centres."""
        return self.centres[tokens]

    def encode(self, action: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Absolute chunk (B, H, D) -> tokens (B, H, D) int64."""
        return self.quantize(self.action_norm.normalize(action, state))

    def decode(self, tokens: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H, D) -> absolute chunk at the bin centres (error <= half a bin)."""
        return self.action_norm.unnormalize(self.dequantize(tokens), state)

    def bin_width(self) -> torch.Tensor:
        """(H, D) width of one bin in action units (rad for joints after un-normalising)."""
        return (self.action_norm.high - self.action_norm.low) / self.config.n_bins

    # -- network ------------------------------------------------------------------------------
    def logits_from_features(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, d_model) -> (B, H*D, n_bins), one fused pass for every step and dim."""
        out = self.logits_proj(self.trunk(feat))
        return out.view(feat.shape[0], self.n_tokens, self.config.n_bins)

    def coarse_from_features(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, d_model) -> normalised coarse chunk (B, H*D)."""
        logits = self.logits_from_features(feat)
        if self.config.decode == 'expectation':
            return torch.softmax(logits, dim=-1) @ self.centres
        return self.centres[logits.argmax(dim=-1)]

    def loss(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy of all H x D tokens; batch keys: state, goal[, image_feat], action."""
        self.check_batch(batch)
        feat = self.encoder(batch)
        target = self.encode(batch['action'], batch['state']).flatten(1)  # (B, H*D)
        logits = self.logits_from_features(feat)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(),
                               label_smoothing=self.config.label_smoothing)

    @torch.no_grad()
    def sample(self, obs: Batch, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Observation -> absolute chunk (B, H, D) (deterministic: argmax or expectation)."""
        fast = self.capture_backend == 'whole'  # NaN/Inf checked on the output
        self.check_obs(obs, check_finite=not fast)
        try:  # the whole-inference paths raise NonFiniteOutputError instead of returning NaN
            return self._run_inference(obs, None, 0)
        except NonFiniteOutputError:
            raise self.non_finite_error(obs) from None

    def whole_graph_module(self, keys: List[str], steps: int) -> nn.Module:
        if self.config.decode != 'argmax':  # FusedToken decodes by argmax
            return super().whole_graph_module(keys, steps)
        return FusedToken(self)

    def infer(self, obs: Batch, noise: Optional[torch.Tensor], steps: int) -> torch.Tensor:
        cfg = self.config
        coarse = self.coarse_from_features(self.encoder(obs))
        return self.action_norm.unnormalize(coarse.view(-1, cfg.horizon, cfg.action_dim),
                                            obs['state'])


class FusedTokenChunk(nn.Module):
    """The folded weights of a token pass: observation -> encoder -> trunk -> logits -> argmax
    -> absolute chunk, with few ops (the base of ``FusedToken`` and ``FusedCoarseToFine``).

    The observation standardisation is folded into the encoder's first layer; un-normalisation
    (and delta -> absolute) is ``base + off + centres[tokens] * scale`` with ``base = state @
    sel``; with ``mu_law`` the delta dims expand instead (``absolute``: base +
    ``mu_law_expand(y) * S``, as ``ActionNormalizer.unnormalize``). Weights are
    copied at construction (a snapshot, like every captured path).
    """

    steps = 0  # refinement steps after the token pass (FusedCoarseToFine sets K)

    def __init__(self, token: TokenHead) -> None:
        super().__init__()
        cfg = token.config
        norm, mlp = token.encoder.normalizer, token.encoder.mlp
        with torch.no_grad():
            mean = torch.cat([getattr(norm, f'{k}_mean') for k in norm.dims])
            self.inv_std = 1.0 / torch.cat([getattr(norm, f'{k}_std') for k in norm.dims])
            self.obs_mean = mean
            first = mlp[0]
            self.enc_w = (first.weight * self.inv_std).t().contiguous()  # (obs, hidden)
            self.enc_b = first.bias - first.weight @ (mean * self.inv_std)
            self.enc_rest = copy.deepcopy(mlp[1:])
            self.trunk = copy.deepcopy(token.trunk)
            self.logits_w = token.logits_proj.weight.t().contiguous()
            self.logits_b = token.logits_proj.bias.clone()
            self.n_tokens, self.n_bins = token.n_tokens, cfg.n_bins
            an = token.action_norm
            sc = an.scale().flatten()
            p = torch.zeros(cfg.encoder.state_dim, cfg.chunk_size, device=sc.device)
            for h in range(cfg.horizon if an.delta_dims else 0):
                for j in range(an.delta_dims):
                    p[j, h * cfg.action_dim + j] = 1.0
            self.sel = p  # current joints on the delta dims, 0 elsewhere
            self.centres_abs_scale = sc.clone()
            self.off_coarse = an.low.flatten() + sc
            self.centres = token.centres.clone()
            self.mu = float(an.mu)
            if self.mu:  # the delta dims of every step, expanded by the mu-law
                mask = torch.zeros(cfg.horizon, cfg.action_dim, dtype=torch.bool,
                                   device=sc.device)
                mask[:, :an.delta_dims] = True
                self.mu_mask = mask.flatten()
                self.mu_scale = an.symmetric_scale().flatten()
        self.horizon, self.action_dim = cfg.horizon, cfg.action_dim

    def absolute(self, y: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Normalised chunk (B, X) -> absolute (B, X), ``base`` = state @ sel."""
        lin = torch.addcmul(base + self.off_coarse, y, self.centres_abs_scale)
        if not self.mu:
            return lin
        expanded = torch.addcmul(base, mu_law_expand(y, self.mu), self.mu_scale)
        return torch.where(self.mu_mask, expanded, lin)

    def token_pass(self, tensors: Tuple[torch.Tensor, ...]):
        """(obs tensors..., noise) -> (raw obs, features, normalised coarse (B, X), base)."""
        obs = torch.cat(tensors[:-1], dim=-1)  # (B, obs_dim), raw
        feat = self.enc_rest(torch.addmm(self.enc_b, obs, self.enc_w))
        logits = torch.addmm(self.logits_b, self.trunk(feat), self.logits_w)
        # unflatten, not view(-1, ...): the traced graph must stay batch-size agnostic.
        tokens = logits.unflatten(1, (self.n_tokens, self.n_bins)).argmax(-1)
        return obs, feat, self.centres[tokens], torch.mm(tensors[0], self.sel)


class FusedToken(FusedTokenChunk):
    """Hand-fused ``TokenHead.infer`` (argmax decoding) for tracing, with a numpy/BLAS CPU
    kernel (``host_kernel()``: ``HostCoarseToFine`` with no refinement steps)."""

    def host_kernel(self) -> '_CoarseOnly':
        return _CoarseOnly(HostCoarseToFine(self))

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        """(state, goal[, image_feat], noise: unused) -> absolute chunk (B, H, D)."""
        _, feat, coarse, base = self.token_pass(tensors)
        # argmax hides a NaN/Inf observation (its tokens are finite): carry the features'
        # non-finiteness into the chunk, so the finiteness check on the output sees it
        base = base + 0.0 * feat.sum(1, keepdim=True)
        return self.absolute(coarse, base).unflatten(1, (self.horizon, self.action_dim))


class _CoarseOnly:
    """``HostCoarseToFine`` without refinement steps returns (coarse, coarse): keep one."""

    def __init__(self, kernel: HostCoarseToFine) -> None:
        self.kernel = kernel

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.kernel(*tensors)[0]
