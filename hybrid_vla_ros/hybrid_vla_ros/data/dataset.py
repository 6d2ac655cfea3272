"""Demonstration datasets: one compressed ``.npz`` per episode plus JSON metadata.

Layout (LeRobotDataset-v3-like: ``meta/`` + ``data/``, the same feature names)::

    DIR/meta/info.json          format version, fps, robot, joint names, feature shapes/dtypes
    DIR/meta/episodes.jsonl     one line per finished episode: index, task, seed, instruction,
                                success, error_mm, length, sub-goals and their waypoints
    DIR/data/episode_000000.npz arrays of that episode (keys below)

Why this format: numpy-only (no parquet/video decoders to install), each episode is written
atomically (temp file + rename, then one appended JSON line), so an interrupted or resumed
collection never leaves a half-written episode; an episode loads in one call into contiguous
arrays that a training loop slices into action chunks directly.

Per-step arrays (T steps at ``fps``):
- ``observation.state`` (T, 8) float32: joint_1..7 [rad] + gripper [0 open..1 closed]
- ``observation.tool_pose`` (T, 7) float32: TCP xyz [m] + quat xyzw, base frame
- ``observation.goal`` (T, 8) float32: active sub-goal target xyz + quat xyzw + gripper
- ``observation.waypoint`` (T, 8) float32: final waypoint of the active sub-goal, same layout
- ``observation.active_waypoint`` (T, 8) float32: the waypoint the arm is heading to (the
  :class:`~hybrid_vla_ros.motor.features.WaypointTracker` rule), what the motor level sees
- ``observation.subgoal_index`` (T,) int32
- ``segment`` (T,) int32: 0 for the demonstration, k >= 1 for its k-th recovery segment (the
  expert bringing the arm back after a displacement); chunks never cross segments
- ``action`` (T, 8) float32: expert joint targets [rad] + gripper command [0..1]
- ``timestamp`` (T,) float32 [s]
- ``observation.image`` (N, H, W, 3) uint8 and ``image_step`` (N,) int32: camera frames at
  every ``image_stride``-th step (absent with ``image_stride = 0``)
"""
from dataclasses import dataclass
import json
import os
from typing import Dict, Iterator, List, Optional

import numpy as np

FORMAT = 'hybrid_vla_dataset'
VERSION = 1
STEP_KEYS = ('observation.state', 'observation.tool_pose', 'observation.goal',
             'observation.waypoint', 'observation.active_waypoint', 'observation.subgoal_index',
             'action', 'timestamp')


def active_waypoints(obs_list) -> np.ndarray:
    """(T, 8) waypoint each step heads to, by the motor level's tracking rule."""
    from hybrid_vla_ros.motor.features import WaypointTracker, waypoint_vector
    tracker, key, out = WaypointTracker(), None, []
    for o in obs_list:
        wps = o['waypoints']
        k = (o['subgoal_index'], tuple(tuple(w['pos']) for w in wps))
        if k != key:
            tracker.set_waypoints([waypoint_vector(w['pos'], w['quat'], w['gripper'])
                                   for w in wps])
            key = k
        out.append(tracker.update(o['tool_pos']))
    return np.stack(out).astype(np.float32)


class DatasetError(ValueError):
    """The folder is not a dataset of this format, or is inconsistent."""


@dataclass
class EpisodeRecord:
    """Arrays and metadata of one episode, as written by :class:`DatasetWriter`."""

    meta: dict
    arrays: Dict[str, np.ndarray]


def episode_arrays(log, frames=None, image_stride: int = 0, dt: float = 0.05):
    """Turn a rollout log (list of (obs, q_cmd, g_cmd)) into the per-step arrays."""
    if not log:
        raise DatasetError('empty episode log')
    obs = [o for o, _, _ in log]

    def goal_of(o):
        sg = o['subgoal']
        return np.concatenate([sg['target_pos'], sg['target_quat'], [sg['gripper']]])

    arrays = {
        'observation.state': np.stack([o['state'] for o in obs]).astype(np.float32),
        'observation.tool_pose': np.stack([np.concatenate([o['tool_pos'], o['tool_quat']])
                                           for o in obs]).astype(np.float32),
        'observation.goal': np.stack([goal_of(o) for o in obs]).astype(np.float32),
        'observation.waypoint': np.stack([o['waypoint'] for o in obs]).astype(np.float32),
        'observation.active_waypoint': active_waypoints(obs),
        'observation.subgoal_index': np.array([o['subgoal_index'] for o in obs], np.int32),
        'segment': np.array([o.get('segment', 0) for o in obs], np.int32),
        'action': np.stack([np.concatenate([q, [g]]) for _, q, g in log]).astype(np.float32),
        'timestamp': (np.arange(len(log)) * dt).astype(np.float32),
    }
    if image_stride and frames:
        idx = np.arange(0, len(frames), image_stride, dtype=np.int32)
        arrays['observation.image'] = np.stack([frames[i] for i in idx]).astype(np.uint8)
        arrays['image_step'] = idx
    for k, v in arrays.items():
        if v.dtype.kind == 'f' and not np.all(np.isfinite(v)):
            raise DatasetError(f'episode array {k} has non-finite values')
    return arrays


