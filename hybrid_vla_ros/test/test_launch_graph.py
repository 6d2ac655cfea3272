"""The graph description, arm.launch.py and the pip-only launcher."""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hybrid_vla_ros.bringup.graph import (
    STACK_NODES,
    MissingPackagesError,
    arm_graph,
    check_packages,
    recorder_spec,
)
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses, node_command
from hybrid_vla_ros.data.bag_reader import read_bag

LAUNCH_FILE = os.path.join(os.path.dirname(__file__), '..', 'launch', 'arm.launch.py')


def test_sim_graph_has_the_plant_and_every_level():
    specs = arm_graph(robot='arm7', hardware='sim')
    ours = [s for s in specs if not s.ros_install_only]
    assert [s.name for s in ours] == ['sim_arm', *STACK_NODES]
    assert all(s.parameter_files and s.parameter_files[0].endswith('arm7.yaml') for s in ours)
    # rviz's robot model and TF tree: robot_state_publisher + the camera frame (ROS install)
    assert {s.executable for s in specs if s.ros_install_only} == {
        'robot_state_publisher', 'static_transform_publisher'}


def test_mock_graph_uses_ros2_control_and_marks_it_ros_only():
    specs = arm_graph(hardware='mock', rviz=True)
    ros_only = {s.executable for s in specs if s.ros_install_only}
    assert {'robot_state_publisher', 'ros2_control_node', 'spawner', 'rviz2',
            'static_transform_publisher'} == ros_only
    cm = next(s for s in specs if s.executable == 'ros2_control_node')
    assert cm.parameter_files[0].endswith('arm7_controllers.yaml')
    assert os.path.isfile(cm.parameter_files[0])
    spawned = [s.arguments[0] for s in specs if s.executable == 'spawner']
    assert 'forward_position_controller' in spawned and 'joint_state_broadcaster' in spawned
    assert 'sim_arm' not in [s.name for s in specs]
    # ... but the scene camera posed by /joint_states (test_scene_mirror_graph.py)
    assert [s.executable for s in specs if s.name == 'scene_camera'] == ['scene_camera']


@pytest.mark.parametrize('by_path', [False, True])
def test_another_arm_gets_its_own_description_controllers_rviz_and_camera(by_path):
    from hybrid_vla_ros.robot import load_robot
    from hybrid_vla_ros.robot_config import config_path
    robot = config_path('arm6') if by_path else 'arm6'
    model = load_robot('arm6')
    specs = {s.name: s for s in arm_graph(robot=robot, hardware='mock', rviz=True)}
    ours = [s for s in specs.values() if s.module is not None]
    assert all(os.path.samefile(s.parameter_files[0], config_path('arm6')) for s in ours)
    assert all(os.path.samefile(s.parameters['robot_config'], config_path('arm6'))
               for s in ours)
    kind, path = specs['robot_state_publisher'].parameters['robot_description']
    assert kind == 'xacro' and os.path.basename(path) == 'arm6.urdf.xacro'
    assert os.path.samefile(path, model.urdf_file)
    cm = specs['controller_manager']
    assert os.path.basename(cm.parameter_files[0]) == 'arm6_controllers.yaml'
    assert os.path.isfile(cm.parameter_files[0])
    rviz = specs['rviz2'].arguments
    assert os.path.basename(rviz[1]) == 'arm6.rviz' and os.path.isfile(rviz[1])
    tf = dict(zip(specs['scene_camera_tf'].arguments[::2],
                  specs['scene_camera_tf'].arguments[1::2]))
    assert tf['--frame-id'] == 'arm6_base'


def test_a_bad_robot_stops_the_launch_before_anything_starts(tmp_path):
    from hybrid_vla_ros.robot_config import ConfigError, config_path
    bad = tmp_path / 'bad.yaml'
    bad.write_text(open(config_path('arm6')).read().replace('wrist_3_joint]', 'wrist_9_joint]'))
    with pytest.raises(ConfigError, match=r"bad.yaml: key '/\*\*.joint_names'.*wrist_9_joint"):
        arm_graph(robot=str(bad))


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
    # the robot YAML with its node sections under /left/ (see test_graph_parameters.py)
    assert os.path.basename(files[0]).startswith('arm7_left_')
    # overrides come last, node-specific, so they win over the robot YAML's motor_policy section
    import yaml
    with open(files[-1]) as f:
        assert yaml.safe_load(f) == {'/left/motor_policy': {'ros__parameters': {
            'device': 'cuda', 'rate': 50.0, 'robot_config': spec.parameters['robot_config']}}}
    assert os.path.isabs(spec.parameters['robot_config'])
    assert spec.parameters['robot_config'].endswith('arm7.yaml')


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


