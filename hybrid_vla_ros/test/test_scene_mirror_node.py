"""scene_camera (nodes/scene_camera.py) over real DDS, started exactly as hardware:=mock does.

A separate process plays ros2_control's joint_state_broadcaster (``/joint_states`` at 100 Hz,
a known trajectory q(t) of its stamps); the mirror must publish camera frames stamped with those
joint states, a tool pose equal to the FK of the joint state of its stamp, survive garbage, and
publish neither joint states nor commands.

Run as a script, this file is that broadcaster::

    python test_scene_mirror_node.py [--rate 100] [--still | --mock]

``--mock`` plays mock_components' GenericSystem instead (what test_scene_mirror_graph.py needs
without ros2_control): the state is the last forward/gripper command, starting at the URDF's
initial values.
"""
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ARM = [f'joint_{i}' for i in range(1, 8)]
NAMES = ARM + ['finger_left_joint', 'finger_right_joint']


def home_q():
    from hybrid_vla_ros.sim.description import home_pose, urdf_string
    h = home_pose(urdf_string())
    return np.array([h[j] for j in ARM])


def expected(stamp_ns: int, home, still=False):
    """The broadcaster's joint positions (9, NAMES order) at a stamp (integer nanoseconds)."""
    if still:
        return np.concatenate([home, [0.04, 0.04]])
    t = (stamp_ns % 10**12) * 1e-9  # keep the phase precise
    q = home + 0.3 * np.sin(2 * math.pi * 0.25 * t + 0.5 * np.arange(7))
    f = 0.02 + 0.015 * math.sin(2 * math.pi * 0.5 * t)
    return np.concatenate([q, [f, f]])


