"""LeRobotDataset v3: the project's one dataset format (written and read without ``lerobot``).

Layout (what LeRobot 0.4+ writes and loads)::

    DIR/meta/info.json                              codebase_version "v3.0", fps, robot_type,
                                                    features (dtype, shape, names), splits, paths
    DIR/meta/stats.json                             min/max/mean/std/count/q01..q99 per feature
    DIR/meta/tasks.parquet                          task_index, indexed by the task string
    DIR/meta/episodes/chunk-000/file-000.parquet    one row per episode: length, task, where its
                                                    frames and video are, its own stats
    DIR/data/chunk-CCC/file-FFF.parquet             one row per frame, many episodes per file
    DIR/videos/<camera>/chunk-CCC/file-FFF.mp4      the camera, episodes back to back (AV1)

Features of the project's demonstrations (names of state/action from the robot config, see
:mod:`hybrid_vla_ros.data.dataset_spec`): ``observation.state`` (J+1) joints [rad] + gripper
[0 open..1 closed]; ``action`` (J+1) the expert's joint targets + gripper command;
``observation.tool_pose`` (7) TCP xyz [m] + quat xyzw in the base frame;
``observation.goal`` (8) the active sub-goal's target pose + gripper; ``observation.waypoint``
(8) the sub-goal's final waypoint; ``observation.active_waypoint`` (8) the waypoint the arm
heads to (the :class:`~hybrid_vla_ros.motor.features.WaypointTracker` rule, what the motor
level sees); ``observation.subgoal_index``; ``segment`` (0 for the demonstration, k >= 1 for
its k-th recovery segment; chunks never cross segments); ``action_chunk`` (H, J+1) on DAgger
episodes; ``observation.images.<camera>`` (video). The task string is the instruction; the
episode's plan, seed and outcome are one JSON column ``hybrid_vla/meta`` of the episodes table
(LeRobot keeps unknown columns).

Atomic per episode: a commit builds the next version of the folder in a sibling
``DIR.commit`` (hard links for unchanged files, new files for the changed ones) and swaps the
two folders in one ``renameat2(RENAME_EXCHANGE)``; an interrupted commit (Ctrl-C, kill -9)
leaves the previous version in place and a stale sibling that the next writer removes.
"""
import ctypes
from dataclasses import dataclass
import errno
import json
import os
import shutil
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from hybrid_vla_ros.data import feature_stats as fstats

CODEBASE_VERSION = 'v3.0'
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-000/file-000.parquet'
META_COLUMN = 'hybrid_vla/meta'
DEFAULT_FEATURES = {
    'timestamp': {'dtype': 'float32', 'shape': [1], 'names': None},
    'frame_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'episode_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'task_index': {'dtype': 'int64', 'shape': [1], 'names': None},
}
VISUAL = ('video', 'image')


class DatasetError(ValueError):
    """The folder is not a LeRobot v3 dataset, or is inconsistent, or an episode is invalid."""


# --------------------------------------------------------------------------- features

def vector_feature(names: Sequence[str], dtype: str = 'float32') -> dict:
    return {'dtype': dtype, 'shape': [len(names)], 'names': list(names)}


def video_feature(height: int, width: int) -> dict:
    return {'dtype': 'video', 'shape': [int(height), int(width), 3],
            'names': ['height', 'width', 'channels']}


def demonstration_features(spec, image_shape: Optional[Tuple[int, int]] = None,
                           chunk_horizon: Optional[int] = None) -> Dict[str, dict]:
    """The features ``hybrid-vla collect`` records for the robot of ``spec``."""
    pose = ['x', 'y', 'z', 'qx', 'qy', 'qz', 'qw']
    target = pose + ['gripper']
    feats = {
        spec.state_feature: vector_feature(spec.state_names),
        spec.action_feature: vector_feature(spec.state_names),
        'observation.tool_pose': vector_feature(pose),
        'observation.goal': vector_feature(target),
        'observation.waypoint': vector_feature(target),
        'observation.active_waypoint': vector_feature(target),
        'observation.subgoal_index': {'dtype': 'int64', 'shape': [1], 'names': None},
        'segment': {'dtype': 'int64', 'shape': [1], 'names': None},
    }
    if chunk_horizon:
        feats['action_chunk'] = {'dtype': 'float32', 'shape': [int(chunk_horizon), spec.dim],
                                 'names': ['step', 'value']}
    if image_shape:
        feats[spec.camera_feature] = video_feature(*image_shape)
    return feats


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