# ------------------------------------------------------------- what rviz needs; packages
def test_sim_graph_publishes_the_robot_model_and_the_camera_frame_of_the_sim():
    from hybrid_vla_ros.robot_config import load_robot_config
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.description import xacro_path
    from hybrid_vla_ros.sim.kinematics import mat_to_quat
    cfg = load_robot_config('arm7')
    for hardware in ('sim', 'mock'):
        specs = {s.name: s for s in arm_graph(hardware=hardware)}
        kind, path = specs['robot_state_publisher'].parameters['robot_description']
        # the very xacro the sim (and the controller manager's description) is built from
        assert kind == 'xacro' and os.path.samefile(path, xacro_path(f'urdf/{cfg.urdf}'))
        tf = specs['scene_camera_tf']
        args = dict(zip(tf.arguments[::2], tf.arguments[1::2]))
        sim = ArmSim()
        try:
            cam = sim.camera_info()
        finally:
            sim.close()
        assert args['--frame-id'] == cfg.base_frame
        assert args['--child-frame-id'] == cam['frame_id']   # what the images are stamped with
        xyz = [float(args[k]) for k in ('--x', '--y', '--z')]
        q = np.array([float(args[k]) for k in ('--qx', '--qy', '--qz', '--qw')])
        assert np.allclose(xyz, cam['T_base_camera'][:3, 3], atol=1e-5)
        q_sim = mat_to_quat(cam['T_base_camera'][:3, :3])
        assert min(np.abs(q - q_sim).max(), np.abs(q + q_sim).max()) < 1e-5


def test_a_missing_rviz_is_skipped_and_a_missing_required_package_starts_nothing():
    specs = arm_graph(hardware='sim', rviz=True)
    start, warnings = check_packages(specs, lambda p: p != 'rviz2')
    assert [s.name for s in start] == [s.name for s in specs if s.name != 'rviz2']
    assert warnings == ['rviz2 not found: rviz2 is skipped (optional)']
    with pytest.raises(MissingPackagesError, match='robot_state_publisher.*nothing was started'):
        check_packages(specs, lambda p: p not in ('rviz2', 'robot_state_publisher'))


def test_mock_spawners_start_one_after_the_other():
    specs = [s for s in arm_graph(hardware='mock') if s.executable == 'spawner']
    assert [s.arguments[0] for s in specs] == ['joint_state_broadcaster',
                                               'forward_position_controller',
                                               'gripper_controller',
                                               'joint_trajectory_controller']
    assert [s.after for s in specs] == [None] + [s.name for s in specs[:-1]]
    assert '--inactive' in specs[-1].arguments
    cm = next(s for s in arm_graph(hardware='mock') if s.executable == 'ros2_control_node')
    assert cm.remappings == (('~/robot_description', '/robot_description'),)


def test_the_pip_launcher_says_what_it_skips():
    logs = []
    specs = [s for s in arm_graph(hardware='sim', rviz=True) if s.ros_install_only]
    GraphProcesses(specs, log=logs.append).start()
    assert logs == [f'[launch] skipping {s.package}/{s.executable}: needs a ROS 2 install'
                    for s in specs]
    assert {s.package for s in specs} == {'robot_state_publisher', 'tf2_ros', 'rviz2'}


# ------------------------------------------------ arm.launch.py's own code (stand-in launch)
def test_arm_launch_py_checks_packages_before_it_starts_anything(monkeypatch):
    from launch_standins import Node, launch_actions, load_arm_launch
    launch_file = load_arm_launch(monkeypatch, lambda p: p != 'robot_state_publisher')
    with pytest.raises(MissingPackagesError, match='robot_state_publisher'):
        launch_actions(launch_file, hardware='sim', rviz='true')
    assert Node.created == 0, 'no node action may exist when the launch fails'
    # without rviz2: every other node, and a warning
    launch_file = load_arm_launch(monkeypatch, lambda p: p != 'rviz2')
    _, actions = launch_actions(launch_file, hardware='sim', rviz='true')
    names = [a.name for a in actions if isinstance(a, Node)]
    assert 'rviz2' not in names and {'sim_arm', 'robot_state_publisher', 'scene_camera_tf',
                                     'wait_ready', *STACK_NODES} == set(names)
    logs = [a.kwargs['msg'] for a in actions if type(a).__name__ == 'LogInfo']
    assert logs == ['[arm.launch.py] rviz2 not found: rviz2 is skipped (optional)']
    # a namespace is always given: launch_ros then writes dict parameters node-specific
    assert all(isinstance(a.kwargs['namespace'], str) for a in actions if isinstance(a, Node))


