"""Demonstration recording into LeRobotDataset v3: layout, resume, interruptions, bad input."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import generated_arm
from generated_arm import write_arm
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hybrid_vla_ros.data.dataset import Dataset
from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
from hybrid_vla_ros.data.dataset_writer import DatasetWriter
from hybrid_vla_ros.data.lerobot_format import DatasetError, vector_feature


def collect(out, *extra, **kw):
    return subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--out',
                           str(out), *extra], capture_output=True, text=True, **kw)


@pytest.fixture(scope='module')
def two_episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp('ds') / 'reach'
    r = collect(out, '--task', 'reach', '--episodes', '2', '--seed', '11', '--image-size', '64')
    assert r.returncode == 0, r.stderr
    return out


def test_dataset_is_lerobot_v3_with_every_feature(two_episodes):
    info = json.loads((two_episodes / 'meta' / 'info.json').read_text())
    assert info['codebase_version'] == 'v3.0' and info['fps'] == 20
    assert info['robot_type'] == 'arm7' and info['total_episodes'] == 2
    cam = info['features']['observation.images.camera']
    assert cam['dtype'] == 'video' and cam['shape'] == [64, 64, 3]
    assert cam['info']['video.codec'] == 'av1' and cam['info']['video.pix_fmt'] == 'yuv420p'
    assert info['features']['observation.state']['names'][-1] == 'gripper'
    # one data file and one mp4 hold both episodes, addressed from the episodes table
    assert [p.name for p in (two_episodes / 'data' / 'chunk-000').iterdir()] == \
        ['file-000.parquet']
    eps = pq.read_table(two_episodes / 'meta' / 'episodes' / 'chunk-000' / 'file-000.parquet')
    eps = eps.to_pandas()
    assert list(eps['dataset_from_index']) == [0, eps['length'][0]]
    key = 'videos/observation.images.camera'
    assert eps[f'{key}/from_timestamp'][1] == pytest.approx(eps['length'][0] / 20)
    tasks = pd.read_parquet(two_episodes / 'meta' / 'tasks.parquet')
    stats = json.loads((two_episodes / 'meta' / 'stats.json').read_text())
    for f in ('observation.state', 'action', 'timestamp', 'index'):
        assert set(stats[f]) == {'min', 'max', 'mean', 'std', 'count', 'q01', 'q10', 'q50',
                                 'q90', 'q99'}
    assert np.asarray(stats['observation.images.camera']['mean']).shape == (3, 1, 1)

    ds = Dataset(str(two_episodes))
    assert len(ds) == 2
    assert [m['seed'] for m in ds.episodes] == [11, 12]
    assert ds.episodes[0]['tasks'] == [ds.episodes[0]['instruction']]
    assert list(tasks.index) == list(dict.fromkeys(m['instruction'] for m in ds.episodes))
    ep = ds.load(0, images=True)
    T = len(ep.arrays['action'])
    assert T == ep.meta['length'] > 10
    assert ep.arrays['observation.state'].shape == (T, 8)
    assert ep.arrays['observation.goal'].shape == (T, 8)
    assert ep.arrays['observation.images.camera'].shape == (T, 64, 64, 3)
    assert ep.arrays['observation.images.camera'].dtype == np.uint8
    assert np.allclose(ep.arrays['timestamp'], np.arange(T) / 20)
    assert ep.meta['instruction'] and ep.meta['subgoals'] and ep.meta['waypoints']
    # the expert's commanded targets lead the measured state: actions are not the state
    assert np.abs(ep.arrays['action'][:, :7] - ep.arrays['observation.state'][:, :7]).max() > 0
    # stats.json agrees with the frames
    both = np.concatenate([ds.load(i).arrays['observation.state'] for i in range(2)])
    assert np.allclose(stats['observation.state']['max'], both.max(0), atol=1e-6)
    assert np.allclose(stats['observation.state']['mean'], both.mean(0), atol=1e-5)
    assert stats['observation.state']['count'] == [len(both)]


def test_resume_skips_finished_episodes(two_episodes):
    r = collect(two_episodes, '--task', 'reach', '--episodes', '3', '--seed', '11',
                '--image-size', '64')
    assert r.returncode == 0, r.stderr
    assert 'resuming, 2 episodes already' in r.stdout
    ds = Dataset(str(two_episodes))
    assert [m['run'] for m in ds.episodes] == [0, 1, 2]
    assert [m['episode_index'] for m in ds.episodes] == [0, 1, 2]
    ep = ds.load(2, images=True)  # the third episode's video follows the others in one mp4
    assert ep.arrays['observation.images.camera'].shape[0] == ep.meta['length']


def test_resume_with_other_features_is_a_clear_error(two_episodes):
    r = collect(two_episodes, '--task', 'reach', '--episodes', '3', '--no-images')
    assert r.returncode == 2
    assert 'existing dataset has other features' in r.stderr


def test_sigint_leaves_a_consistent_dataset(tmp_path):
    out = tmp_path / 'ds'
    proc = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--task',
                             'reach', '--episodes', '50', '--out', str(out), '--no-images'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = out / 'meta' / 'info.json'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not info.exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    ds = Dataset(str(out))
    assert 1 <= len(ds) < 50
    for i in range(len(ds)):
        ds.load(i)  # every listed episode is complete and readable
    assert not (tmp_path / 'ds.commit').exists()


_HARD_KILL = textwrap.dedent('''
    import os, sys
    import numpy as np
    from hybrid_vla_ros.data import atomic_commit
    from hybrid_vla_ros.data.dataset_writer import DatasetWriter
    from hybrid_vla_ros.data.lerobot_format import vector_feature
    feats = {'observation.state': vector_feature(['a', 'b']),
             'action': vector_feature(['a', 'b'])}
    w = DatasetWriter(sys.argv[1], fps=10, robot_type='toy', features=feats)
    step = {'observation.state': np.ones((5, 2), np.float32),
            'action': np.ones((5, 2), np.float32)}
    w.add_episode(step, 'first')
    if sys.argv[2] == 'before-swap':   # the next version is built, not yet swapped in
        atomic_commit.swap_in = lambda staging, root: os._exit(9)
    else:                              # swapped in, the previous version not yet removed
        real = atomic_commit.swap_in
        def swap_then_die(staging, root):
            real(staging, root)
            os._exit(9)
        atomic_commit.swap_in = swap_then_die
    w.add_episode(step, 'second')
''')


@pytest.mark.parametrize('moment,episodes', [('before-swap', 1), ('after-swap', 2)])
def test_a_hard_kill_inside_a_commit_keeps_one_whole_version(tmp_path, moment, episodes):
    """A process killed at either point of a commit leaves a dataset that loads whole."""
    root = tmp_path / 'toy'
    r = subprocess.run([sys.executable, '-c', _HARD_KILL, str(root), moment],
                       capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    ds = Dataset(str(root))
    assert len(ds) == episodes == ds.info['total_episodes']
    assert sum(len(ds.load(i).arrays['action']) for i in range(len(ds))) == 5 * episodes
    # the next writer removes what the killed commit left and goes on
    feats = {'observation.state': vector_feature(['a', 'b']),
             'action': vector_feature(['a', 'b'])}
    w = DatasetWriter(str(root), fps=10, robot_type='toy', features=feats)
    assert not (tmp_path / 'toy.commit').exists()
    w.add_episode({k: np.zeros((3, 2), np.float32) for k in feats}, 'third')
    assert len(Dataset(str(root))) == episodes + 1


def test_not_a_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match='no meta/info.json'):
        Dataset(str(tmp_path))
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'info.json').write_text(json.dumps({'format': 'hybrid_vla_dataset'}))
    with pytest.raises(DatasetError, match='expected a LeRobotDataset v3'):
        Dataset(str(tmp_path))
    feats = {'observation.state': vector_feature(['a'])}
    with pytest.raises(DatasetError, match='expected a LeRobotDataset v3'):
        DatasetWriter(str(tmp_path), fps=10, robot_type='toy', features=feats)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('x')
    with pytest.raises(DatasetError, match='is not a dataset'):
        DatasetWriter(str(tmp_path / 'other'), fps=10, robot_type='toy', features=feats)
    w = DatasetWriter(str(tmp_path / 'new'), fps=10, robot_type='toy', features=feats)
    with pytest.raises(DatasetError, match="'observation.state' has shape"):
        w.add_episode({'observation.state': np.zeros((4, 3), np.float32)}, 'x')
    with pytest.raises(DatasetError, match='non-finite'):
        w.add_episode({'observation.state': np.full((4, 1), np.nan, np.float32)}, 'x')


def test_unknown_task_is_rejected(tmp_path):
    r = collect(tmp_path / 'x', '--task', 'juggle', '--episodes', '1')
    assert r.returncode != 0
    assert 'juggle' in r.stderr


def test_motor_training_reads_foreign_feature_order_and_derives_the_goal(tmp_path):
    """A LeRobot-style dataset (state/action only, another joint order) maps by names."""
    from hybrid_vla_ros.data.dataset import Dataset
    from hybrid_vla_ros.training.motor_data import load_motor_samples, motor_arrays

    spec = load_dataset_spec('arm7')
    names = list(reversed(spec.state_names))
    feats = {'observation.state': vector_feature(names), 'action': vector_feature(names)}
    w = DatasetWriter(str(tmp_path / 'lr'), fps=20, robot_type='other_writer', features=feats)
    rng = np.random.default_rng(0)
    q = (rng.normal(size=(12, 8)) * 0.1).astype(np.float32)  # robot order
    w.add_episode({'observation.state': q[:, ::-1].copy(), 'action': q[:, ::-1].copy()},
                  'pick up the red cube')
    ds = Dataset(str(tmp_path / 'lr'))
    arrays = motor_arrays(ds, ds.load(0).arrays, spec)
    assert np.array_equal(arrays['observation.state'], q)
    assert arrays['observation.tool_pose'].shape == (12, 7)
    # hindsight goal: the last tool pose and gripper command, for every frame
    assert np.allclose(arrays['observation.active_waypoint'][:, :7],
                       arrays['observation.tool_pose'][-1])
    train, _ = load_motor_samples([str(tmp_path / 'lr')], horizon=4, val_fraction=0.0)
    assert tuple(train['action'].shape) == (12, 4, 8)
    bad = {'observation.state': vector_feature(['j1', 'j2']),
           'action': vector_feature(['j1', 'j2'])}
    DatasetWriter(str(tmp_path / 'bad'), fps=20, robot_type='x', features=bad).add_episode(
        {k: np.zeros((3, 2), np.float32) for k in bad}, 't')
    with pytest.raises(DatasetError, match="missing \\['joint_1'"):
        load_motor_samples([str(tmp_path / 'bad')], horizon=4)


# --------------------------------------------------------------------------- real LeRobot
# The real lerobot 0.4.4 loader and writer run in a private venv (../shared/lerobot/): the first
# run builds it (about a minute, 1.4 GB), later checks take ~5-10 s each.
LEROBOT_TOOLS = os.environ.get('HYBRID_VLA_LEROBOT_TOOLS', os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'lerobot'))
lerobot_check = pytest.mark.skipif(
    os.environ.get('HYBRID_VLA_LEROBOT_CHECK') != '1',
    reason='set HYBRID_VLA_LEROBOT_CHECK=1 to check against the real lerobot loader')


@lerobot_check
def test_lerobot_loads_the_collected_dataset(two_episodes):
    r = subprocess.run(['bash', os.path.join(LEROBOT_TOOLS, 'verify_v3.sh'),
                        str(two_episodes)], capture_output=True, text=True, timeout=600)
    last = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0 and last.startswith('lerobot v3 check: OK'), r.stdout[-3000:]


@lerobot_check
def test_a_dataset_written_by_lerobot_trains_the_motor_level(tmp_path):
    ref = tmp_path / 'ref'
    r = subprocess.run(['bash', os.path.join(LEROBOT_TOOLS, 'make_reference.sh'), str(ref)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    ds = Dataset(str(ref))
    assert len(ds) == 2 and ds.episodes[1]['tasks'] == ['put the red cube in the bin']
    ep = ds.load(1, images=True)
    assert ep.arrays['observation.images.camera'].shape == (20, 48, 64, 3)
    from hybrid_vla_ros.training.motor_data import load_motor_samples
    train, _ = load_motor_samples([str(ref)], horizon=4, val_fraction=0.0)
    assert len(train['state']) == 40
    r = subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'train', 'motor',
                        '--expert', 'flow', '--data', str(ref), '--out', str(tmp_path / 'ck'),
                        '--d-model', '32', '--batch-size', '16', '--steps', '10',
                        '--val-every', '10', '--threads', '1'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_image_features_of_lerobot_datasets_are_decoded(tmp_path):
    """LeRobot's `image` dtype (PNG bytes in the data parquet) loads as (T, H, W, 3) frames."""
    import imageio.v3 as iio
    import pyarrow as pa

    root = tmp_path / 'img'
    w = DatasetWriter(str(root), fps=10, robot_type='x',
                      features={'observation.state': vector_feature(['a', 'b'])})
    w.add_episode({'observation.state': np.zeros((3, 2), np.float32)}, 't')
    data = root / 'data' / 'chunk-000' / 'file-000.parquet'
    table = pq.read_table(data)
    cells = [{'bytes': iio.imwrite('<bytes>', np.full((4, 6, 3), 40 * k, np.uint8),
                                   extension='.png'), 'path': None} for k in range(3)]
    table = table.append_column('observation.images.top', pa.array(
        cells, type=pa.struct([('bytes', pa.binary()), ('path', pa.string())])))
    pq.write_table(table, data)
    info = json.loads((root / 'meta' / 'info.json').read_text())
    info['features']['observation.images.top'] = {
        'dtype': 'image', 'shape': [4, 6, 3], 'names': ['height', 'width', 'channels']}
    (root / 'meta' / 'info.json').write_text(json.dumps(info))
    frames = Dataset(str(root)).load(0, images=True).arrays['observation.images.top']
    assert frames.shape == (3, 4, 6, 3) and frames[2, 0, 0, 0] == 80