def broadcast(rate=100.0, still=False, mock=False):
    """The fake joint_state_broadcaster (own process), until SIGINT/SIGTERM."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from hybrid_vla_ros.nodes.qos import COMMAND, SENSOR
    rclpy.init()
    node = rclpy.create_node('joint_state_broadcaster')
    pub = node.create_publisher(JointState, '/joint_states', SENSOR)
    home = home_q()
    state = np.concatenate([home, [0.04, 0.04]])

    def on_arm(msg):
        if len(msg.data) == 7 and np.all(np.isfinite(msg.data)):
            state[:7] = msg.data

    def on_gripper(msg):
        if len(msg.data) == 1 and np.isfinite(msg.data[0]):
            state[7:] = msg.data[0]
    if mock:
        node.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                 on_arm, COMMAND)
        node.create_subscription(Float64MultiArray, '/gripper_controller/commands',
                                 on_gripper, COMMAND)

    def tick():
        now = node.get_clock().now()
        msg = JointState(name=NAMES)
        msg.header.stamp = now.to_msg()
        ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        msg.position = (state if mock else expected(ns, home, still)).tolist()
        msg.velocity = [0.0] * len(NAMES)
        pub.publish(msg)
    node.create_timer(1.0 / rate, tick)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def start_broadcaster(log_path, still=False, mock=False):
    cmd = [sys.executable, os.path.join(HERE, 'test_scene_mirror_node.py')]
    if still:
        cmd.append('--still')
    if mock:
        cmd.append('--mock')
    return subprocess.Popen(cmd, stdout=open(log_path, 'w'), stderr=subprocess.STDOUT, cwd=HERE)


def start_scene_camera(log_path, **overrides):
    """The scene camera exactly as ``arm_graph(hardware='mock')`` describes it."""
    from hybrid_vla_ros.bringup.graph import SCENE_CAMERA, arm_graph
    from hybrid_vla_ros.bringup.process_launcher import node_command
    spec = next(s for s in arm_graph(hardware='mock') if s.name == SCENE_CAMERA)
    return subprocess.Popen(node_command(spec, overrides), stdout=open(log_path, 'w'),
                            stderr=subprocess.STDOUT)


if __name__ == '__main__':
    broadcast(rate=float(sys.argv[sys.argv.index('--rate') + 1]) if '--rate' in sys.argv
              else 100.0, still='--still' in sys.argv, mock='--mock' in sys.argv)
    sys.exit(0)

# ----------------------------------------------------------------------------- the tests
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
import pytest  # noqa: E402
from ros_harness import RosProbe, stop_node  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from hybrid_vla_msgs.srv import SetTask  # noqa: E402
from hybrid_vla_ros.nodes.qos import SENSOR  # noqa: E402

GARBAGE_SEC = 7  # stamp of every garbage joint state: no frame may ever carry it
COMMAND_TOPICS = ('/forward_position_controller/commands', '/gripper_controller/commands',
                  '/joint_trajectory_controller/joint_trajectory')


def ns(stamp):
    return stamp.sec * 10**9 + stamp.nanosec


@pytest.fixture(scope='module')
def mirror(tmp_path_factory):
    logs = tmp_path_factory.mktemp('mirror')
    bc = start_broadcaster(logs / 'broadcaster.log')
    proc = start_scene_camera(logs / 'scene_camera.log')
    probe = RosProbe('mirror_probe')
    probe.logs, probe.proc, probe.bc, probe.home = logs, proc, bc, home_q()
    probe.rx = {k: [] for k in ('js', 'img', 'info', 'depth', 'tool', 'status', 'diag')}

    def rec(key):
        return lambda m: probe.rx[key].append((m, time.monotonic()))
    probe.js_all = set()  # every joint state stamp ever seen (frames may straddle a window)

    def on_js(m):
        probe.js_all.add(ns(m.header.stamp))
        probe.rx['js'].append((m, time.monotonic()))
    n = probe.node
    n.create_subscription(JointState, '/joint_states', on_js, SENSOR)
    n.create_subscription(Image, 'camera/image_raw', rec('img'), SENSOR)
    n.create_subscription(CameraInfo, 'camera/camera_info', rec('info'), SENSOR)
    n.create_subscription(Image, 'camera/depth/image_raw', rec('depth'), SENSOR)
    n.create_subscription(PoseStamped, 'ground_truth/tool_pose', rec('tool'), 10)
    n.create_subscription(String, 'ground_truth/task_status', rec('status'), 10)
    n.create_subscription(DiagnosticArray, '/diagnostics', rec('diag'), 10)
    probe.garbage = n.create_publisher(JointState, '/joint_states', SENSOR)
    probe.wait_for(lambda: len(probe.rx['img']) >= 3, 60, 'camera frames from the mirror')
    yield probe
    probe.close()
    code = stop_node(proc)
    stop_node(bc)
    assert code == 0, (logs / 'scene_camera.log').read_text()


def collect(probe, seconds):
    for v in probe.rx.values():
        v.clear()
    probe.spin_for(seconds)
    return probe.rx


def test_frames_are_stamped_with_the_joint_states_they_show(mirror):
    # Loose counts: the machine is shared (load averages of 10 on 2 cores happen); the stamps
    # are what is checked.
    rx = collect(mirror, 3.0)
    n_js = len(rx['js'])
    js = mirror.js_all
    imgs = [(ns(m.header.stamp), t, m) for m, t in rx['img']]
    assert n_js > 60, f'{n_js} joint states in 3 s (broadcaster at 100 Hz)'
    assert len(imgs) >= 6, f'{len(imgs)} frames in 3 s (camera_rate 10 Hz)'
    stamps = [s for s, _, _ in imgs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # each frame carries the stamp of a published joint state (best effort may drop a few at
    # the probe, never at the publisher's side of the story)
    seen = sum(s in js for s in stamps)
    assert seen >= 0.9 * len(stamps), (seen, len(stamps))
    # ... a recent one: the frames follow the arm through the window, they do not lag it
    assert (stamps[-1] - stamps[0]) * 1e-9 > 1.5, 'frame stamps advance with the joint states'
    now_ns = mirror.node.get_clock().now().nanoseconds
    lag = sorted((now_ns - s) * 1e-9 - (time.monotonic() - t) for s, t, _ in imgs)
    assert lag[len(lag) // 2] < 0.5, f'frame stamps lag their arrival by {lag} s'
    img = imgs[-1][2]
    assert (img.width, img.height, img.encoding) == (128, 128, 'rgb8')
    info_stamps = {ns(m.header.stamp) for m, _ in rx['info']}
    depth_stamps = {ns(m.header.stamp) for m, _ in rx['depth']}
    assert info_stamps and info_stamps <= js | set(stamps)
    assert depth_stamps and depth_stamps <= js | set(stamps)


def test_tool_pose_is_the_fk_of_the_joint_state_of_its_stamp(mirror):
    from hybrid_vla_ros.nodes.conversions import robot_kinematics
    kin = robot_kinematics('arm7')  # what the planners use
    rx = collect(mirror, 2.0)
    assert len(rx['tool']) >= 5
    for m, _ in rx['tool']:
        q = expected(ns(m.header.stamp), mirror.home)[:7]
        pos, _quat = kin.fk(q)
        p = m.pose.position
        assert np.allclose([p.x, p.y, p.z], pos, atol=1e-6), (q, pos, p)


def test_garbage_joint_states_are_refused_and_the_mirror_keeps_going(mirror):
    good = expected(0, mirror.home, still=True)
    bad = [
        (NAMES, [float('nan')] * 9),
        (NAMES, [0.0] * 5),                               # wrong size
        (NAMES + ['wrist_camera_joint'], list(good) + [0.0]),  # unknown joint
        (ARM, list(good[:7])),                            # no gripper joint
        (NAMES, [0.0, 99.0] + [0.0] * 7),                 # far outside the limits
    ]
    for v in mirror.rx.values():
        v.clear()
    end = time.monotonic() + 2.5
    k = 0
    while time.monotonic() < end:
        names, pos = bad[k % len(bad)]
        msg = JointState(name=names, position=[float(x) for x in pos])
        msg.header.stamp.sec = GARBAGE_SEC
        mirror.garbage.publish(msg)
        k += 1
        mirror.spin_for(0.01)
    rx = mirror.rx
    assert mirror.proc.poll() is None, 'the mirror died on garbage'
    assert len(rx['img']) >= 5, 'frames keep coming from the good joint states'
    for key in ('img', 'info', 'depth', 'tool'):
        assert all(m.header.stamp.sec != GARBAGE_SEC for m, _ in rx[key]), key
    mirror.wait_for(lambda: any(
        int(dict((kv.key, kv.value) for kv in st.values).get('joint_states_rejected', 0)) > 0
        for m, _ in mirror.rx['diag'] for st in m.status if 'scene mirror' in st.name),
        5, 'rejections counted in /diagnostics')
    log = (mirror.logs / 'scene_camera.log').read_text()
    errors = [line for line in log.splitlines() if 'joint_states ignored' in line]
    assert errors, log
    assert len(errors) <= 6, f'{len(errors)} error lines in ~3 s: not throttled'


def test_mirror_publishes_no_joint_states_and_no_commands(mirror):
    n = mirror.node
    js_pubs = {i.node_name for i in n.get_publishers_info_by_topic('/joint_states')}
    assert 'joint_state_broadcaster' in js_pubs and 'scene_camera' not in js_pubs
    for topic in COMMAND_TOPICS:
        assert not [i for i in n.get_publishers_info_by_topic(topic)
                    if i.node_name == 'scene_camera'], topic
        assert not [i for i in n.get_subscriptions_info_by_topic(topic)
                    if i.node_name == 'scene_camera'], topic
    cam = {i.node_name for i in n.get_publishers_info_by_topic('/camera/image_raw')}
    assert cam == {'scene_camera'}


def test_set_task_moves_the_objects_not_the_arm(mirror):
    client = mirror.node.create_client(SetTask, '/scene_camera/set_task')
    assert client.wait_for_service(timeout_sec=10)
    fut = client.call_async(SetTask.Request(task='reach', seed=5))
    mirror.wait_for(fut.done, 10, 'set_task response')
    res = fut.result()
    assert res.success and res.instruction, res.message
    mirror.rx['status'].clear()
    mirror.rx['tool'].clear()
    mirror.wait_for(lambda: mirror.rx['status'] and mirror.rx['tool'], 10, 'ground truth')
    import json
    status = json.loads(mirror.rx['status'][-1][0].data)
    assert (status['task'], status['seed'], status['mode']) == ('reach', 5, 'mirror')
    from hybrid_vla_ros.nodes.conversions import robot_kinematics
    m = mirror.rx['tool'][-1][0]
    pos, _ = robot_kinematics('arm7').fk(expected(ns(m.header.stamp),
                                                             mirror.home)[:7])
    p = m.pose.position
    assert np.allclose([p.x, p.y, p.z], pos, atol=1e-6), 'the arm stays on its joint states'
    fut = client.call_async(SetTask.Request(task='no_such_task', seed=1))
    mirror.wait_for(fut.done, 10, 'set_task response')
    assert not fut.result().success


def test_a_silent_arm_gives_a_silent_camera(mirror):
    # last test of the module: stops the broadcaster
    assert stop_node(mirror.bc) is not None
    mirror.spin_for(1.5)  # the frame of the last joint state may still be in flight
    rx = collect(mirror, 2.0)
    assert len(rx['img']) == 0, 'no frame claims to be new without a new joint state'
    assert mirror.proc.poll() is None
    mirror.wait_for(lambda: any('no valid joint state for' in st.message
                                for m, _ in mirror.rx['diag'] for st in m.status), 5,
                    'a stale-joint-state warning in /diagnostics')
