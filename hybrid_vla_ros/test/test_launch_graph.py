"""The graph description, arm.launch.py and the pip-only launcher."""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from hybrid_vla_ros.bringup.graph import STACK_NODES, arm_graph, recorder_spec
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses, node_command
from hybrid_vla_ros.data.mcap_recorder import read_bag

LAUNCH_FILE = os.path.join(os.path.dirname(__file__), '..', 'launch', 'arm.launch.py')


def test_sim_graph_has_the_plant_and_every_level():
    specs = arm_graph(robot='arm7', hardware='sim')
    names = [s.name for s in specs]
    assert names == ['sim_arm', *STACK_NODES]
    assert all(s.parameter_files and s.parameter_files[0].endswith('arm7.yaml') for s in specs)
    assert not any(s.ros_install_only for s in specs)


def test_mock_graph_uses_ros2_control_and_marks_it_ros_only():
    specs = arm_graph(hardware='mock', rviz=True)
    ros_only = {s.executable for s in specs if s.ros_install_only}
    assert {'robot_state_publisher', 'ros2_control_node', 'spawner', 'rviz2'} == ros_only
    cm = next(s for s in specs if s.executable == 'ros2_control_node')
    assert cm.parameter_files[0].endswith('arm7_controllers.yaml')
    assert os.path.isfile(cm.parameter_files[0])
    spawned = [s.arguments[0] for s in specs if s.executable == 'spawner']
    assert 'forward_position_controller' in spawned and 'joint_state_broadcaster' in spawned
    assert 'sim_arm' not in [s.name for s in specs]
    # ... but the scene camera mirror of /joint_states (test_scene_mirror_graph.py)
    assert [s.executable for s in specs if s.name == 'scene_camera'] == ['sim_arm']


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="hardware:='gazebo'"):
        arm_graph(hardware='gazebo')
    with pytest.raises(ValueError, match="device:='tpu'"):
        arm_graph(device='tpu')


def test_node_command_carries_params_namespace_and_remaps():
    spec = next(s for s in arm_graph(hardware='sim', namespace='left', device='cuda')
                if s.name == 'motor_policy')
    cmd = node_command(spec, {'rate': 50.0})
    assert cmd[1:3] == ['-m', 'hybrid_vla_ros.nodes.motor_policy']
    joined = ' '.join(cmd)
    assert '__node:=motor_policy' in joined and '__ns:=/left' in joined
    files = [cmd[i + 1] for i, a in enumerate(cmd) if a == '--params-file']
    assert files[0].endswith('arm7.yaml')
    # overrides come last, node-specific, so they win over the robot YAML's motor_policy section
    import yaml
    with open(files[-1]) as f:
        assert yaml.safe_load(f) == {'/left/motor_policy': {'ros__parameters': {
            'device': 'cuda', 'rate': 50.0}}}


@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None,
                    reason='launch_ros is not installable from pip; runs on a ROS 2 install')
def test_arm_launch_py_loads():
    from launch import LaunchContext
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    ld = get_launch_description_from_python_launch_file(LAUNCH_FILE)
    assert {a.name for a in ld.get_launch_arguments()} == {'robot', 'hardware', 'device', 'rviz',
                                                           'namespace'}
    del LaunchContext


def _plant_and_executor(tmp_path):
    specs = [s for s in arm_graph(hardware='sim') if s.name in ('sim_arm', 'chunk_executor')]
    return specs + [recorder_spec(str(tmp_path / 'run.mcap'),
                                  topics=(('/joint_states', 'sensor_msgs/msg/JointState'),))]


def test_launcher_stops_every_child_on_ctrl_c_and_the_bag_survives(tmp_path):
    log = open(tmp_path / 'launch.log', 'w')
    proc = subprocess.Popen(
        [sys.executable, '-c', 'import sys; from hybrid_vla_ros.bringup.process_launcher '
         'import GraphProcesses; from test_launch_graph import _plant_and_executor; '
         'import pathlib; sys.exit(GraphProcesses(_plant_and_executor(pathlib.Path(sys.argv[1]))'
         ').start().spin())', str(tmp_path)],
        cwd=os.path.dirname(__file__), stdout=log, stderr=subprocess.STDOUT)
    bag = tmp_path / 'run.mcap'
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and (not bag.exists() or bag.stat().st_size < 20000):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, (tmp_path / 'launch.log').read_text()
    out = (tmp_path / 'launch.log').read_text()
    assert out.count('started') == 3
    msgs = [m for m in read_bag(str(bag)) if m.topic == '/joint_states']
    assert len(msgs) > 50, out
    pids = [int(line.split('pid ')[1].rstrip(')')) for line in out.splitlines()
            if 'started' in line]
    for pid in pids:
        assert not os.path.exists(f'/proc/{pid}') or \
            open(f'/proc/{pid}/stat').read().split()[2] == 'Z', f'child {pid} still alive'


def test_launcher_reports_a_dead_child_and_stops_the_rest(tmp_path):
    specs = [s for s in arm_graph(hardware='sim') if s.name in ('sim_arm', 'chunk_executor')]
    logs = []
    g = GraphProcesses(specs, log=logs.append, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    g.start()
    try:
        time.sleep(3.0)
        g.procs['chunk_executor'].kill()
        assert g.spin() == 1
    finally:
        g.stop()
    assert any('chunk_executor exited with code' in m for m in logs)
    assert g.procs['sim_arm'].poll() is not None, 'the rest was shut down'
