"""Demonstration recording: dataset layout, resume, and an interrupted collection."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hybrid_vla_ros.data.dataset import Dataset, DatasetError


def collect(out, *extra, **kw):
    return subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--out',
                           str(out), *extra], capture_output=True, text=True, **kw)


@pytest.fixture(scope='module')
def two_episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp('ds') / 'reach'
    r = collect(out, '--task', 'reach', '--episodes', '2', '--seed', '11',
                '--image-stride', '10')
    assert r.returncode == 0, r.stderr
    return out


def test_dataset_has_every_step_feature(two_episodes):
    ds = Dataset(str(two_episodes))
    assert len(ds) == 2
    assert [m['seed'] for m in ds.episodes] == [11, 12]
    ep = ds.load(0, images=True)
    T = len(ep.arrays['action'])
    assert T == ep.meta['length'] > 10
    assert ep.arrays['observation.state'].shape == (T, 8)
    assert ep.arrays['observation.goal'].shape == (T, 8)
    assert ep.arrays['observation.image'].shape[1:] == (128, 128, 3)
    assert ep.arrays['observation.image'].dtype == np.uint8
    assert ep.meta['instruction'] and ep.meta['subgoals'] and ep.meta['waypoints']
    # the expert's commanded targets lead the measured state: actions are not the state
    assert np.abs(ep.arrays['action'][:, :7] - ep.arrays['observation.state'][:, :7]).max() > 0


def test_resume_skips_finished_episodes(two_episodes):
    r = collect(two_episodes, '--task', 'reach', '--episodes', '3', '--seed', '11',
                '--image-stride', '0')
    assert r.returncode == 0, r.stderr
    assert 'resuming, 2 episodes already' in r.stdout
    assert [m['episode_index'] for m in Dataset(str(two_episodes)).episodes] == [0, 1, 2]


def test_sigint_leaves_a_consistent_dataset(tmp_path):
    out = tmp_path / 'ds'
    proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--task',
                             'reach', '--episodes', '50', '--out', str(out),
                             '--image-stride', '0'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    meta = out / 'meta' / 'episodes.jsonl'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (meta.exists() and meta.read_text().strip()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    ds = Dataset(str(out))
    assert 1 <= len(ds) < 50
    for i in range(len(ds)):
        ds.load(i)  # every listed episode is complete and readable
    assert not [f for f in os.listdir(out / 'data') if f.endswith('.tmp.npz')]


def test_not_a_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match='no meta/info.json'):
        Dataset(str(tmp_path))
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'info.json').write_text(json.dumps({'format': 'other'}))
    with pytest.raises(DatasetError, match='format'):
        Dataset(str(tmp_path))


def test_unknown_task_is_rejected(tmp_path):
    r = collect(tmp_path / 'x', '--task', 'juggle', '--episodes', '1')
    assert r.returncode != 0
    assert 'juggle' in r.stderr
