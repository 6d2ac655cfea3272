"""Bring up the hybrid VLA stack on one arm.

    ros2 launch hybrid_vla_ros arm.launch.py robot:=arm7 hardware:=sim|mock|real \
        device:=cpu|cuda rviz:=true|false namespace:=<ns>

The node list, parameters and remappings come from ``hybrid_vla_ros.bringup.graph`` — the same
description the pip-only launcher (``hybrid-vla launch arm``) starts. ``hardware:=mock`` starts
robot_state_publisher, ros2_control_node (mock_components) with its controller spawners, and
``scene_camera`` (sim_arm in ``mode: mirror``: the MuJoCo task scene posed by ``/joint_states``,
publishing ``camera/*`` only), so the planners get images without a simulated plant.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import Command, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from hybrid_vla_ros.bringup.graph import arm_graph


def _parameters(spec):
    params = list(spec.parameter_files)
    values = {}
    for key, value in spec.parameters.items():
        if isinstance(value, tuple) and value and value[0] == 'xacro':
            # robot_description: expanded by xacro at launch time, passed as a string.
            values[key] = ParameterValue(Command(['xacro ', value[1]]), value_type=str)
        else:
            values[key] = value
    if values:
        params.append(values)
    return params


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    specs = arm_graph(robot=arg('robot'), hardware=arg('hardware'), device=arg('device'),
                      namespace=arg('namespace'), rviz=arg('rviz').lower() == 'true')
    return [
        Node(package=s.package, executable=s.executable, name=s.name,
             namespace=s.namespace or None, parameters=_parameters(s),
             remappings=list(s.remappings), arguments=list(s.arguments), output='screen',
             emulate_tty=True)
        for s in specs
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('robot', default_value='arm7',
                              description='config/<robot>.yaml and its URDF'),
        DeclareLaunchArgument('hardware', default_value='sim',
                              choices=['sim', 'mock', 'real'],
                              description='sim: MuJoCo sim_arm; mock: ros2_control '
                                          'mock_components + scene_camera (MuJoCo scene '
                                          'mirroring /joint_states); real: your own '
                                          'bring-up and camera'),
        DeclareLaunchArgument('device', default_value='cpu', choices=['cpu', 'cuda'],
                              description='torch device of the motor policy'),
        DeclareLaunchArgument('rviz', default_value='false', choices=['true', 'false']),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the stack nodes and topics'),
        OpaqueFunction(function=_nodes),
    ])
