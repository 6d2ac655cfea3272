"""`hybrid-vla dataset from-bag`: a recorded graph run becomes a LeRobot v3 dataset that trains.

The run: the MuJoCo arm (sim_arm), the chunk executor and the bag recorder as processes over
real DDS; this test plays the motor level (action chunks) and the user (two instructions).
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from ros_harness import RosProbe
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from hybrid_vla_msgs.msg import ActionChunk
from hybrid_vla_ros.bringup.graph import arm_graph, recorder_spec
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses
from hybrid_vla_ros.data.bag_reader import read_bag
from hybrid_vla_ros.data.dataset import Dataset
from hybrid_vla_ros.data.mcap_recorder import McapRecorder
from hybrid_vla_ros.nodes.qos import COMMAND, SENSOR

JOINTS = [f'joint_{i}' for i in range(1, 8)]
TOPICS = (('/joint_states', 'sensor_msgs/msg/JointState'),
          ('action_chunk', 'hybrid_vla_msgs/msg/ActionChunk'),
          ('instruction', 'std_msgs/msg/String'),
          ('camera/image_raw', 'sensor_msgs/msg/Image'),
          ('/forward_position_controller/commands', 'std_msgs/msg/Float64MultiArray'))
INSTRUCTIONS = ('reach the green target', 'go back to the start')
H, STEP = 8, 0.05


def _cli(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', *args],
                          capture_output=True, text=True, **kw)


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp('bag')
    bag = d / 'run.mcap'
    specs = [s for s in arm_graph(hardware='sim') if s.name in ('sim_arm', 'chunk_executor')]
    procs = GraphProcesses(specs + [recorder_spec(str(bag), topics=TOPICS)],
                           overrides={'sim_arm': {'task': 'reach', 'seed': 3}},
                           log=lambda m: None, stdout=open(d / 'graph.log', 'w'),
                           stderr=subprocess.STDOUT).start()
    probe = RosProbe('bag_test')
    try:
        probe.subscribe(JointState, '/joint_states', SENSOR)
        probe.subscribe(Image, 'camera/image_raw', SENSOR, key='image')
        chunks = probe.node.create_publisher(ActionChunk, 'action_chunk', COMMAND)
        say = probe.node.create_publisher(String, 'instruction', COMMAND)
        probe.wait_for(lambda: '/joint_states' in probe.latest and
                       chunks.get_subscription_count() >= 2 and
                       say.get_subscription_count() >= 1 and
                       probe.node.count_subscribers('camera/image_raw') >= 2, 120,
                       'the graph and the recorder')
        # a camera frame the recorder has too (the camera may lag the grid under load)
        seen = probe.counts.get('image', 0)
        probe.wait_for(lambda: probe.counts.get('image', 0) > seen, 30, 'a camera frame')
        probe.spin_for(0.5)
        js = probe.latest['/joint_states']
        home = np.array([js.position[list(js.name).index(j)] for j in JOINTS])
        sent = []
        for k, text in enumerate(INSTRUCTIONS):
            say.publish(String(data=text))
            probe.spin_for(0.2)
            goal = home + (0.15 if k == 0 else 0.0)
            t_end = probe.node.get_clock().now().nanoseconds + 2_000_000_000
            while probe.node.get_clock().now().nanoseconds < t_end:
                now = probe.node.get_clock().now()
                msg = ActionChunk(expert='test', joint_names=JOINTS, horizon=H)
                msg.header.stamp = now.to_msg()
                msg.step.nanosec = int(STEP * 1e9)
                # a ramp towards the goal: every step of a chunk is another target
                cur = np.array([probe.latest['/joint_states'].position[
                    list(probe.latest['/joint_states'].name).index(j)] for j in JOINTS])
                steps = cur + (goal - cur) * np.linspace(0.1, 0.8, H)[:, None]
                msg.positions = steps.ravel().tolist()
                msg.gripper = [0.25 * k] * H
                chunks.publish(msg)
                sent.append(msg)
                probe.spin_for(0.1)
    finally:
        probe.close()
        procs.stop()
    return bag, sent


def test_a_recorded_run_converts_matches_the_bag_and_trains(recorded, tmp_path):
    bag, sent = recorded
    out = tmp_path / 'ds'
    # (a long gap limit: a stalled sim on a loaded machine must not split these episodes)
    r = _cli('dataset', 'from-bag', str(bag), '--robot', 'arm7', '--out', str(out),
             '--episode-gap', '30')
    assert r.returncode == 0, r.stderr[-3000:]
    assert '2 episodes written' in r.stdout
    ds = Dataset(str(out))
    assert [m['tasks'] for m in ds.episodes] == [[t] for t in INSTRUCTIONS]
    assert ds.fps == 20

    msgs = list(read_bag(str(bag)))
    js = [(m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec, m.msg)
          for m in msgs if m.topic == '/joint_states']
    said = [m.stamp_ns for m in msgs if m.topic == '/instruction']
    assert len(said) == 2
    for i, meta in enumerate(ds.episodes):
        ep = ds.load(i, images=True)
        n = meta['length']
        grid = meta['start_ns'] + np.arange(n) * 50_000_000
        # the episode lies inside its instruction's span and runs to its end
        assert grid[0] >= said[i]
        end = said[1] if i == 0 else js[-1][0] + 1
        assert grid[-1] < end
        last_js = max(t for t, _ in js if t < end)
        assert grid[-1] + 50_000_000 > last_js
        assert n > 25  # ~2 s at 20 fps
        # hold-last on header stamps: each frame is the newest joint state at its time
        state = ep.arrays['observation.state']
        for k in range(0, n, 7):
            t, msg = max(((t, m) for t, m in js if t <= grid[k]), key=lambda x: x[0])
            q = [msg.position[list(msg.name).index(j)] for j in JOINTS]
            assert np.allclose(state[k, :7], q, atol=1e-6)
        # actions are the step of the newest chunk that holds at each frame
        stamps = np.array([c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in sent])
        for k in range(0, n, 5):
            c = sent[int(np.searchsorted(stamps, grid[k], side='right')) - 1]
            j = min(int((grid[k] - stamps[np.searchsorted(stamps, grid[k], 'right') - 1])
                        // 50_000_000), H - 1)
            want = np.reshape(c.positions, (H, 7))[j]
            assert np.allclose(ep.arrays['action'][k, :7], want, atol=1e-5)
            assert ep.arrays['action'][k, 7] == pytest.approx(0.25 * i)
        assert ep.arrays['observation.images.camera'].shape == (n, 128, 128, 3)
    # the arm moved on the first instruction: the dataset shows it
    first = ds.load(0).arrays['observation.state']
    assert np.abs(first[-1, :7] - first[0, :7]).max() > 0.05

    ck = tmp_path / 'ck'
    r = _cli('train', 'motor', '--expert', 'flow', '--data', str(out), '--out', str(ck),
             '--d-model', '32', '--batch-size', '16', '--steps', '10', '--val-every', '10',
             '--threads', '1')
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((ck / 'training.json').read_text())['history'][-1]['step'] == 10


def test_a_bag_without_the_needed_topics_is_a_clear_error(tmp_path):
    bag = tmp_path / 'states_only.mcap'
    with McapRecorder(str(bag), handle_signals=False) as rec:
        for k in range(5):
            m = JointState(name=JOINTS + ['finger_left_joint'], position=[0.0] * 8)
            m.header.stamp.sec = 100 + k
            rec.write('/joint_states', m, stamp_ns=(100 + k) * 10**9)
    r = _cli('dataset', 'from-bag', str(bag), '--out', str(tmp_path / 'ds'))
    assert r.returncode == 2
    assert 'the bag lacks' in r.stderr and '/action_chunk' in r.stderr
    assert '/instruction' in r.stderr and '/camera/image_raw' in r.stderr
    assert not (tmp_path / 'ds').exists()
    from hybrid_vla_ros.data.bag_dataset import bags_to_dataset
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    with pytest.raises(FileNotFoundError, match='does not exist'):
        bags_to_dataset([str(tmp_path / 'nope.mcap')], str(tmp_path / 'ds'),
                        load_dataset_spec('arm7'))


def test_the_robot_config_maps_topics_and_features(tmp_path):
    """A robot YAML's `dataset` section renames topics/features; bad keys name themselves."""
    import yaml

    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    from hybrid_vla_ros.robot_config import ConfigError, config_path

    spec = load_dataset_spec('arm7')  # no section: defaults from the robot's own topics
    assert spec.topic('joint_states') == '/joint_states' and spec.fps == 20
    assert spec.state_names[-1] == 'gripper' and spec.camera_feature.endswith('.camera')
    data = yaml.safe_load(open(config_path('arm7')))
    data['/**']['ros__parameters']['urdf'] = 'arm7.urdf.xacro'
    data['dataset'] = {'ros__parameters': {
        'fps': 30, 'camera_feature': 'observation.images.wrist',
        'topics': {'joint_states': '/my_arm/joint_states', 'camera': 'wrist/image_raw'}}}
    path = tmp_path / 'my_arm.yaml'
    path.write_text(yaml.safe_dump(data))
    spec = load_dataset_spec(str(path))
    assert spec.fps == 30 and spec.camera_feature == 'observation.images.wrist'
    assert spec.topic('joint_states') == '/my_arm/joint_states'
    assert spec.topic('camera') == 'wrist/image_raw'
    assert spec.topic('action_chunk') == 'action_chunk'  # the rest keep their defaults
    data['dataset']['ros__parameters']['topics']['lidar'] = '/scan'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="dataset.topics.lidar' is unknown"):
        load_dataset_spec(str(path))
    del data['dataset']['ros__parameters']['topics']['lidar']
    data['dataset']['ros__parameters']['fps'] = 'fast'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="dataset.fps' = 'fast'"):
        load_dataset_spec(str(path))


