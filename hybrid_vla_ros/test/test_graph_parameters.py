"""Both launchers give every node of the graph the same effective parameters.

The pip-only launcher's command line is resolved by rcl itself (an rclpy node built with it).
For ``ros2 launch`` (launch_ros is not installable here) the test applies launch_ros 0.28's
documented rule to the ``Node`` arguments that arm.launch.py builds
(:func:`~hybrid_vla_ros.bringup.graph.launch_node_arguments`): parameter files are passed in
order; a dict becomes a file keyed by the node's full name when the Node has a name and a
namespace, else by ``/**`` (launch_ros ``Node._create_params_file_from_dict``); rcl then
resolves both command lines the same way.
"""
import os
import shutil

import pytest
import rclpy
import yaml

from hybrid_vla_ros.bringup.graph import arm_graph, launch_node_arguments
from hybrid_vla_ros.bringup.process_launcher import ros_arguments
from hybrid_vla_ros.robot_config import config_path


def launch_ros_arguments(spec, tmp_path):
    """The ``--ros-args`` launch_ros would give the Node of arm.launch.py for ``spec``."""
    kw = launch_node_arguments(spec)
    name, ns = kw['name'], kw['namespace']
    args = ['-r', f'__node:={name}']
    if ns is not None:
        ns = '/' + ns.strip('/')
        args += ['-r', f'__ns:={ns}']
    full_name = None if ns is None else (ns.rstrip('/') + '/' + name)
    for i, p in enumerate(kw['parameters']):
        if isinstance(p, dict):
            path = tmp_path / f'launch_params_{name}_{i}.yaml'
            path.write_text(yaml.safe_dump({full_name or '/**': {'ros__parameters': p}}))
            p = str(path)
        args += ['--params-file', p]
    for src, dst in kw['remappings']:
        args += ['-r', f'{src}:={dst}']
    return args


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def effective(context, spec, args):
    node = rclpy.create_node(spec.name, namespace=spec.namespace or None, context=context,
                             cli_args=['--ros-args', *args], use_global_arguments=False,
                             start_parameter_services=False,
                             automatically_declare_parameters_from_overrides=True)
    try:
        return {n: p.value for n, p in node._parameters.items() if n != 'use_sim_time'}
    finally:
        node.destroy_node()


@pytest.fixture
def robot_yaml(tmp_path):
    """arm7's YAML whose node sections also set what the graph sets (a user's robot file)."""
    path = tmp_path / 'arm7_local.yaml'
    shutil.copy(config_path('arm7'), path)
    doc = yaml.safe_load(path.read_text())
    doc['motor_policy']['ros__parameters']['device'] = 'cpu'
    doc['scene_camera']['ros__parameters']['limit_tolerance'] = 0.25  # scene_camera's own
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize('hardware,namespace', [('sim', ''), ('mock', ''), ('sim', 'left')])
def test_both_launchers_give_every_node_the_same_parameters(context, robot_yaml, tmp_path,
                                                            hardware, namespace):
    specs = [s for s in arm_graph(robot=robot_yaml, hardware=hardware, device='cuda',
                                  namespace=namespace) if s.module is not None]
    assert len(specs) == 6
    for spec in specs:
        pip = effective(context, spec, ros_arguments(spec))
        ros2_launch = effective(context, spec, launch_ros_arguments(spec, tmp_path))
        assert pip == ros2_launch, spec.name
        assert pip['robot'] == 'arm7' and pip['joint_names'][0] == 'joint_1'
        # the YAML's absolute path: declare_robot's defaults, a relative urdf beside it
        assert pip['robot_config'] == os.path.abspath(robot_yaml)
        if spec.name == 'motor_policy':
            # the launch argument device:=cuda beats the YAML's motor_policy section
            assert pip['device'] == 'cuda' and pip['realtime_priority'] == 60
        if spec.name == 'scene_camera':
            # its own section (no mode of sim_arm any more)
            assert pip['limit_tolerance'] == 0.25 and 'mode' not in pip
        if spec.name == 'strategic_planner':
            assert pip['nice'] == 10   # the node section beats /**


@pytest.mark.parametrize('hardware', ['sim', 'mock'])
def test_both_launchers_agree_for_another_arm(context, tmp_path, hardware):
    specs = [s for s in arm_graph(robot='arm6', hardware=hardware) if s.module is not None]
    for spec in specs:
        pip = effective(context, spec, ros_arguments(spec))
        assert pip == effective(context, spec, launch_ros_arguments(spec, tmp_path)), spec.name
        assert pip['robot'] == 'arm6' and pip['gripper_joint'] == 'jaw_joint'
        assert len(pip['joint_names']) == 6 and 'camera_extrinsics' not in pip
        assert pip['robot_config'] == config_path('arm6')


def test_overrides_of_the_pip_launcher_beat_the_yaml(context, robot_yaml):
    spec = next(s for s in arm_graph(robot=robot_yaml) if s.name == 'motor_policy')
    got = effective(context, spec, ros_arguments(spec, {'rate': 50.0, 'device': 'cuda'}))
    assert got['rate'] == 50.0 and got['device'] == 'cuda'
    assert os.path.isfile(robot_yaml)
