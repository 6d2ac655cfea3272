"""Writing a LeRobotDataset v3 folder (the project's one dataset format), without ``lerobot``.

The layout is described in :mod:`hybrid_vla_ros.data.lerobot_format`. Each episode is one
commit of :mod:`hybrid_vla_ros.data.atomic_commit`: an interrupted commit (Ctrl-C, kill -9)
leaves the previous version of the folder, and the next writer goes on from it.
"""
import json
import os
import shutil
from typing import Dict, List, Optional, Tuple

import numpy as np

from hybrid_vla_ros.data import atomic_commit
from hybrid_vla_ros.data import feature_stats as fstats
from hybrid_vla_ros.data.lerobot_format import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_PATH,
    META_COLUMN,
    VIDEO_PATH,
    VISUAL,
    DatasetError,
    arrow_type,
    hf_type,
    read_episode_rows,
    read_info,
    to_arrow_column,
)

# a file past its size starts the next file-NNN, a chunk holds CHUNKS_SIZE files
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200


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
        atomic_commit.recover(self.root)
        for k in features:
            if k in DEFAULT_FEATURES:
                raise DatasetError(f'feature {k!r} is one of the default features')
        self.features = dict(features, **DEFAULT_FEATURES)
        for k, f in self.features.items():
            if f['dtype'] not in VISUAL:
                arrow_type(f)
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
        info = read_info(self.root)
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
        self.episodes = read_episode_rows(self.root)
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
        atomic_commit.recover(self.root)
        try:
            os.makedirs(staging)
            if os.path.isdir(self.root):
                atomic_commit.link_tree(self.root, staging)
            # -- data file: the last one, or the next when it is full
            chunk, file = self._next_file(
                'data', lambda c, f: os.path.join(self.root, DATA_PATH.format(
                    chunk_index=c, file_index=f)), DATA_FILES_SIZE_MB)
            rel = DATA_PATH.format(chunk_index=chunk, file_index=file)
            cols = [k for k, f in self.features.items() if f['dtype'] not in VISUAL]
            new = pa.table({k: to_arrow_column(np.asarray(frames[k]), self.features[k])
                            for k in cols})
            old_path = os.path.join(self.root, rel)
            if self._data_cache is not None and self._data_cache[0] == rel:
                new = pa.concat_tables([self._data_cache[1], new])
            elif os.path.isfile(old_path):
                import pyarrow.parquet as pq
                new = pa.concat_tables([pq.read_table(old_path).select(cols), new])
            new = new.replace_schema_metadata(None).combine_chunks()
            next_data = (rel, new)
            hf = {'info': {'features': {k: hf_type(self.features[k]) for k in cols}}}
            new = new.replace_schema_metadata({'huggingface': json.dumps(hf)})
            atomic_commit.write_parquet(os.path.join(staging, rel), new)
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
            atomic_commit.swap_in(staging, self.root)
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
        atomic_commit.write_parquet(os.path.join(staging, EPISODES_PATH), table)
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
        atomic_commit.write_file(os.path.join(staging, 'meta', 'stats.json'),
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
        atomic_commit.write_file(os.path.join(staging, 'meta', 'info.json'),
                                 json.dumps(info, indent=4).encode())
