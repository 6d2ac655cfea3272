"""The LeRobotDataset v3 format: layout, feature descriptions, arrow columns, metadata reading.

Layout (what LeRobot 0.4+ writes and loads)::

    DIR/meta/info.json                              codebase_version "v3.0", fps, robot_type,
                                                    features (dtype, shape, names), splits, paths
    DIR/meta/stats.json                             min/max/mean/std/count/q01..q99 per feature
    DIR/meta/tasks.parquet                          task_index, indexed by the task string
    DIR/meta/episodes/chunk-000/file-000.parquet    one row per episode: length, task, where its
                                                    frames and video are, its own stats
    DIR/data/chunk-CCC/file-FFF.parquet             one row per frame, many episodes per file
    DIR/videos/<camera>/chunk-CCC/file-FFF.mp4      the camera, episodes back to back (AV1)

A feature is ``{'dtype', 'shape', 'names'}`` as in ``meta/info.json``; non-visual features are
parquet columns (:func:`arrow_type`, :func:`to_arrow_column`, :func:`from_arrow_column`), video
features live in the mp4 files. :mod:`hybrid_vla_ros.data.dataset` reads such folders,
:mod:`hybrid_vla_ros.data.dataset_writer` writes them.
"""
import json
import os
from typing import List, Sequence

import numpy as np

CODEBASE_VERSION = 'v3.0'
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


# --------------------------------------------------------------------------- arrow columns

def arrow_type(feat: dict):
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


def hf_type(feat: dict) -> dict:
    shape = list(feat['shape'])
    if shape == [1]:
        return {'dtype': feat['dtype'], '_type': 'Value'}
    if len(shape) == 1:
        return {'feature': {'dtype': feat['dtype'], '_type': 'Value'}, 'length': shape[0],
                '_type': 'List'}
    return {'shape': shape, 'dtype': feat['dtype'], '_type': f'Array{len(shape)}D'}


def to_arrow_column(values: np.ndarray, feat: dict):
    import pyarrow as pa
    t = arrow_type(feat)
    shape = list(feat['shape'])
    if shape == [1]:
        return pa.array(values.reshape(-1), type=t)
    if len(shape) == 1:
        flat = pa.array(values.reshape(-1), type=t.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, shape[0])
    return pa.array(values.tolist(), type=t)


def from_arrow_column(column, feat: dict) -> np.ndarray:
    shape = list(feat['shape'])
    dt = np.dtype(feat['dtype'])
    col = column.combine_chunks() if hasattr(column, 'combine_chunks') else column
    n = len(col)
    if shape == [1]:
        return col.to_numpy(zero_copy_only=False).astype(dt)
    if len(shape) == 1:
        return col.flatten().to_numpy(zero_copy_only=False).astype(dt).reshape(n, shape[0])
    return np.asarray(col.to_pylist(), dt).reshape([n] + shape)


# --------------------------------------------------------------------------- metadata

def read_info(root: str) -> dict:
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


def read_episode_rows(root: str) -> List[dict]:
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
