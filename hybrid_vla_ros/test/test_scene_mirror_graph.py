"""hardware:=mock: the graph description starts the scene camera (no sim physics), and
that graph plans and acts over real DDS with a stand-in for mock_components.

ros2_control cannot be installed here; the stand-in does what mock_components' GenericSystem
does with position interfaces (state = last command, from the URDF's initial values) and
publishes /joint_states at 100 Hz like joint_state_broadcaster. Everything else is the mock graph
as the pip-only launcher starts it (ROS-install-only nodes skipped).
"""
import os
import subprocess
import time

import numpy as np
import pytest
import yaml

from hybrid_vla_ros.bringup.graph import SCENE_CAMERA, STACK_NODES, arm_graph
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses, node_command

PICK = ('pick_place', 1000029, 'put the red cube on the blue pad')


def test_mock_graph_has_the_scene_camera_mirror_and_no_sim_physics():
    specs = arm_graph(robot='arm7', hardware='mock', namespace='left')
    names = [s.name for s in specs]
    assert 'sim_arm' not in names
    cams = [s for s in specs if s.name == SCENE_CAMERA]
    assert len(cams) == 1
    cam = cams[0]
    assert (cam.package, cam.executable, cam.module) == (
        'hybrid_vla_ros', 'scene_camera', 'hybrid_vla_ros.nodes.scene_camera')
    assert set(cam.parameters) == {'robot_config'} and not cam.ros_install_only
    assert cam.namespace == 'left'
    # nothing simulates the plant: no sim_arm executable in the graph
    assert 'sim_arm' not in [s.executable for s in specs]
    # ros2_control owns the arm; the mirror comes after it, the stack after the mirror
    assert names.index(SCENE_CAMERA) > names.index('controller_manager')
    assert names[-len(STACK_NODES):] == list(STACK_NODES)
    # the robot YAML's scene_camera section configures it (the sim_arm section does not);
    # the graph is namespaced, so the section is written under the namespace
    with open(cam.parameter_files[0]) as f:
        section = yaml.safe_load(f)[f'/left/{SCENE_CAMERA}']['ros__parameters']
    assert 'realtime_priority' not in section and section['camera_rate'] > 0


def test_sim_and_real_graphs_have_no_mirror():
    assert SCENE_CAMERA not in [s.name for s in arm_graph(hardware='sim')]
    assert [s.name for s in arm_graph(hardware='real')] == list(STACK_NODES)


def test_pip_launcher_runs_the_scene_camera_under_its_own_name():
    cam = next(s for s in arm_graph(hardware='mock') if s.name == SCENE_CAMERA)
    cmd = node_command(cam, {'seed': 4})
    assert cmd[1:3] == ['-m', 'hybrid_vla_ros.nodes.scene_camera']
    assert '__node:=scene_camera' in cmd
    files = [cmd[i + 1] for i, a in enumerate(cmd) if a == '--params-file']
    with open(files[-1]) as f:
        assert yaml.safe_load(f) == {'/scene_camera': {'ros__parameters': {
            'robot_config': cam.parameters['robot_config'], 'seed': 4}}}  # no mode
    skipped = GraphProcesses(arm_graph(hardware='mock')).skipped
    assert {s.executable for s in skipped} == {'robot_state_publisher', 'ros2_control_node',
                                               'spawner', 'static_transform_publisher'}


# ----------------------------------------------------------------------------- real DDS
@pytest.fixture(scope='module')
def mock_graph(tmp_path_factory):
    from geometry_msgs.msg import PoseStamped
    from ros_harness import RosProbe, stop_node
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from test_scene_mirror_node import start_broadcaster
    from visualization_msgs.msg import MarkerArray

    from hybrid_vla_msgs.msg import SubGoalList
    from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR

    logs = tmp_path_factory.mktemp('mock_graph')
    log = open(logs / 'graph.log', 'w')
    mock = start_broadcaster(logs / 'mock_components.log', mock=True)
    graph = GraphProcesses(arm_graph(hardware='mock'),
                           overrides={SCENE_CAMERA: {'task': PICK[0], 'seed': PICK[1]}},
                           log=lambda m: log.write(m + '\n'), stdout=log,
                           stderr=subprocess.STDOUT).start()
    probe = RosProbe('mock_graph_probe')
    probe.logs, probe.graph, probe.commands = logs, graph, []
    keep = probe.subscribe
    keep(JointState, '/joint_states', SENSOR, 'js')
    keep(Image, 'camera/image_raw', SENSOR, 'image')
    keep(SubGoalList, 'subgoals', LATCHED, 'plan')
    keep(MarkerArray, 'ground_truth/objects', 10, 'objects')
    keep(PoseStamped, 'ground_truth/tool_pose', 10, 'tool')
    probe.node.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                   lambda m: probe.commands.append(np.array(m.data)), COMMAND)
    probe.pub_instruction = probe.node.create_publisher(String, 'instruction', COMMAND)
    try:
        yield probe
    finally:
        probe.close()
        graph.stop()
        stop_node(mock)
        log.close()


