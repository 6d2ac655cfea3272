"""Demonstrations -> motor-expert training samples (observation, action chunk)."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from hybrid_vla_ros.data.dataset import Dataset
from hybrid_vla_ros.motor.features import goal_features


def episode_samples(arrays: Dict[str, np.ndarray], horizon: int, log_error: bool = False
                    ) -> Dict[str, np.ndarray]:
    """Every step of one episode: state (T, 8), goal (T, 21 or 24), action chunk (T, H, 8).

    The chunk at step t is the expert's next ``horizon`` targets, padded with the last one of
    its segment (the arm holds at the end of an episode; a recovery segment starts afresh).
    Episodes that carry ``action_chunk`` (T, H', 8) (DAgger labels, one chunk per visited
    state) use those chunks, cut or padded with their last step to ``horizon``.
    """
    state = arrays['observation.state']
    tool = arrays['observation.tool_pose']
    wp = arrays['observation.active_waypoint']
    act = arrays['action']
    T = len(act)
    goal = np.stack([goal_features(wp[t], tool[t, :3], tool[t, 3:], log_error)
                     for t in range(T)])
    if 'action_chunk' in arrays:
        chunk = arrays['action_chunk']
        if chunk.ndim != 3 or chunk.shape[0] != T or chunk.shape[2] != act.shape[1]:
            raise ValueError(f'action_chunk has shape {chunk.shape}, expected ({T}, H, '
                             f'{act.shape[1]})')
        idx = np.minimum(np.arange(horizon), chunk.shape[1] - 1)
        return {'state': state.astype(np.float32), 'goal': goal,
                'action': chunk[:, idx].astype(np.float32)}
    seg = arrays.get('segment', np.zeros(T, np.int32))
    last = np.empty(T, np.int64)  # index of the last step of each step's segment
    for k in np.unique(seg):
        members = np.flatnonzero(seg == k)
        last[members] = members[-1]
    idx = np.minimum(np.arange(T)[:, None] + np.arange(horizon)[None, :], last[:, None])
    return {'state': state.astype(np.float32), 'goal': goal, 'action': act[idx]}


def load_motor_samples(roots: Sequence[str], horizon: int, *, val_fraction: float = 0.1,
                       seed: int = 0, tasks: Optional[List[str]] = None,
                       log_error: bool = False):
    """(train, val) dicts of tensors from one or more dataset folders; split by episode."""
    episodes = []
    for root in roots:
        episodes += [episode_samples(ep.arrays, horizon, log_error)
                     for ep in Dataset(root).iter_episodes(tasks=tasks)]
    if not episodes:
        raise ValueError(f'no successful episodes in {list(roots)}'
                         + (f' for tasks {tasks}' if tasks else ''))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(episodes))
    n_val = int(round(val_fraction * len(episodes))) if len(episodes) > 1 else 0
    splits = (order[n_val:], order[:n_val])

    def cat(ids):
        if len(ids) == 0:
            return None
        return {k: torch.from_numpy(np.concatenate([episodes[i][k] for i in ids]))
                for k in ('state', 'goal', 'action')}
    return cat(splits[0]), cat(splits[1])
