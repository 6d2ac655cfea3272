"""ACT's temporal ensemble, owned by the motor policy's runtime (:class:`~.driver.MotorCore`).

Every chunk predicts the next H steps. With an ensemble of m, the chunk handed out at time t is,
step by step, the weighted mean of what the last m chunks predicted for that same instant: a
chunk made k steps ago predicted step j of the new chunk at its own index j + k (if it reaches
that far). Weights are exp(-decay * i) with i = 0 for the oldest prediction of the instant, as in
ACT (Zhao et al. 2023): the oldest weighs most, which averages out the step-to-step jitter of a
policy near a precise target. Ages are measured in chunk steps from the chunks' times, so the
node (20 Hz chunks, possibly a late one) and the ROS-free loop (one chunk per step) ensemble the
same way. m = 1 returns every chunk unchanged.
"""
from typing import List, Tuple

import numpy as np


class TemporalEnsemble:
    """``size`` = m chunks (1 = off); ``step_s``: seconds between chunk steps; ``decay``: the
    weight exponent per older prediction (ACT: 0.01 per step at 50 Hz; 0.1 here at 20 Hz)."""

    def __init__(self, size: int = 1, step_s: float = 0.05, decay: float = 0.1):
        if int(size) < 1:
            raise ValueError(f'ensemble size must be >= 1, got {size}')
        if not step_s > 0:
            raise ValueError(f'chunk step must be > 0 s, got {step_s}')
        self.size, self.step_s, self.decay = int(size), float(step_s), float(decay)
        self.history: List[Tuple[float, np.ndarray]] = []   # (time, chunk), oldest first

    def reset(self) -> None:
        """Forget every earlier chunk (a new sub-goal: its predictions do not apply)."""
        self.history = []

    def __call__(self, chunk: np.ndarray, now: float) -> np.ndarray:
        """The chunk to execute from ``now``: ``chunk`` (H, D) ensembled with the earlier ones
        that still predict an instant of it."""
        chunk = np.asarray(chunk)
        if self.size == 1:
            return chunk
        horizon = len(chunk)
        # a chunk older than the horizon predicts nothing from now on; one from the "future"
        # (a clock that went back) is not comparable
        self.history = [(t, c) for t, c in self.history if c.shape == chunk.shape and
                        0 <= round((now - t) / self.step_s) < horizon]
        self.history = (self.history + [(float(now), chunk)])[-self.size:]
        ages = [int(round((now - t) / self.step_s)) for t, _ in self.history]
        out = np.empty_like(chunk, dtype=np.float64)
        for j in range(horizon):
            preds = [c[j + k] for (_, c), k in zip(self.history, ages) if j + k < horizon]
            w = np.exp(-self.decay * np.arange(len(preds)))
            out[j] = (np.stack(preds) * w[:, None]).sum(0) / w.sum()
        return out.astype(chunk.dtype)
