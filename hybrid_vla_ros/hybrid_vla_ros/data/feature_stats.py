"""Per-feature statistics in LeRobot's ``stats.json`` layout, per episode and aggregated.

Every feature gets ``min, max, mean, std, count`` and the quantiles ``q01 q10 q50 q90 q99``
over its frames (axis 0): vectors keep their shape, scalars become ``(1,)``, camera frames are
reduced per channel on a 0..1 scale to ``(3, 1, 1)``. Aggregation over episodes is exact for
min/max/mean/std/count (pooled variance) and a frame-weighted mean for the quantiles, which is
what LeRobot does when it merges episode statistics.
"""
from typing import Dict, List

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f'q{int(round(q * 100)):02d}' for q in QUANTILES)
STAT_KEYS = ('min', 'max', 'mean', 'std', 'count') + QUANTILE_KEYS
MAX_IMAGE_FRAMES = 100  # frames sampled per episode for camera statistics


def feature_stats(values: np.ndarray, visual: bool = False) -> Dict[str, np.ndarray]:
    """Statistics of one feature over one episode's frames (``values`` is (N, ...))."""
    x = np.asarray(values)
    if visual:
        step = max(1, int(np.ceil(len(x) / MAX_IMAGE_FRAMES)))
        sample = x[::step].astype(np.float64) / 255.0  # (n, H, W, C)
        flat = sample.reshape(-1, sample.shape[-1])  # (n*H*W, C)
        shape = (flat.shape[1], 1, 1)
        out = {'min': flat.min(0), 'max': flat.max(0), 'mean': flat.mean(0), 'std': flat.std(0)}
        out.update({k: np.quantile(flat, q, axis=0) for k, q in zip(QUANTILE_KEYS, QUANTILES)})
        out = {k: v.reshape(shape) for k, v in out.items()}
        out['count'] = np.array([len(sample)], np.int64)
        return out
    x = x.astype(np.float64).reshape(len(x), -1) if x.ndim == 1 else x.astype(np.float64)
    out = {'min': x.min(0), 'max': x.max(0), 'mean': x.mean(0), 'std': x.std(0)}
    out.update({k: np.quantile(x, q, axis=0) for k, q in zip(QUANTILE_KEYS, QUANTILES)})
    out['count'] = np.array([len(x)], np.int64)
    return out


def aggregate_stats(per_episode: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """One feature's statistics over several episodes (see the module docstring)."""
    if not per_episode:
        raise ValueError('aggregate_stats: no episodes')
    n = np.array([float(s['count'][0]) for s in per_episode])
    w = (n / n.sum()).reshape((-1,) + (1,) * np.ndim(per_episode[0]['mean']))
    means = np.stack([np.asarray(s['mean'], float) for s in per_episode])
    stds = np.stack([np.asarray(s['std'], float) for s in per_episode])
    mean = (w * means).sum(0)
    var = (w * (stds ** 2 + (means - mean) ** 2)).sum(0)
    out = {'min': np.min([s['min'] for s in per_episode], axis=0),
           'max': np.max([s['max'] for s in per_episode], axis=0),
           'mean': mean, 'std': np.sqrt(np.maximum(var, 0.0)),
           'count': np.array([int(n.sum())], np.int64)}
    for k in QUANTILE_KEYS:
        out[k] = (w * np.stack([np.asarray(s[k], float) for s in per_episode])).sum(0)
    return out


def to_json(stats: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, Dict[str, list]]:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}