def episode_arrays(log, spec, frames=None) -> Dict[str, np.ndarray]:
    """Per-frame feature arrays of a rollout log (list of (obs, q_cmd, g_cmd)) and its frames."""
    if not log:
        raise DatasetError('empty episode log')
    obs = [o for o, _, _ in log]

    def goal_of(o):
        sg = o['subgoal']
        return np.concatenate([sg['target_pos'], sg['target_quat'], [sg['gripper']]])

    arrays = {
        spec.state_feature: np.stack([o['state'] for o in obs]).astype(np.float32),
        spec.action_feature: np.stack([np.concatenate([q, [g]]) for _, q, g in log]
                                      ).astype(np.float32),
        'observation.tool_pose': np.stack([np.concatenate([o['tool_pos'], o['tool_quat']])
                                           for o in obs]).astype(np.float32),
        'observation.goal': np.stack([goal_of(o) for o in obs]).astype(np.float32),
        'observation.waypoint': np.stack([o['waypoint'] for o in obs]).astype(np.float32),
        'observation.active_waypoint': active_waypoints(obs),
        'observation.subgoal_index': np.array([o['subgoal_index'] for o in obs], np.int64),
        'segment': np.array([o.get('segment', 0) for o in obs], np.int64),
    }
    if frames is not None:
        arrays[spec.camera_feature] = np.stack(frames).astype(np.uint8)
    return arrays


# --------------------------------------------------------------------------- parquet helpers

def _arrow_type(feat: dict):
    import pyarrow as pa
    base = {'float32': pa.float32(), 'float64': pa.float64(), 'int64': pa.int64(),
            'int32': pa.int32(), 'bool': pa.bool_()}
    if feat['dtype'] not in base:
        raise DatasetError(f"feature dtype {feat['dtype']!r} is not supported, expected one of "
                           f'{sorted(base)} or video')
    t = base[feat['dtype']]
    shape = list(feat['shape'])
    if shape == [1]:
        return t
    if len(shape) == 1:
        return pa.list_(t, shape[0])
    if len(shape) == 2:
        return pa.list_(pa.list_(t))
    raise DatasetError(f"feature shape {shape} is not supported (1-D or 2-D)")


def _hf_type(feat: dict) -> dict:
    shape = list(feat['shape'])
    if shape == [1]:
        return {'dtype': feat['dtype'], '_type': 'Value'}
    if len(shape) == 1:
        return {'feature': {'dtype': feat['dtype'], '_type': 'Value'}, 'length': shape[0],
                '_type': 'List'}
    return {'shape': shape, 'dtype': feat['dtype'], '_type': f'Array{len(shape)}D'}


def _column(values: np.ndarray, feat: dict):
    import pyarrow as pa
    t = _arrow_type(feat)
    shape = list(feat['shape'])
    if shape == [1]:
        return pa.array(values.reshape(-1), type=t)
    if len(shape) == 1:
        flat = pa.array(values.reshape(-1), type=t.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, shape[0])
    return pa.array(values.tolist(), type=t)


def _numpy(column, feat: dict) -> np.ndarray:
    shape = list(feat['shape'])
    dt = np.dtype(feat['dtype'])
    col = column.combine_chunks() if hasattr(column, 'combine_chunks') else column
    n = len(col)
    if shape == [1]:
        return col.to_numpy(zero_copy_only=False).astype(dt)
    if len(shape) == 1:
        return col.flatten().to_numpy(zero_copy_only=False).astype(dt).reshape(n, shape[0])
    return np.asarray(col.to_pylist(), dt).reshape([n] + shape)


def _write_parquet(path: str, table) -> None:
    import pyarrow.parquet as pq
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)  # a hard link to the previous version: never write through it
    pq.write_table(table, path)


def _write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, 'wb') as f:
        f.write(data)


# --------------------------------------------------------------------------- atomic commit

