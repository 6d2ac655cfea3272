"""Bring up the hybrid VLA stack on one arm.

    ros2 launch hybrid_vla_ros arm.launch.py robot:=NAME|PATH hardware:=sim|mock|real \
        device:=cpu|cuda rviz:=true|false namespace:=<ns>

``robot`` is a robot of the package's config/ (default: the package's default robot) or the
path of a robot YAML (its URDF + ``/**`` section, see hybrid_vla_ros.robot.model). Every node
gets that YAML as its parameters file and ``robot_config:=`` its absolute path;
robot_state_publisher gets its xacro, ros2_control ``<robot>_controllers.yaml`` and rviz
``<robot>.rviz``.

The node list, parameters and remappings come from ``hybrid_vla_ros.bringup.graph`` — the same
description the pip-only launcher (``hybrid-vla launch arm``) starts. ``hardware:=sim`` starts
sim_arm with robot_state_publisher (the same xacro) and the camera's static transform, so rviz
shows the robot, the images and the markers in one TF tree. ``hardware:=mock`` starts
robot_state_publisher, ros2_control_node (mock_components) with its controller spawners (each
after the previous one has exited: ``OnProcessExit``), ``scene_camera`` (its own
node: the MuJoCo task scene posed by ``/joint_states``, publishing ``camera/*`` only; no
physics, no commands) and the camera transform, so the planners get images without a
simulated plant.

Every package the graph needs is looked up before any process starts: a missing one stops the
launch with a message naming it (nothing is left running); a missing rviz2 is skipped with a
warning. Start-up by state: ``wait_ready`` exits once motor_policy and chunk_executor report
``~/ready`` (latched), and its exit logs ``graph ready`` (the pip-only launcher logs the same).
"""
import shlex

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import Command, FindExecutable, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from hybrid_vla_ros.bringup.graph import arm_graph, check_packages, launch_node_arguments
from hybrid_vla_ros.nodes.ready import READY_NODES
from hybrid_vla_ros.robot.model import DEFAULT_ROBOT


def _has_package(name: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        get_package_share_directory(name)
        return True
    except PackageNotFoundError:
        return False


def _node(spec) -> Node:
    kwargs = launch_node_arguments(spec)
    for params in kwargs['parameters']:
        if isinstance(params, dict):
            for key, value in params.items():
                if isinstance(value, tuple) and value and value[0] == 'xacro':
                    # robot_description: expanded by xacro at launch time, passed as a string
                    params[key] = ParameterValue(
                        Command([FindExecutable(name='xacro'), ' ', shlex.quote(value[1])]),
                        value_type=str)
    return Node(**kwargs, output='screen', emulate_tty=True)


def _start_after(target: Node, node: Node, name: str):
    """Start ``node`` once ``target``'s process has exited with code 0."""
    def on_exit(event, context):
        if event.returncode == 0:
            return [node]
        return [LogInfo(msg=f'{event.action.name} exited with code {event.returncode}: '
                            f'{name} is not started')]
    return RegisterEventHandler(OnProcessExit(target_action=target, on_exit=on_exit))


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    specs = arm_graph(robot=arg('robot'), hardware=arg('hardware'), device=arg('device'),
                      namespace=arg('namespace'), rviz=arg('rviz').lower() == 'true')
    specs, warnings = check_packages(specs, _has_package)   # raises before anything starts
    actions = [LogInfo(msg=f'[arm.launch.py] {w}') for w in warnings]
    nodes = {s.name: _node(s) for s in specs}
    for s in specs:
        if s.after is None:
            actions.append(nodes[s.name])
        else:
            actions.append(_start_after(nodes[s.after], nodes[s.name], s.name))
    waited_for = [n for n in READY_NODES if n in nodes]
    if waited_for:
        gate = Node(package='hybrid_vla_ros', executable='wait_ready', name='wait_ready',
                    namespace=arg('namespace'), arguments=waited_for, output='screen')
        actions += [gate, RegisterEventHandler(OnProcessExit(
            target_action=gate, on_exit=lambda event, context: [LogInfo(
                msg=f"[arm.launch.py] graph ready ({', '.join(waited_for)})"
                if event.returncode == 0 else '[arm.launch.py] wait_ready failed')]))]
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('robot', default_value=DEFAULT_ROBOT,
                              description='a robot of config/ (NAME) or a robot YAML (PATH)'),
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