def _subscribed(probe, topic, node_name):
    return any(i.node_name == node_name
               for i in probe.node.get_subscriptions_info_by_topic(topic))


def test_mock_graph_plans_from_the_mirror_camera_and_moves_the_arm(mock_graph):
    from std_msgs.msg import String
    g = mock_graph
    log = g.logs / 'graph.log'
    g.wait_for(lambda: 'image' in g.latest and 'objects' in g.latest and 'tool' in g.latest
               and _subscribed(g, '/instruction', 'strategic_planner')
               and _subscribed(g, '/subgoals', 'tactical_planner')
               and g.node.count_publishers('/action_chunk') > 0
               and g.graph.failed() is None, 180,
               'the mock graph to come up')
    assert g.graph.failed() is None, log.read_text()
    cube = next(m for m in g.latest['objects'].markers if m.text == 'red cube').pose.position
    cube = np.array([cube.x, cube.y, cube.z])

    def tool():
        p = g.latest['tool'].pose.position
        return np.array([p.x, p.y, p.z])
    start_dist = np.linalg.norm(tool() - cube)
    last = [0.0]

    def instruct():  # until planned (a repeated instruction during its plan is ignored)
        if time.monotonic() - last[0] > 2.0:
            last[0] = time.monotonic()
            g.pub_instruction.publish(String(data=PICK[2]))
    g.wait_for(lambda: 'plan' in g.latest and len(g.latest['plan'].subgoals) > 0, 60,
               'a plan from the mirror camera', every=instruct)
    plan = g.latest['plan']
    assert len(plan.subgoals) >= 5, [(s.skill, s.object) for s in plan.subgoals]
    first = plan.subgoals[0].target_pose.position
    # grounded in the mirror's image: the first target is above the red cube
    assert np.linalg.norm(np.array([first.x, first.y]) - cube[:2]) < 0.02, (first, cube)
    # ... and the graph acts: commands reach the controller topic, the (mock) arm follows
    g.wait_for(lambda: np.linalg.norm(tool() - cube) < start_dist - 0.05, 60,
               'the tool approaching the red cube')
    cmds = np.array(g.commands)
    assert len(cmds) > 20 and np.all(np.isfinite(cmds))
    assert g.graph.failed() is None, log.read_text()
    assert os.path.exists(log)


def test_arm_launch_py_starts_the_scene_camera_for_hardware_mock(monkeypatch):
    """arm.launch.py's translation of the graph, with minimal stand-ins for launch/launch_ros
    (not installable here; test_launch_graph.py loads the real ones on a ROS 2 install)."""
    from launch_standins import Node, launch_actions, load_arm_launch
    ld, actions = launch_actions(load_arm_launch(monkeypatch), hardware='mock')
    nodes = [n.kwargs for n in actions if isinstance(n, Node)]
    by_name = {n['name']: n for n in nodes}
    assert 'sim_arm' not in by_name
    cam = by_name[SCENE_CAMERA]
    assert (cam['package'], cam['executable']) == ('hybrid_vla_ros', 'scene_camera')
    assert cam['parameters'][0].endswith('arm7.yaml')
    assert set(cam['parameters'][-1]) == {'robot_config'}
    assert {'robot_state_publisher', 'controller_manager', *STACK_NODES} <= set(by_name)
    hw = next(a for a in ld.args[0] if a.args and a.args[0] == 'hardware')
    assert 'scene_camera' in hw.kwargs['description']
