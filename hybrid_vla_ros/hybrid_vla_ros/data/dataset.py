"""Reading a LeRobotDataset v3 folder (ours or one written by LeRobot), without ``lerobot``.

The format is described in :mod:`hybrid_vla_ros.data.lerobot_format`; the project's own
datasets are written by :mod:`hybrid_vla_ros.data.dataset_writer`.
"""
from dataclasses import dataclass
import json
import os
from typing import Dict, Iterator, List, Optional

import numpy as np

from hybrid_vla_ros.data.lerobot_format import (
    DATA_PATH,
    META_COLUMN,
    VISUAL,
    DatasetError,
    from_arrow_column,
    read_episode_rows,
    read_info,
)


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
        self.info = read_info(root)
        self.fps = int(self.info['fps'])
        self.features: Dict[str, dict] = self.info['features']
        self.episodes: List[dict] = []
        for row in read_episode_rows(root):
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
            arrays[key] = from_arrow_column(part.column(key), feat)
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
