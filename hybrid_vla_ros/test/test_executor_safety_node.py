"""chunk_executor over real DDS, restarted while the motor keeps publishing.

The probe plays motor policy (chunks whose targets are far from the arm) and plant (joint
states). Until the first joint state nothing may be commanded; from then on every arm and
gripper command moves from the measured position within the URDF's velocity limits (scaled by
the executor's ``velocity_scale``) of the previous command.
"""
import numpy as np
import pytest
from ros_harness import executor_probe, publish_chunk, start_node, stop_node
from sensor_msgs.msg import JointState

from hybrid_vla_ros.robot import load_robot

ROBOT = load_robot()   # the default robot, what the node gets without parameters
JOINTS = list(ROBOT.joint_names)
GRIPPER = ROBOT.gripper_joint
OPEN = ROBOT.gripper_open
LOWER, UPPER, VEL = ROBOT.lower, ROBOT.upper, ROBOT.velocity
RATE, SCALE = 100.0, 0.9
MAX_DT = 2.0 / RATE  # the executor's longest velocity budget per command


@pytest.fixture
def probe(tmp_path):
    p = executor_probe('safety_probe')
    p.log = tmp_path / 'exec.log'
    p.proc = start_node('hybrid_vla_ros.nodes.chunk_executor', '-p', f'rate:={RATE}',
                        '-p', f'velocity_scale:={SCALE}',
                        # no re-sync to the measured position: the probe's plant echoes the
                        # commands with a lag that a loaded machine can stretch past 0.3 rad
                        '-p', 'resync_tolerance:=0.0', log_path=str(p.log))
    yield p
    p.close()
    assert stop_node(p.proc) == 0, p.log.read_text()


def publish_state(p, q, finger):
    msg = JointState(name=JOINTS + [GRIPPER], position=list(q) + [finger])
    msg.header.stamp = p.node.get_clock().now().to_msg()
    p.js.publish(msg)


def test_a_chunk_before_the_first_joint_state_commands_nothing(probe):
    q0 = np.clip(LOWER + 0.2, LOWER, UPPER)   # the arm, far from the chunk's targets
    target = np.clip(UPPER - 0.2, LOWER, UPPER)
    probe.wait_for(lambda: probe.chunks.get_subscription_count() > 0, 30, 'executor up')
    for _ in range(30):                        # 1.5 s of chunks, no joint state
        publish_chunk(probe, JOINTS, target, gripper=1.0)
        probe.spin_for(0.05)
    assert probe.arm == [] and probe.grip == [], 'commanded before any joint state'
    # the plant appears (gripper open) and follows the commands like mock_components;
    # the motor keeps publishing
    for k in range(60):
        publish_state(probe, probe.arm[-1] if probe.arm else q0,
                      probe.grip[-1] if probe.grip else OPEN)
        if k % 5 == 0:
            publish_chunk(probe, JOINTS, target, gripper=1.0)
        probe.spin_for(0.01)
    probe.spin_for(0.2)
    arm, grip = np.array(probe.arm), np.array(probe.grip)
    assert len(arm) > 20 and len(grip) > 20, probe.log.read_text()
    assert np.allclose(arm[0], q0), 'the first command is the measured position'
    assert np.all(arm >= LOWER - 1e-9) and np.all(arm <= UPPER + 1e-9)
    steps = np.abs(np.diff(arm, axis=0))
    assert np.all(steps <= SCALE * VEL * MAX_DT + 1e-9), f'arm step {steps.max(axis=0)}'
    assert np.max(np.abs(arm[-1] - q0)) > 0.05, 'it moves towards the chunk once measured'
    lo, hi = ROBOT.gripper_range
    assert grip[0] == pytest.approx(OPEN)  # from the measured gripper position, not a jump
    assert np.all((grip >= lo - 1e-12) & (grip <= hi + 1e-12))
    assert np.max(np.abs(np.diff(grip))) <= SCALE * ROBOT.gripper_velocity * MAX_DT + 1e-12
    assert abs(grip[-1] - OPEN) > 0.25 * (hi - lo), 'the gripper closes, at its velocity limit'