def test_full_files_roll_over_to_the_next_file(tmp_path, monkeypatch):
    """Past data_files_size_in_mb / video_files_size_in_mb a new file-NNN is started."""
    from hybrid_vla_ros.data import dataset_writer
    from hybrid_vla_ros.data.lerobot_format import video_feature

    monkeypatch.setattr(dataset_writer, 'DATA_FILES_SIZE_MB', 1e-6)
    monkeypatch.setattr(dataset_writer, 'VIDEO_FILES_SIZE_MB', 1e-6)
    feats = {'observation.state': vector_feature(['a', 'b']),
             'observation.images.camera': video_feature(32, 32)}
    root = tmp_path / 'roll'
    w = DatasetWriter(str(root), fps=10, robot_type='toy', features=feats)
    for k in range(3):
        w.add_episode({'observation.state': np.full((4 + k, 2), k, np.float32),
                       'observation.images.camera': np.full((4 + k, 32, 32, 3), 60 * k,
                                                            np.uint8)}, f'task {k}')
    assert sorted(p.name for p in (root / 'data' / 'chunk-000').iterdir()) == \
        ['file-000.parquet', 'file-001.parquet', 'file-002.parquet']
    ds = Dataset(str(root))
    assert [m['videos/observation.images.camera/file_index'] for m in ds.episodes] == [0, 1, 2]
    assert [m['videos/observation.images.camera/from_timestamp'] for m in ds.episodes] == \
        [0.0, 0.0, 0.0]
    for k in range(3):
        ep = ds.load(k, images=True)
        assert np.all(ep.arrays['observation.state'] == k)
        assert abs(int(ep.arrays['observation.images.camera'][:, 16, 16].mean()) - 60 * k) < 8
        assert list(ep.arrays['index']) == list(range(ep.meta['dataset_from_index'],
                                                      ep.meta['dataset_to_index']))
    # frames the AV1 encoder cannot take are an error, not a crash
    with pytest.raises(DatasetError, match='16x16 pixels, expected even sizes of at least 32'):
        DatasetWriter(str(tmp_path / 'small'), fps=10, robot_type='toy',
                      features={'observation.images.camera': video_feature(16, 16)})
    from hybrid_vla_ros.data.video import encode_frames
    with pytest.raises(ValueError, match='at least 32x32'):
        encode_frames(str(tmp_path / 'x.mp4'), np.zeros((3, 16, 16, 3), np.uint8), 10)


