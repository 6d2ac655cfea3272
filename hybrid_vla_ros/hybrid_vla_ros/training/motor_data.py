"""Demonstrations -> motor-expert training samples (observation, action chunk).

Reads LeRobot v3 datasets: the project's own (``hybrid-vla collect``, ``hybrid-vla dataset
from-bag``) and ones LeRobot wrote for the same robot. State and action are found through the
robot's :class:`~hybrid_vla_ros.data.dataset_spec.DatasetSpec` (feature keys, and the entries
matched by ``names``, so another joint order maps too). What a plain LeRobot dataset lacks is
derived: the tool pose by forward kinematics of the state, and the goal by hindsight (the
episode's last tool pose and gripper command: the arm is taught to go where the demonstration
went).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from hybrid_vla_ros.data.dataset import Dataset
from hybrid_vla_ros.data.lerobot_format import DatasetError
from hybrid_vla_ros.motor.features import goal_features
from hybrid_vla_ros.robot import DEFAULT_ROBOT


def _by_names(ds: Dataset, key: str, spec) -> np.ndarray:
    """(T, J+1) columns of feature ``key`` in the robot's order (``spec.state_names``)."""
    feat = ds.features.get(key)
    if feat is None:
        raise DatasetError(f'{ds.root}: no feature {key!r} (features: {sorted(ds.features)}); '
                           f"set '{'state' if 'state' in key else 'action'}_feature' in the "
                           "robot config's dataset section")
    names = feat.get('names')
    if isinstance(names, dict):  # LeRobot also accepts {"motors": [...]}
        names = next(iter(names.values()), None)
    if names is None:
        if list(feat['shape']) != [spec.dim]:
            raise DatasetError(f"{ds.root}: feature {key!r} has shape {feat['shape']} and no "
                               f'names, expected [{spec.dim}] ({list(spec.state_names)})')
        return None
    missing = [n for n in spec.state_names if n not in names]
    if missing:
        raise DatasetError(f'{ds.root}: feature {key!r} has names {list(names)}, missing '
                           f'{missing} of the robot {spec.robot} ({list(spec.state_names)})')
    return np.array([list(names).index(n) for n in spec.state_names])


def motor_arrays(ds: Dataset, arrays: Dict[str, np.ndarray], spec, kin=None
                 ) -> Dict[str, np.ndarray]:
    """The arrays :func:`episode_samples` needs, from one episode of ``ds``."""
    out = {}
    for name, key in (('observation.state', spec.state_feature),
                      ('action', spec.action_feature)):
        idx = _by_names(ds, key, spec)
        a = np.asarray(arrays[key], np.float32)
        out[name] = a if idx is None else a[:, idx]
        if out[name].ndim != 2 or out[name].shape[1] != spec.dim:
            raise DatasetError(f'{ds.root}: feature {key!r} has {out[name].shape[-1]} values '
                               f'per frame, the robot {spec.robot} has {spec.dim} '
                               f'({list(spec.state_names)})')
    for key in ('segment', 'action_chunk'):
        if key in arrays:
            out[key] = arrays[key]
    if 'observation.tool_pose' in arrays:
        out['observation.tool_pose'] = arrays['observation.tool_pose']
    else:
        if kin is None:
            from hybrid_vla_ros.robot import load_robot
            kin = load_robot(spec.config_file or spec.robot).kinematics()
        poses = [np.concatenate(kin.fk(q[:len(spec.joint_names)].astype(float)))
                 for q in out['observation.state']]
        out['observation.tool_pose'] = np.stack(poses).astype(np.float32)
    if 'observation.active_waypoint' in arrays:
        out['observation.active_waypoint'] = arrays['observation.active_waypoint']
    else:  # hindsight goal: where the demonstration ended
        last = np.concatenate([out['observation.tool_pose'][-1],
                               out['action'][-1, -1:]]).astype(np.float32)
        out['observation.active_waypoint'] = np.repeat(last[None], len(out['action']), 0)
    return out


def episode_samples(arrays: Dict[str, np.ndarray], horizon: int, log_error: bool = False
                    ) -> Dict[str, np.ndarray]:
    """Every step of one episode: state (T, n+1), goal (T, GOAL_DIM or GOAL_DIM_LOG), action
    chunk (T, H, n+1) (n arm joints + the gripper).

    The chunk at step t is the expert's next ``horizon`` targets, padded with the last one of
    its segment (the arm holds at the end of an episode; a recovery segment starts afresh).
    Episodes that carry ``action_chunk`` (T, H', n+1) (DAgger labels, one chunk per visited
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
                       log_error: bool = False, robot=DEFAULT_ROBOT,
                       balance_tasks: bool = False):
    """(train, val) dicts of tensors from one or more dataset folders; split by episode.

    ``balance_tasks``: the train dict also holds ``sample_weight`` (one per sample), which
    gives every sim task the same total weight whatever its episode count and length (a short
    reach episode and a long stack episode otherwise weigh by their step counts).

    ``robot``: name, YAML path or :class:`~hybrid_vla_ros.robot.RobotModel` whose joints the
    datasets' state/action are read as (a dataset of another robot is refused)."""
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    from hybrid_vla_ros.robot import load_robot

    model = load_robot(robot)
    spec = load_dataset_spec(model)
    kin = None
    episodes, episode_tasks = [], []
    for root in roots:
        ds = Dataset(root)
        if 'observation.tool_pose' not in ds.features and kin is None:
            kin = model.kinematics()
        for ep in ds.iter_episodes(tasks=tasks):
            episodes.append(episode_samples(motor_arrays(ds, ep.arrays, spec, kin), horizon,
                                            log_error))
            episode_tasks.append(str(ep.meta.get('task', ep.meta.get('tasks', ''))))
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
    train, val = cat(splits[0]), cat(splits[1])
    if balance_tasks:
        train['sample_weight'] = torch.from_numpy(task_balanced_weights(
            [episode_tasks[i] for i in splits[0]], [len(episodes[i]['state']) for i in splits[0]]))
    return train, val


def task_balanced_weights(tasks: Sequence[str], lengths: Sequence[int]) -> np.ndarray:
    """Per-sample weights (summing to 1) for episodes of ``tasks`` with ``lengths`` steps,
    concatenated in that order: each distinct task weighs 1/n_tasks in total, shared equally by
    its samples."""
    tasks, lengths = list(tasks), np.asarray(lengths, np.int64)
    if len(tasks) != len(lengths):
        raise ValueError(f'{len(tasks)} tasks for {len(lengths)} episode lengths')
    steps = {}
    for t, n in zip(tasks, lengths):
        steps[t] = steps.get(t, 0) + int(n)
    per_step = [1.0 / (len(steps) * steps[t]) if steps[t] else 0.0 for t in tasks]
    return np.repeat(np.asarray(per_step), lengths).astype(np.float64)