class DatasetWriter:
    """Append episodes to a dataset folder; resumable (finished episodes are kept)."""

    def __init__(self, root: str, *, fps: float, robot: str, joint_names: List[str],
                 image_shape=None):
        self.root = root
        os.makedirs(os.path.join(root, 'meta'), exist_ok=True)
        os.makedirs(os.path.join(root, 'data'), exist_ok=True)
        info_path = os.path.join(root, 'meta', 'info.json')
        info = {'format': FORMAT, 'version': VERSION, 'fps': fps, 'robot': robot,
                'joint_names': list(joint_names),
                'image_shape': list(image_shape) if image_shape else None,
                'features': {'observation.state': [8], 'observation.tool_pose': [7],
                             'observation.goal': [8], 'observation.waypoint': [8],
                             'observation.active_waypoint': [8], 'action': [8]}}
        if os.path.exists(info_path):
            with open(info_path) as f:
                old = json.load(f)
            for key in ('format', 'version', 'fps', 'robot', 'joint_names'):
                if old.get(key) != info[key]:
                    raise DatasetError(f'{root}: existing dataset has {key}={old.get(key)!r}, '
                                       f'this collection has {info[key]!r}')
        else:
            _atomic_write(info_path, json.dumps(info, indent=2).encode())
        self.done = {m['episode_index'] for m in read_episode_meta(root)}

    def has(self, index: int) -> bool:
        return index in self.done

    def write(self, index: int, meta: dict, arrays: Dict[str, np.ndarray]) -> None:
        path = episode_path(self.root, index)
        tmp = path + '.tmp.npz'
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        meta = dict(meta, episode_index=index, length=int(len(arrays['action'])))
        with open(os.path.join(self.root, 'meta', 'episodes.jsonl'), 'a') as f:
            f.write(json.dumps(meta) + '\n')
            f.flush()
            os.fsync(f.fileno())
        self.done.add(index)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def episode_path(root: str, index: int) -> str:
    return os.path.join(root, 'data', f'episode_{index:06d}.npz')


def read_episode_meta(root: str) -> List[dict]:
    """Finished episodes (a torn last line from a hard kill is ignored)."""
    path = os.path.join(root, 'meta', 'episodes.jsonl')
    if not os.path.exists(path):
        return []
    out = {}
    with open(path) as f:
        for line in f:
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                continue
            if os.path.exists(episode_path(root, m['episode_index'])):
                out[m['episode_index']] = m
    return [out[k] for k in sorted(out)]


class Dataset:
    """Read access to a dataset folder."""

    def __init__(self, root: str):
        info_path = os.path.join(root, 'meta', 'info.json')
        if not os.path.exists(info_path):
            raise DatasetError(f'{root}: not a dataset (no meta/info.json)')
        with open(info_path) as f:
            self.info = json.load(f)
        if self.info.get('format') != FORMAT or self.info.get('version') != VERSION:
            raise DatasetError(f"{root}: format {self.info.get('format')!r} v"
                               f"{self.info.get('version')}, expected {FORMAT!r} v{VERSION}")
        self.root = root
        self.episodes = read_episode_meta(root)

    def __len__(self) -> int:
        return len(self.episodes)

    def load(self, i: int, images: bool = False) -> EpisodeRecord:
        meta = self.episodes[i]
        with np.load(episode_path(self.root, meta['episode_index'])) as z:
            arrays = {k: z[k] for k in z.files if images or k not in ('observation.image',
                                                                       'image_step')}
        missing = [k for k in STEP_KEYS if k not in arrays]
        if missing:
            raise DatasetError(f"episode {meta['episode_index']}: missing arrays {missing}")
        return EpisodeRecord(meta, arrays)

    def iter_episodes(self, images: bool = False, success_only: bool = True,
                      tasks: Optional[List[str]] = None) -> Iterator[EpisodeRecord]:
        for i, m in enumerate(self.episodes):
            if success_only and not m.get('success', False):
                continue
            if tasks is not None and m['task'] not in tasks:
                continue
            yield self.load(i, images=images)