def test_without_rename_exchange_the_two_rename_commit_and_its_recovery_work(tmp_path,
                                                                            monkeypatch):
    """File systems without RENAME_EXCHANGE: two renames; a kill between them is undone."""
    import errno

    from hybrid_vla_ros.data import atomic_commit

    def no_exchange(a, b):
        raise OSError(errno.EINVAL, 'not supported')
    monkeypatch.setattr(atomic_commit, '_exchange', no_exchange)
    feats = {'observation.state': vector_feature(['a', 'b'])}
    root = tmp_path / 'fs'
    w = DatasetWriter(str(root), fps=10, robot_type='toy', features=feats)
    for k in range(2):
        w.add_episode({'observation.state': np.full((3, 2), k, np.float32)}, 't')
    assert len(Dataset(str(root))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fs']
    # a kill after the first rename: the dataset is at fs.previous, fs is gone
    os.rename(root, tmp_path / 'fs.previous')
    w = DatasetWriter(str(root), fps=10, robot_type='toy', features=feats)  # recovers
    assert len(w.episodes) == 2 and len(Dataset(str(root))) == 2


# ----------------------------------------------------------------------------- any arm
# The generated 5-joint arm of generated_arm.py: renamed links/joints/frames, a prismatic gripper
# with a mimic joint, the minimal robot YAML.


def _cli_json(capsys, *argv):
    from hybrid_vla_ros.cli import main
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_generated_5_joint_arm_collects_trains_and_evaluates(tmp_path, capsys):
    from hybrid_vla_ros.cli import main
    from hybrid_vla_ros.models.checkpoint import CheckpointError, load_checkpoint
    from hybrid_vla_ros.robot import load_robot

    yaml_path = write_arm(str(tmp_path))
    robot = load_robot(yaml_path)
    joints = list(generated_arm.JOINTS)
    assert list(robot.joint_names) == joints and robot.state_dim == 6
    assert robot.gripper_mimic == ('grip_b',)
    data, ckpt = tmp_path / 'data', tmp_path / 'ckpt'
    assert main(['collect', '--task', 'reach', '--episodes', '3', '--seed', '0', '--out',
                 str(data), '--no-images', '--robot', yaml_path]) == 0
    ds = Dataset(str(data))
    assert ds.info['robot_type'] == 'five' and len(ds) == 3
    for key in ('observation.state', 'action'):
        assert ds.features[key]['shape'] == [6]
        assert ds.features[key]['names'] == joints + ['gripper']
    ep = ds.load(0)
    assert ep.arrays['observation.state'].shape[1] == 6 and ep.arrays['action'].shape[1] == 6
    assert main(['train', 'motor', '--expert', 'flow', '--data', str(data), '--out',
                 str(ckpt / 'flow'), '--robot', yaml_path, '--steps', '4', '--batch-size', '16',
                 '--d-model', '16', '--horizon', '4', '--val-every', '4']) == 0
    meta = json.loads((ckpt / 'flow' / 'config.json').read_text())
    assert meta['robot']['name'] == 'five' and meta['robot']['joint_names'] == joints
    assert meta['robot']['gripper_joint'] == 'grip_a'
    cfg = meta['config']
    assert (cfg['encoder']['state_dim'], cfg['action_dim'], cfg['delta_dims']) == (6, 6, 5)
    expert = load_checkpoint(str(ckpt / 'flow'), joint_names=joints)
    with pytest.raises(CheckpointError, match='another robot'):
        load_checkpoint(str(ckpt / 'flow'), joint_names=[f'j{i}' for i in range(7)])
    with pytest.raises(CheckpointError, match='trained for robot five'):
        load_checkpoint(str(ckpt / 'flow'), joint_names=[f'j{i}' for i in range(5)])
    assert expert.config.horizon == 4
    capsys.readouterr()
    res = _cli_json(capsys, 'eval', '--task', 'reach', '--expert', 'flow', '--checkpoints',
                    str(ckpt), '--robot', yaml_path, '--episodes', '2')
    assert res['robot'] == 'five' and res['episodes'] == 2 and res['expert'] == 'flow'
    lo, hi = res['success_ci']
    assert 0.0 <= lo <= res['success_rate'] <= hi <= 1.0 and res['experts_used']['flow'] > 0
    ref = _cli_json(capsys, 'eval', '--task', 'reach', '--expert', 'scripted', '--robot',
                    yaml_path, '--episodes', '2')
    assert ref['robot'] == 'five' and ref['successes'] == 2 and ref['success_rate'] == 1.0
    assert ref['median_error_mm'] < 1.0
    # the other robot's checkpoint is one clear error line, exit 2
    assert main(['eval', '--task', 'reach', '--expert', 'flow', '--checkpoints', str(ckpt),
                 '--episodes', '1']) == 2
    assert 'another robot' in capsys.readouterr().err