def test_a_plan_on_subgoals_starts_an_episode_without_an_instruction_topic(tmp_path):
    """A graph driven by ExecuteInstruction goals: the plan's instruction is the task."""
    from builtin_interfaces.msg import Duration

    from hybrid_vla_msgs.msg import SubGoalList

    bag = tmp_path / 'action_driven.mcap'
    t0 = 1_700_000_000 * 10**9
    with McapRecorder(str(bag), handle_signals=False) as rec:
        for k in range(100):  # 1 s of joint states at 100 Hz
            t = t0 + k * 10_000_000
            m = JointState(name=JOINTS + ['finger_left_joint'],
                           position=[0.01 * k] * 7 + [0.04])
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(t, 10**9)
            rec.write('/joint_states', m, t)
            if k % 5 == 0:
                c = ActionChunk(expert='flow', joint_names=JOINTS, horizon=2,
                                step=Duration(nanosec=50_000_000))
                c.positions, c.gripper = [0.5] * 14, [1.0, 1.0]
                c.header.stamp.sec, c.header.stamp.nanosec = divmod(t, 10**9)
                rec.write('/action_chunk', c, t)
            if k in (10, 60):  # the plan, then the plan dropped (empty instruction)
                p = SubGoalList(instruction='stack the cubes' if k == 10 else '')
                p.header.stamp.sec, p.header.stamp.nanosec = divmod(t, 10**9)
                rec.write('/subgoals', p, t)
    out = tmp_path / 'ds'
    r = _cli('dataset', 'from-bag', str(bag), '--out', str(out), '--no-images')
    assert r.returncode == 0, r.stderr[-2000:]
    ds = Dataset(str(out))
    assert len(ds) == 1 and ds.episodes[0]['tasks'] == ['stack the cubes']
    # from the plan (t0 + 100 ms) to the last joint state before it was dropped (t0 + 590 ms)
    assert ds.episodes[0]['start_ns'] == t0 + 100_000_000
    assert ds.episodes[0]['length'] == 10
    ep = ds.load(0)
    assert np.allclose(ep.arrays['observation.state'][:, 0], 0.1 + 0.05 * np.arange(10))
    assert np.allclose(ep.arrays['action'][:, 0], 0.5) and np.allclose(ep.arrays['action'][:, 7],
                                                                      1.0)
    assert np.allclose(ep.arrays['observation.state'][:, 7], 0.0)  # fingers open: 0
    # a 2 s hole in the joint states (> episode_gap) splits the episode in two
    gap = tmp_path / 'gap.mcap'
    with McapRecorder(str(gap), handle_signals=False) as rec:
        rec.write('/instruction', String(data='reach'), t0)
        for k in list(range(0, 50)) + list(range(250, 300)):
            t = t0 + k * 10_000_000
            m = JointState(name=JOINTS + ['finger_left_joint'], position=[0.0] * 8)
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(t, 10**9)
            rec.write('/joint_states', m, t)
            c = ActionChunk(expert='flow', joint_names=JOINTS, horizon=1,
                            step=Duration(nanosec=50_000_000))
            c.positions, c.gripper = [0.1] * 7, [0.0]
            c.header.stamp.sec, c.header.stamp.nanosec = divmod(t, 10**9)
            rec.write('/action_chunk', c, t)
    r = _cli('dataset', 'from-bag', str(gap), '--out', str(tmp_path / 'g'), '--no-images')
    assert r.returncode == 0, r.stderr[-2000:]
    ds = Dataset(str(tmp_path / 'g'))
    assert [m['tasks'] for m in ds.episodes] == [['reach'], ['reach']]
    assert [m['length'] for m in ds.episodes] == [10, 10]
    assert ds.episodes[1]['start_ns'] == t0 + 2_500_000_000
