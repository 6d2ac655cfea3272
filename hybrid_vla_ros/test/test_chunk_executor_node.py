"""chunk_executor + sim_arm over real DDS: chunks in, safe controller commands out."""
import numpy as np
import pytest
from ros_harness import RosProbe, start_node, stop_node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray

from hybrid_vla_msgs.msg import ActionChunk
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.robot import load_robot

ROBOT = load_robot()   # the default robot, what both nodes get without parameters
JOINTS = list(ROBOT.joint_names)
LOWER, UPPER = ROBOT.lower, ROBOT.upper


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    d = tmp_path_factory.mktemp('exec')
    procs = [start_node('hybrid_vla_ros.nodes.sim_arm', '-p', 'task:=reach',
                        log_path=str(d / 'sim.log')),
             start_node('hybrid_vla_ros.nodes.chunk_executor', '-p', 'chunk_timeout:=0.3',
                        log_path=str(d / 'exec.log'))]
    probe = RosProbe()
    probe.commands = []
    probe.subscribe(JointState, '/joint_states', SENSOR)
    probe.node.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                   lambda m: probe.commands.append(np.array(m.data)), COMMAND)
    probe.pub = probe.node.create_publisher(ActionChunk, 'action_chunk', COMMAND)
    probe.estop = probe.node.create_publisher(Bool, 'estop', LATCHED)
    probe.wait_for(lambda: '/joint_states' in probe.latest, 30, 'first /joint_states')
    yield probe
    probe.close()
    logs = ''.join((d / f).read_text() for f in ('sim.log', 'exec.log'))
    for p in procs:
        assert stop_node(p) == 0, logs
    probe.logs = logs


def arm(probe):
    js = probe.latest['/joint_states']
    return np.array([js.position[list(js.name).index(j)] for j in JOINTS])


def send_chunk(probe, goal, H=8, step=0.05, positions=None, names=JOINTS):
    msg = ActionChunk(expert='test', joint_names=list(names), horizon=H)
    msg.header.stamp = probe.node.get_clock().now().to_msg()
    msg.step.nanosec = int(step * 1e9)
    msg.positions = positions if positions is not None else np.tile(goal, (H, 1)).ravel().tolist()
    msg.gripper = [0.0] * H
    probe.pub.publish(msg)


def test_chunks_drive_the_arm_and_commands_stay_within_limits(graph):
    goal = np.clip(arm(graph) + 0.3, LOWER, UPPER)
    last = [0.0]

    def stream():
        now = graph.node.get_clock().now().nanoseconds * 1e-9
        if now - last[0] > 0.05:
            send_chunk(graph, goal)
            last[0] = now
    graph.wait_for(lambda: np.max(np.abs(arm(graph) - goal)) < 0.01, 30, 'arm at goal',
                   every=stream)
    cmds = np.array(graph.commands)
    assert len(cmds) > 10
    assert np.all(np.isfinite(cmds))
    assert np.all(cmds >= LOWER - 1e-9) and np.all(cmds <= UPPER + 1e-9)


def test_holds_when_chunks_stop(graph):
    graph.spin_for(0.5)  # chunk_timeout 0.3 s passes
    hold = arm(graph)
    n0 = len(graph.commands)
    graph.spin_for(1.0)
    assert np.max(np.abs(arm(graph) - hold)) < 0.005
    held = np.array(graph.commands[n0:])
    assert len(held) > 20, 'the executor keeps commanding (holding) at its rate'
    assert np.ptp(held, axis=0).max() < 1e-9


def test_garbage_chunks_are_rejected(graph):
    hold = arm(graph)
    n = 8 * ROBOT.n_joints
    for positions, names in (([float('nan')] * n, JOINTS), ([0.0] * (n - 1), JOINTS),
                             ([0.0] * n, JOINTS[:-1] + ['wrist_9']),
                             ([1e6] * n, JOINTS)):
        send_chunk(graph, None, positions=positions, names=names)
    graph.spin_for(1.0)
    # the 1e6 chunk is accepted but clamped to limits and rate-limited; NaN/size/name rejected
    cmds = np.array(graph.commands[-50:])
    assert np.all(np.isfinite(cmds)) and np.all(cmds <= UPPER + 1e-9)
    graph.spin_for(0.5)
    assert np.all(arm(graph) <= UPPER + 0.01)
    assert np.all(np.isfinite(arm(graph)))
    del hold


def test_estop_holds(graph):
    graph.estop.publish(Bool(data=True))
    graph.spin_for(0.3)
    hold = arm(graph)
    for _ in range(10):
        send_chunk(graph, np.clip(hold - 0.3, LOWER, UPPER))
        graph.spin_for(0.05)
    assert np.max(np.abs(arm(graph) - hold)) < 0.005
    graph.estop.publish(Bool(data=False))
