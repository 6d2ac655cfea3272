"""sim_arm over real DDS: a separate process, commanded like ros2_control's controllers."""
import numpy as np
import pytest
from ros_harness import RosProbe, start_node, stop_node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from hybrid_vla_msgs.srv import SetTask
from hybrid_vla_ros.nodes.qos import COMMAND, SENSOR
from hybrid_vla_ros.sim.description import joint_limits, urdf_string

JOINTS = [f'joint_{i}' for i in range(1, 8)]
TOL = 0.01  # rad


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    log = tmp_path_factory.mktemp('sim') / 'sim_arm.log'
    proc = start_node('hybrid_vla_ros.nodes.sim_arm', '-p', 'task:=reach', '-p', 'seed:=3',
                      log_path=str(log))
    probe = RosProbe()
    probe.subscribe(JointState, '/joint_states', SENSOR)
    probe.subscribe(Image, 'camera/image_raw', SENSOR)
    probe.pub = probe.node.create_publisher(Float64MultiArray,
                                            '/forward_position_controller/commands', COMMAND)
    probe.traj = probe.node.create_publisher(
        JointTrajectory, '/joint_trajectory_controller/joint_trajectory', COMMAND)
    probe.wait_for(lambda: '/joint_states' in probe.latest, 30, 'first /joint_states')
    yield probe
    probe.close()
    assert stop_node(proc) == 0, log.read_text()


def arm(probe):
    js = probe.latest['/joint_states']
    return np.array([js.position[list(js.name).index(j)] for j in JOINTS])


def command(probe, q):
    probe.pub.publish(Float64MultiArray(data=[float(v) for v in q]))


def test_joint_states_are_complete_and_stamped(sim):
    js = sim.latest['/joint_states']
    assert set(JOINTS) <= set(js.name)
    assert {'finger_left_joint', 'finger_right_joint'} <= set(js.name)
    assert len(js.position) == len(js.name) == len(js.velocity)
    assert js.header.stamp.sec > 0


def test_forward_command_moves_arm_to_target(sim):
    target = arm(sim) + np.array([0.2, -0.15, 0.1, 0.2, -0.1, 0.15, 0.3])
    sim.wait_for(lambda: np.max(np.abs(arm(sim) - target)) < TOL, 20,
                 'arm at the commanded position', every=lambda: command(sim, target))


def test_bad_commands_are_rejected_and_arm_holds(sim):
    hold = arm(sim)
    for bad in ([float('nan')] * 7, [0.1] * 6, [0.0] * 8, [0.1, 0.2, float('inf'), 0, 0, 0, 0]):
        sim.pub.publish(Float64MultiArray(data=bad))
    sim.spin_for(1.0)
    assert np.max(np.abs(arm(sim) - hold)) < TOL


def test_out_of_limit_command_is_clamped(sim):
    limits = joint_limits(urdf_string())
    target = arm(sim)
    target[0] = 100.0  # far above joint_1's upper limit
    upper = limits['joint_1']['upper']
    sim.wait_for(lambda: abs(arm(sim)[0] - upper) < TOL, 20, 'joint_1 at its upper limit',
                 every=lambda: command(sim, target))
    sim.spin_for(0.5)
    assert arm(sim)[0] <= upper + TOL


def test_trajectory_is_followed_to_its_last_point(sim):
    start = arm(sim)
    goal = np.clip(start * 0.5, -1.0, 1.0)
    msg = JointTrajectory(joint_names=list(reversed(JOINTS)))  # any order, like the JTC
    for k, frac in enumerate((0.5, 1.0)):
        pt = JointTrajectoryPoint(positions=list(reversed((start + frac * (goal - start))
                                                          .tolist())))
        pt.time_from_start.sec, pt.time_from_start.nanosec = 0, int(4e8 * (k + 1))
        msg.points.append(pt)
    sim.traj.publish(msg)
    sim.wait_for(lambda: np.max(np.abs(arm(sim) - goal)) < TOL, 20, 'trajectory end point')


def test_camera_publishes_rgb_images(sim):
    sim.wait_for(lambda: 'camera/image_raw' in sim.latest, 10, 'a camera image')
    img = sim.latest['camera/image_raw']
    assert (img.width, img.height, img.encoding) == (128, 128, 'rgb8')
    assert len(img.data) == img.step * img.height


def test_set_task_service_resets_scene(sim):
    client = sim.node.create_client(SetTask, '/sim_arm/set_task')
    assert client.wait_for_service(timeout_sec=10)
    fut = client.call_async(SetTask.Request(task='pick_place', seed=7))
    sim.wait_for(fut.done, 10, 'set_task response')
    res = fut.result()
    assert res.success, res.message
    assert res.instruction
    fut = client.call_async(SetTask.Request(task='no_such_task', seed=1))
    sim.wait_for(fut.done, 10, 'set_task response')
    assert not fut.result().success