def _exchange(a: str, b: str) -> None:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, 'renameat2', None)
    if fn is None:
        raise OSError(errno.ENOSYS, 'renameat2 is not available')
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def _swap_in(staging: str, root: str) -> None:
    """Make ``staging`` the new ``root``; the previous version ends up at ``staging``."""
    if not os.path.exists(root):
        os.rename(staging, root)
        return
    try:
        _exchange(staging, root)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise
        # No RENAME_EXCHANGE on this file system: two renames; the writer's start-up
        # recovery (``_recover``) puts ``root`` back if a kill lands between them.
        old = root + '.previous'
        os.rename(root, old)
        os.rename(staging, root)
        os.rename(old, staging)


def _recover(root: str) -> None:
    old, staging = root + '.previous', root + '.commit'
    if os.path.isdir(old):
        if not os.path.exists(root):
            os.rename(old, root)
        else:
            shutil.rmtree(old)
    if os.path.isdir(staging):
        shutil.rmtree(staging)


def _link_tree(src: str, dst: str) -> None:
    for d, _, files in os.walk(src):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            os.link(os.path.join(d, f), os.path.join(dst, rel, f))


# --------------------------------------------------------------------------- reading

def _read_info(root: str) -> dict:
    path = os.path.join(root, 'meta', 'info.json')
    if not os.path.isfile(path):
        raise DatasetError(f'{root}: not a dataset (no meta/info.json)')
    with open(path) as f:
        try:
            info = json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetError(f'{path}: not valid JSON ({e})') from None
    version = str(info.get('codebase_version', ''))
    if not version.startswith('v3.'):
        hint = (' (a dataset of an older format: collect it again with `hybrid-vla collect`)'
                if 'format' in info else '')
        raise DatasetError(f'{root}: meta/info.json codebase_version {version or None!r}, '
                           f'expected a LeRobotDataset v3.x{hint}')
    for key in ('fps', 'features', 'total_episodes'):
        if key not in info:
            raise DatasetError(f'{path}: key {key!r} is missing')
    return info


def _read_episode_rows(root: str) -> List[dict]:
    import pyarrow.parquet as pq
    folder = os.path.join(root, 'meta', 'episodes')
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs
                   if f.endswith('.parquet'))
    rows = []
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001  (pyarrow raises several kinds)
            raise DatasetError(f'{path}: not a readable parquet file: {e}') from None
        rows += table.to_pylist()
    return sorted(rows, key=lambda r: r['episode_index'])


@dataclass
class EpisodeRecord:
    """One episode: its metadata and per-frame arrays keyed by feature name."""

    meta: dict
    arrays: Dict[str, np.ndarray]