def test_arm_launch_py_starts_each_spawner_when_the_previous_one_exited(monkeypatch):
    from launch_standins import Node, launch_actions, load_arm_launch
    _, actions = launch_actions(load_arm_launch(monkeypatch), hardware='mock')
    started = [a.name for a in actions if isinstance(a, Node)]
    assert 'spawner_joint_state_broadcaster' in started
    handlers = [a.args[0] for a in actions if type(a).__name__ == 'RegisterEventHandler'
                and a.args[0].kwargs['target_action'].name.startswith('spawner_')]
    chain = ['spawner_joint_state_broadcaster']
    for h in handlers:
        assert h.kwargs['target_action'].name == chain[-1]
        ok = h.kwargs['on_exit'](type('Exited', (), {'returncode': 0})(), None)
        assert len(ok) == 1 and isinstance(ok[0], Node)
        failed = h.kwargs['on_exit'](type('Exited', (), {
            'returncode': 1, 'action': type('A', (), {'name': chain[-1]})()})(), None)
        assert type(failed[0]).__name__ == 'LogInfo' and 'is not started' in \
            failed[0].kwargs['msg']
        chain.append(ok[0].name)
    assert chain == ['spawner_joint_state_broadcaster', 'spawner_forward_position_controller',
                     'spawner_gripper_controller', 'spawner_joint_trajectory_controller']
    assert not set(chain[1:]) & set(started)


def test_arm_launch_py_says_graph_ready_when_wait_ready_exits(monkeypatch):
    from launch_standins import Node, launch_actions, load_arm_launch
    _, actions = launch_actions(load_arm_launch(monkeypatch), hardware='sim', namespace='left')
    gate = next(a for a in actions if isinstance(a, Node) and a.name == 'wait_ready')
    assert gate.kwargs['executable'] == 'wait_ready' and gate.kwargs['namespace'] == 'left'
    assert gate.kwargs['arguments'] == ['motor_policy', 'chunk_executor']
    handler = next(a.args[0] for a in actions if type(a).__name__ == 'RegisterEventHandler'
                   and a.args[0].kwargs['target_action'] is gate)
    done = handler.kwargs['on_exit'](type('Exited', (), {'returncode': 0})(), None)
    assert done[0].kwargs['msg'] == \
        '[arm.launch.py] graph ready (motor_policy, chunk_executor)'


def test_wait_ready_exits_once_every_node_is_ready(tmp_path):
    """The gate over real DDS: latched ~/ready statuses published by the test."""
    from ros_harness import RosProbe
    from std_msgs.msg import Bool

    from hybrid_vla_ros.nodes.qos import LATCHED
    log = tmp_path / 'wait_ready.log'
    gate = subprocess.Popen([sys.executable, '-m', 'hybrid_vla_ros.bringup.wait_ready',
                             'motor_policy', 'chunk_executor', '--ros-args', '-r',
                             '__ns:=/left'], stdout=open(log, 'w'), stderr=subprocess.STDOUT)
    probe = RosProbe('ready_publisher')
    try:
        motor = probe.node.create_publisher(Bool, '/left/motor_policy/ready', LATCHED)
        executor = probe.node.create_publisher(Bool, '/left/chunk_executor/ready', LATCHED)
        motor.publish(Bool(data=True))
        executor.publish(Bool(data=False))
        probe.wait_for(lambda: 'chunk_executor not ready' in log.read_text(), 60,
                       'the gate to see both statuses')
        assert gate.poll() is None, 'not every node is ready yet'
        executor.publish(Bool(data=True))
        probe.wait_for(lambda: gate.poll() is not None, 60, 'the gate to exit')
        assert gate.returncode == 0
        assert 'graph ready (motor_policy, chunk_executor)' in log.read_text()
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()
        probe.close()
    # nobody ready: exit 1 after the timeout, naming the nodes
    r = subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.bringup.wait_ready',
                        'motor_policy', '--timeout', '2', '--ros-args', '-r', '__ns:=/nobody'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and 'not ready after 2 s: motor_policy' in r.stdout
