"""A node runs any arm described by a URDF + one robot YAML (issue 12), over real DDS.

The robot is the generated 5-joint arm of :mod:`generated_arm` (renamed links, joints and
frames, a prismatic gripper with a mimic joint, a fixed tool frame), in a tmp folder with its
minimal YAML (``urdf`` relative to it). chunk_executor is given only ``robot_config:=`` (what
the launchers pass besides the YAML as parameters file) and must command those 5 joints within
their limits; given a robot whose joint is not in the URDF it must exit non-zero naming the file
and key.
"""
import subprocess
import tempfile

from generated_arm import write_arm
import numpy as np
import pytest
from ros_harness import executor_probe, publish_chunk, start_node, stop_node
from sensor_msgs.msg import JointState

from hybrid_vla_ros.robot import load_robot

ROBOT = load_robot(write_arm(tempfile.mkdtemp(prefix='five_')))
JOINTS = list(ROBOT.joint_names)
LOWER, UPPER, VEL = ROBOT.lower, ROBOT.upper, ROBOT.velocity
GRIPPER, MIMIC = ROBOT.gripper_joint, ROBOT.gripper_mimic[0]
G_LOWER, G_UPPER = ROBOT.gripper_range


def robot_yaml(folder, joints=None) -> str:
    """The generated arm's files in ``folder`` (with other ``joint_names`` if given)."""
    path = write_arm(str(folder))
    if joints is not None:
        text = open(path).read().replace(f"[{', '.join(JOINTS)}]", f"[{', '.join(joints)}]")
        open(path, 'w').write(text)
    return path


def test_the_model_of_the_generated_arm(tmp_path):
    robot = load_robot(robot_yaml(tmp_path))
    assert robot.joint_names == tuple(JOINTS) and robot.state_dim == 6
    assert robot.gripper_joints == (GRIPPER, MIMIC)
    assert np.allclose(robot.lower, LOWER) and np.allclose(robot.upper, UPPER)


@pytest.fixture
def probe():
    p = executor_probe('any_arm_probe')
    yield p
    p.close()


def test_chunk_executor_commands_the_five_joints_of_any_arm_within_limits(probe, tmp_path):
    log = tmp_path / 'exec.log'
    proc = start_node('hybrid_vla_ros.nodes.chunk_executor',
                      '-p', f'robot_config:={robot_yaml(tmp_path)}',
                      '-p', 'resync_tolerance:=0.0', log_path=str(log))
    try:
        probe.wait_for(lambda: probe.chunks.get_subscription_count() > 0 or
                       proc.poll() is not None, 60, 'executor up')
        assert proc.poll() is None, log.read_text()
        q0 = np.zeros(5)
        target = UPPER + 1.0     # beyond every limit: clamped to it
        for k in range(150):     # the plant: echoes the commands (mock_components' role)
            q = probe.arm[-1] if probe.arm else q0
            g = probe.grip[-1] if probe.grip else G_UPPER
            msg = JointState(name=JOINTS + [GRIPPER, MIMIC], position=list(q) + [g, g])
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            probe.js.publish(msg)
            if k % 5 == 0:
                publish_chunk(probe, JOINTS, target, gripper=1.0)
            probe.spin_for(0.01)
        probe.spin_for(0.2)
    finally:
        assert stop_node(proc) == 0, log.read_text()
    out = log.read_text()
    assert 'robot five: 5 joints' in out, out
    arm, grip = np.array(probe.arm), np.array(probe.grip)
    assert arm.ndim == 2 and arm.shape[1] == 5 and len(arm) > 20, out
    assert np.allclose(arm[0], q0), 'the first command is the measured position'
    assert np.all(arm >= LOWER - 1e-9) and np.all(arm <= UPPER + 1e-9)
    assert np.all(np.abs(np.diff(arm, axis=0)) <= 0.9 * VEL * 0.02 + 1e-9)
    assert np.all(arm[-1] > 0.1), 'it moves towards the (clamped) chunk'
    assert np.all((grip >= G_LOWER - 1e-12) & (grip <= G_UPPER + 1e-12))
    assert grip[0] == pytest.approx(G_UPPER) and grip[-1] < G_UPPER - 0.005, \
        'the gripper closes from open (its upper limit) towards its lower limit'


def test_a_node_given_a_bad_robot_exits_naming_the_file_and_key(tmp_path):
    yaml_path = robot_yaml(tmp_path, joints=JOINTS[:4] + ['ghost_joint'])
    log = tmp_path / 'exec.log'
    proc = start_node('hybrid_vla_ros.nodes.chunk_executor', '-p', f'robot_config:={yaml_path}',
                      log_path=str(log))
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        stop_node(proc)
        raise AssertionError('the node kept running with a bad robot: ' +
                             log.read_text()) from None
    out = log.read_text()
    assert code != 0, out
    assert yaml_path in out and "'/**.joint_names'" in out and 'ghost_joint' in out, out
    assert 'Traceback' not in out, 'a configuration error is one clear line'