class Dataset:
    """Read access to a LeRobot v3 dataset folder (ours or one written by LeRobot).

    ``episodes[i]`` is a dict with ``episode_index``, ``tasks``, ``length`` and, on the
    project's own datasets, the collection metadata (``task``, ``seed``, ``instruction``,
    ``success``, ``subgoals``, ...).
    """

    def __init__(self, root: str):
        self.root = root
        self.info = _read_info(root)
        self.fps = int(self.info['fps'])
        self.features: Dict[str, dict] = self.info['features']
        self.episodes: List[dict] = []
        for row in _read_episode_rows(root):
            meta = {k: v for k, v in row.items() if not k.startswith('stats/')
                    and k != META_COLUMN}
            if row.get(META_COLUMN):
                meta.update(json.loads(row[META_COLUMN]))
            self.episodes.append(meta)
        if len(self.episodes) != int(self.info['total_episodes']):
            raise DatasetError(f"{root}: meta/info.json lists {self.info['total_episodes']} "
                               f'episodes, the episodes table has {len(self.episodes)}')
        self._tables: Dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def video_keys(self) -> List[str]:
        return [k for k, f in self.features.items() if f['dtype'] == 'video']

    def _data_table(self, chunk: int, file: int):
        import pyarrow.parquet as pq
        rel = self.info.get('data_path', DATA_PATH).format(chunk_index=chunk, file_index=file)
        if rel not in self._tables:
            path = os.path.join(self.root, rel)
            if not os.path.isfile(path):
                raise DatasetError(f'{self.root}: data file {rel} is missing')
            self._tables = {rel: pq.read_table(path)}  # keep one file in memory
        return self._tables[rel]

    def load(self, i: int, images: bool = False) -> EpisodeRecord:
        """Episode ``i`` (position in :attr:`episodes`); camera frames only with ``images``."""
        meta = self.episodes[i]
        table = self._data_table(int(meta['data/chunk_index']), int(meta['data/file_index']))
        ep_col = table.column('episode_index').to_numpy()
        rows = np.flatnonzero(ep_col == meta['episode_index'])
        if len(rows) != int(meta['length']):
            raise DatasetError(f"{self.root}: episode {meta['episode_index']} has {len(rows)} "
                               f"frames in its data file, the episodes table says "
                               f"{meta['length']}")
        part = table.slice(int(rows[0]), len(rows))
        arrays = {}
        for key, feat in self.features.items():
            if feat['dtype'] in VISUAL:
                continue
            if key not in part.column_names:
                raise DatasetError(f'{self.root}: feature {key!r} has no column in the data')
            arrays[key] = _numpy(part.column(key), feat)
        if images:
            from hybrid_vla_ros.data.video import decode_range
            for key, feat in self.features.items():
                if feat['dtype'] == 'image' and key in part.column_names:
                    # LeRobot's image features: PNG bytes in a struct{bytes, path} column
                    import imageio.v3 as iio
                    cells = part.column(key).to_pylist()
                    arrays[key] = np.stack([iio.imread(c['bytes']) for c in cells])
            for key in self.video_keys:
                rel = self.info['video_path'].format(
                    video_key=key, chunk_index=int(meta[f'videos/{key}/chunk_index']),
                    file_index=int(meta[f'videos/{key}/file_index']))
                arrays[key] = decode_range(os.path.join(self.root, rel),
                                           float(meta[f'videos/{key}/from_timestamp']),
                                           len(rows), self.fps)
        return EpisodeRecord(meta, arrays)

    def iter_episodes(self, images: bool = False, success_only: bool = True,
                      tasks: Optional[List[str]] = None) -> Iterator[EpisodeRecord]:
        """Episodes in order; ``success_only`` skips episodes flagged ``success: false``,
        ``tasks`` keeps the episodes whose sim task (``task``) is listed."""
        for i, m in enumerate(self.episodes):
            if success_only and not m.get('success', True):
                continue
            if tasks is not None and m.get('task') not in tasks:
                continue
            yield self.load(i, images=images)


# --------------------------------------------------------------------------- writing

class DatasetWriter:
    """Append episodes to a v3 dataset folder, one atomic commit per episode (resumable).

    ``features`` are the dataset's own features (LeRobot's five default features are added);
    a folder that already holds a dataset must have the same fps, robot type and features.
    """

    def __init__(self, root: str, *, fps: int, robot_type: str, features: Dict[str, dict]):
        if int(fps) != fps or fps <= 0:
            raise DatasetError(f'fps must be a positive integer, got {fps!r}')
        self.root = os.path.abspath(root)
        self.fps = int(fps)
        _recover(self.root)
        for k in features:
            if k in DEFAULT_FEATURES:
                raise DatasetError(f'feature {k!r} is one of the default features')
        self.features = dict(features, **DEFAULT_FEATURES)
        for k, f in self.features.items():
            if f['dtype'] not in VISUAL:
                _arrow_type(f)
            elif f['dtype'] == 'video':
                from hybrid_vla_ros.data.video import MIN_SIZE
                h, w = f['shape'][:2]
                if h < MIN_SIZE or w < MIN_SIZE or h % 2 or w % 2:
                    raise DatasetError(f'video feature {k!r}: {w}x{h} pixels, expected even '
                                       f'sizes of at least {MIN_SIZE} (AV1 encoder)')
        self.robot_type = robot_type
        self.episodes: List[dict] = []   # rows of the episodes table
        self.tasks: List[str] = []
        self.video_frames: Dict[Tuple[str, int, int], int] = {}  # frames per video file
        self._ep_table = None  # the episodes table as last committed (pyarrow)
        self._data_cache = None  # (path, table) of the data file the last commit wrote
        self._ep_stats: List[dict] = []  # per-episode stats as arrays, in episode order
        if os.path.isfile(os.path.join(self.root, 'meta', 'info.json')):
            self._load_existing()
        elif os.path.isdir(self.root) and os.listdir(self.root):
            raise DatasetError(f'{self.root}: exists and is not a dataset (no meta/info.json);'
                               ' choose a new or empty folder')

    def _load_existing(self) -> None:
        import pandas as pd
        info = _read_info(self.root)
        old = {k: {kk: f.get(kk) for kk in ('dtype', 'shape', 'names')}
               for k, f in info['features'].items()}
        new = {k: {kk: f.get(kk) for kk in ('dtype', 'shape', 'names')}
               for k, f in self.features.items()}
        for key, mine in (('fps', self.fps), ('robot_type', self.robot_type)):
            if info.get(key) != mine:
                raise DatasetError(f'{self.root}: existing dataset has {key}={info.get(key)!r},'
                                   f' this collection has {mine!r}')
        if old != new:
            diff = sorted(set(old) ^ set(new)) or [k for k in old if old[k] != new.get(k)]
            raise DatasetError(f'{self.root}: existing dataset has other features ({diff})')
        self.info_features = info['features']
        self.episodes = _read_episode_rows(self.root)
        tasks = pd.read_parquet(os.path.join(self.root, 'meta', 'tasks.parquet'))
        self.tasks = [t for t, _ in sorted(tasks['task_index'].items(), key=lambda kv: kv[1])]
        for row in self.episodes:
            for key in self.video_keys:
                vk = (key, row[f'videos/{key}/chunk_index'], row[f'videos/{key}/file_index'])
                self.video_frames[vk] = self.video_frames.get(vk, 0) + int(row['length'])

    @property
    def video_keys(self) -> List[str]:
        return [k for k, f in self.features.items() if f['dtype'] == 'video']

    @property
    def metas(self) -> List[dict]:
        """The collection metadata of every stored episode (``hybrid_vla/meta``)."""
        return [json.loads(r[META_COLUMN]) if r.get(META_COLUMN) else {}
                for r in self.episodes]

    @property
    def total_frames(self) -> int:
        return sum(int(r['length']) for r in self.episodes)

    # ---- one episode
    def _validate(self, arrays: Dict[str, np.ndarray]) -> int:
        mine = set(self.features) - set(DEFAULT_FEATURES)
        missing, extra = sorted(mine - set(arrays)), sorted(set(arrays) - mine)
        if missing or extra:
            raise DatasetError(f'episode features: missing {missing}, unknown {extra}')
        n = None
        for k in sorted(mine):
            a = np.asarray(arrays[k])
            shape = list(self.features[k]['shape'])
            ok = [list(a.shape[1:])] == [shape] or (shape == [1] and a.ndim == 1)
            if a.ndim == 0 or not ok or (n is not None and len(a) != n):
                raise DatasetError(f'episode feature {k!r} has shape {a.shape}, expected '
                                   f'({n or "T"}, {", ".join(map(str, shape))})')
            if a.dtype.kind == 'f' and not np.all(np.isfinite(a)):
                raise DatasetError(f'episode feature {k!r} has non-finite values')
            n = len(a)
        if not n:
            raise DatasetError('an episode needs at least one frame')
        return n

    def add_episode(self, arrays: Dict[str, np.ndarray], task: str,
                    meta: Optional[dict] = None) -> int:
        """Store one episode (``arrays``: feature -> (T, ...)); returns its episode index."""
        import pyarrow as pa
        if not isinstance(task, str) or not task:
            raise DatasetError(f'task must be a non-empty string, got {task!r}')
        n = self._validate(arrays)
        ep = len(self.episodes)
        start = self.total_frames
        if task not in self.tasks:
            tasks = self.tasks + [task]
        else:
            tasks = list(self.tasks)
        frames = dict(arrays)
        frames['timestamp'] = (np.arange(n) / self.fps).astype(np.float32)
        frames['frame_index'] = np.arange(n, dtype=np.int64)
        frames['episode_index'] = np.full(n, ep, np.int64)
        frames['index'] = np.arange(start, start + n, dtype=np.int64)
        frames['task_index'] = np.full(n, tasks.index(task), np.int64)
        row = {'episode_index': ep, 'tasks': [task], 'length': n}
        staging = self.root + '.commit'
        _recover(self.root)
        try:
            os.makedirs(staging)
            if os.path.isdir(self.root):
                _link_tree(self.root, staging)
            # -- data file: the last one, or the next when it is full
            chunk, file = self._next_file(
                'data', lambda c, f: os.path.join(self.root, DATA_PATH.format(
                    chunk_index=c, file_index=f)), DATA_FILES_SIZE_MB)
            rel = DATA_PATH.format(chunk_index=chunk, file_index=file)
            cols = [k for k, f in self.features.items() if f['dtype'] not in VISUAL]
            new = pa.table({k: _column(np.asarray(frames[k]), self.features[k]) for k in cols})
            old_path = os.path.join(self.root, rel)
            if self._data_cache is not None and self._data_cache[0] == rel:
                new = pa.concat_tables([self._data_cache[1], new])
            elif os.path.isfile(old_path):
                import pyarrow.parquet as pq
                new = pa.concat_tables([pq.read_table(old_path).select(cols), new])
            new = new.replace_schema_metadata(None).combine_chunks()
            next_data = (rel, new)
            hf = {'info': {'features': {k: _hf_type(self.features[k]) for k in cols}}}
            new = new.replace_schema_metadata({'huggingface': json.dumps(hf)})
            _write_parquet(os.path.join(staging, rel), new)
            row.update({'data/chunk_index': chunk, 'data/file_index': file,
                        'dataset_from_index': start, 'dataset_to_index': start + n})
            # -- videos: this episode appended to the current mp4 of each camera
            video_info = {}
            for key in self.video_keys:
                video_info[key] = self._append_video(staging, key, frames[key], row)
            row.update({'meta/episodes/chunk_index': 0, 'meta/episodes/file_index': 0})
            for k, f in self.features.items():
                st = fstats.feature_stats(frames[k], visual=f['dtype'] in VISUAL)
                for sk in fstats.STAT_KEYS:
                    row[f'stats/{k}/{sk}'] = np.asarray(st[sk]).tolist()
            row[META_COLUMN] = json.dumps(meta or {})
            episodes = self.episodes + [row]
            self._write_meta(staging, episodes, tasks, video_info)
            _swap_in(staging, self.root)
        except BaseException:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)  # the previous version
        self.episodes, self.tasks = episodes, tasks
        self._ep_table = self._next_ep_table
        self._data_cache = next_data
        self._ep_stats.append(self._next_ep_stats)
        for key in self.video_keys:
            vk = (key, row[f'videos/{key}/chunk_index'], row[f'videos/{key}/file_index'])
            self.video_frames[vk] = self.video_frames.get(vk, 0) + n
        return ep

    def _next_file(self, kind: str, path_of, limit_mb: float) -> Tuple[int, int]:
        if not self.episodes:
            return 0, 0
        last = self.episodes[-1]
        c, f = int(last[f'{kind}/chunk_index']), int(last[f'{kind}/file_index'])
        path = path_of(c, f)
        if os.path.isfile(path) and os.path.getsize(path) >= limit_mb * 1e6:
            f += 1
            if f >= CHUNKS_SIZE:
                c, f = c + 1, 0
        return c, f

    def _append_video(self, staging: str, key: str, frames: np.ndarray, row: dict) -> dict:
        from hybrid_vla_ros.data import video
        kind = f'videos/{key}'
        chunk, file = self._next_file(kind, lambda c, f: os.path.join(
            self.root, VIDEO_PATH.format(video_key=key, chunk_index=c, file_index=f)),
            VIDEO_FILES_SIZE_MB)
        rel = VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        dest = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        part = os.path.join(staging, f'.episode.{key}.mp4')
        video.encode_frames(part, frames, self.fps)
        before = self.video_frames.get((key, chunk, file), 0)
        old = os.path.join(self.root, rel)
        if before and os.path.isfile(old):
            joined = dest + '.new.mp4'
            video.concatenate([old, part], [before, len(frames)], self.fps, joined)
            os.unlink(part)
        else:
            joined = part
        if os.path.lexists(dest):
            os.unlink(dest)
        os.rename(joined, dest)
        start = before / self.fps
        row.update({f'{kind}/chunk_index': chunk, f'{kind}/file_index': file,
                    f'{kind}/from_timestamp': start,
                    f'{kind}/to_timestamp': start + len(frames) / self.fps})
        return video.video_info(dest)

    def _row_stats(self, row: dict) -> Dict[str, Dict[str, np.ndarray]]:
        return {k: {sk: np.asarray(row[f'stats/{k}/{sk}']) for sk in fstats.STAT_KEYS}
                for k in self.features}

    def _write_meta(self, staging: str, episodes: List[dict], tasks: List[str],
                    video_info: Dict[str, dict]) -> None:
        import pandas as pd
        import pyarrow as pa
        # episodes table: LeRobot's columns first, then the stats, then ours
        first = ['episode_index', 'tasks', 'length', 'data/chunk_index', 'data/file_index',
                 'dataset_from_index', 'dataset_to_index']
        for key in self.video_keys:
            first += [f'videos/{key}/{c}' for c in ('chunk_index', 'file_index',
                                                    'from_timestamp', 'to_timestamp')]
        first += ['meta/episodes/chunk_index', 'meta/episodes/file_index']
        stats_cols = [f'stats/{k}/{sk}' for k in self.features for sk in fstats.STAT_KEYS]
        fields = []
        for c in first:
            t = (pa.list_(pa.string()) if c == 'tasks' else pa.float64()
                 if c.endswith('_timestamp') else pa.int64())
            fields.append(pa.field(c, t))
        for c in stats_cols:
            k = c.split('/')[1]
            inner = pa.int64() if c.endswith('/count') else pa.float64()
            feat = self.features[k]
            depth = (1 if c.endswith('/count') else 3 if feat['dtype'] in VISUAL
                     else len(feat['shape']))
            t = inner
            for _ in range(depth):
                t = pa.list_(t)
            fields.append(pa.field(c, t))
        fields.append(pa.field(META_COLUMN, pa.string()))
        schema = pa.schema(fields)
        # the stored rows stay one arrow table: a commit converts only its own row
        old = self._ep_table
        if old is None or old.num_rows != len(episodes) - 1 or old.schema != schema:
            old = pa.Table.from_pylist([{f.name: r.get(f.name) for f in fields}
                                        for r in episodes[:-1]], schema=schema)
        new = pa.Table.from_pylist([{f.name: episodes[-1].get(f.name) for f in fields}],
                                   schema=schema)
        table = pa.concat_tables([old, new]).combine_chunks()
        _write_parquet(os.path.join(staging, EPISODES_PATH), table)
        self._next_ep_table = table
        # tasks: a DataFrame indexed by the task string (LeRobot reads the index back)
        tdf = pd.DataFrame({'task_index': np.arange(len(tasks), dtype=np.int64)},
                           index=pd.Index(tasks, name=None))
        path = os.path.join(staging, 'meta', 'tasks.parquet')
        if os.path.lexists(path):
            os.unlink(path)
        tdf.to_parquet(path)
        # stats over all episodes
        stats = {}
        while len(self._ep_stats) < len(episodes) - 1:  # episodes stored before this writer
            r = episodes[len(self._ep_stats)]
            self._ep_stats.append(self._row_stats(r))
        per_ep = self._ep_stats[:len(episodes) - 1] + [self._row_stats(episodes[-1])]
        for k in self.features:
            stats[k] = fstats.aggregate_stats([e[k] for e in per_ep])
        self._next_ep_stats = per_ep[-1]
        _write_file(os.path.join(staging, 'meta', 'stats.json'),
                    json.dumps(fstats.to_json(stats), indent=4).encode())
        feats = {}
        prev = getattr(self, 'info_features', {})
        for k, f in self.features.items():
            entry = {'dtype': f['dtype'], 'shape': list(f['shape']), 'names': f.get('names')}
            if f['dtype'] == 'video':
                entry['info'] = video_info.get(k) or prev.get(k, {}).get('info')
            feats[k] = entry
        self.info_features = feats
        info = {'codebase_version': CODEBASE_VERSION, 'robot_type': self.robot_type,
                'total_episodes': len(episodes),
                'total_frames': sum(int(r['length']) for r in episodes),
                'total_tasks': len(tasks), 'chunks_size': CHUNKS_SIZE,
                'data_files_size_in_mb': DATA_FILES_SIZE_MB,
                'video_files_size_in_mb': VIDEO_FILES_SIZE_MB, 'fps': self.fps,
                'splits': {'train': f'0:{len(episodes)}'}, 'data_path': DATA_PATH,
                'video_path': VIDEO_PATH if self.video_keys else None, 'features': feats}
        _write_file(os.path.join(staging, 'meta', 'info.json'),
                    json.dumps(info, indent=4).encode())
