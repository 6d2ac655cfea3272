"""The node graph of the stack, described once.

``launch/arm.launch.py`` turns these specs into ``launch_ros.actions.Node`` actions; the pip-only
launcher (``hybrid-vla launch arm``) turns the same specs into OS processes. Neither adds nodes,
parameters or remappings of its own, so both bring up the same graph.
"""
from dataclasses import dataclass, field
import os
from typing import Dict, List, Optional, Tuple

from hybrid_vla_ros.robot_config import config_path, load_robot_config

HARDWARE = ('sim', 'mock', 'real')
DEVICES = ('cpu', 'cuda')
# The stack's own nodes, top to bottom (DESIGN.md); each is a console script of this package.
STACK_NODES = ('strategic_planner', 'tactical_planner', 'expert_router', 'motor_policy',
               'chunk_executor')
# hardware:=mock|real have no camera of ours: the scene camera is sim_arm's executable in
# ``mode: mirror`` (no physics, no commands), posed by ros2_control's /joint_states.
SCENE_CAMERA = 'scene_camera'


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph, in the terms of ``launch_ros.actions.Node``."""

    package: str
    executable: str
    name: str
    namespace: str = ''
    parameter_files: Tuple[str, ...] = ()
    parameters: Dict[str, object] = field(default_factory=dict)
    remappings: Tuple[Tuple[str, str], ...] = ()
    arguments: Tuple[str, ...] = ()
    # True for nodes that exist only on a ROS 2 install (rviz2, ros2_control, ...): the pip-only
    # launcher cannot start them and says so instead of failing.
    ros_install_only: bool = False
    # Python module with a ``main()`` for the pip-only launcher (our own nodes only).
    module: Optional[str] = None


# Every topic of the graph, for recording (relative names resolve in the stack's namespace).
GRAPH_TOPICS = (
    ('instruction', 'std_msgs/msg/String'),
    ('subgoals', 'hybrid_vla_msgs/msg/SubGoalList'),
    ('waypoints', 'hybrid_vla_msgs/msg/WaypointArray'),
    ('expert', 'hybrid_vla_msgs/msg/ExpertSelection'),
    ('action_chunk', 'hybrid_vla_msgs/msg/ActionChunk'),
    ('markers', 'visualization_msgs/msg/MarkerArray'),
    ('predicted_path', 'nav_msgs/msg/Path'),
    ('/joint_states', 'sensor_msgs/msg/JointState'),
    ('camera/image_raw', 'sensor_msgs/msg/Image'),
    ('camera/camera_info', 'sensor_msgs/msg/CameraInfo'),
    ('/forward_position_controller/commands', 'std_msgs/msg/Float64MultiArray'),
    ('/gripper_controller/commands', 'std_msgs/msg/Float64MultiArray'),
    ('/joint_trajectory_controller/joint_trajectory', 'trajectory_msgs/msg/JointTrajectory'),
    ('ground_truth/objects', 'visualization_msgs/msg/MarkerArray'),
    ('ground_truth/tool_pose', 'geometry_msgs/msg/PoseStamped'),
    ('/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray'),
)


def recorder_spec(path: str, *, namespace: str = '', topics=GRAPH_TOPICS) -> NodeSpec:
    """A node that records ``topics`` into the MCAP bag ``path`` (``ros2 bag record``'s role)."""
    return NodeSpec(package='hybrid_vla_ros', executable='bag_recorder', name='bag_recorder',
                    namespace=namespace, module='hybrid_vla_ros.data.topic_recorder',
                    arguments=(os.path.abspath(path),) + tuple(f'{t}:{ty}' for t, ty in topics))


def description_share() -> str:
    """share/ folder of hybrid_vla_description (installed), or its source folder."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory('hybrid_vla_description')
    except Exception:  # no ament index (plain source checkout)
        here = os.path.dirname(os.path.abspath(__file__))
        return os.path.normpath(os.path.join(here, '..', '..', '..', 'hybrid_vla_description'))


def arm_graph(*, robot: str = 'arm7', hardware: str = 'sim', device: str = 'cpu',
              namespace: str = '', rviz: bool = False) -> List[NodeSpec]:
    """The nodes ``arm.launch.py robot:=... hardware:=... device:=...`` starts.

    :param robot: name of ``config/<robot>.yaml`` (or a path to such a YAML).
    :param hardware: ``sim`` (our MuJoCo arm), ``mock`` (ros2_control mock_components, plus
        ``scene_camera``: the MuJoCo scene posed by ``/joint_states`` for the camera topics) or
        ``real`` (the user's own ros2_control bring-up and camera are already running).
    :param device: torch device of the motor policy.
    :param namespace: namespace for the stack's nodes and relative topics.
    :param rviz: also start rviz2 with the description package's config.
    """
    if hardware not in HARDWARE:
        raise ValueError(f"hardware:={hardware!r}: expected one of {', '.join(HARDWARE)}")
    if device not in DEVICES:
        raise ValueError(f"device:={device!r}: expected one of {', '.join(DEVICES)}")
    cfg = load_robot_config(robot)
    params_file = config_path(robot)
    share = description_share()
    urdf_xacro = os.path.join(share, 'urdf', cfg.urdf)
    nodes: List[NodeSpec] = []

    def stack_node(executable: str, name: Optional[str] = None, **extra) -> NodeSpec:
        return NodeSpec(package='hybrid_vla_ros', executable=executable,
                        name=name or executable, namespace=namespace,
                        parameter_files=(params_file,),
                        module=f'hybrid_vla_ros.nodes.{executable}', **extra)

    if hardware == 'sim':
        nodes.append(stack_node('sim_arm'))
    elif hardware == 'mock':
        controllers = os.path.join(share, 'config', f'{cfg.robot}_controllers.yaml')
        nodes += [
            NodeSpec(package='robot_state_publisher', executable='robot_state_publisher',
                     name='robot_state_publisher',
                     parameters={'robot_description': ('xacro', urdf_xacro)},
                     ros_install_only=True),
            NodeSpec(package='controller_manager', executable='ros2_control_node',
                     name='controller_manager', parameter_files=(controllers,),
                     remappings=(('~/robot_description', '/robot_description'),),
                     ros_install_only=True),
        ]
        for ctrl, active in (('joint_state_broadcaster', True),
                             ('forward_position_controller', True),
                             ('gripper_controller', True),
                             ('joint_trajectory_controller', False)):
            args = (ctrl, '--controller-manager', '/controller_manager')
            nodes.append(NodeSpec(package='controller_manager', executable='spawner',
                                  name=f'spawner_{ctrl}',
                                  arguments=args + (() if active else ('--inactive',)),
                                  ros_install_only=True))
        # mock_components has no camera: mirror its joint states into the MuJoCo scene
        nodes.append(stack_node('sim_arm', name=SCENE_CAMERA, parameters={'mode': 'mirror'}))
    for executable in STACK_NODES:
        extra = {'parameters': {'device': device}} if executable == 'motor_policy' else {}
        nodes.append(stack_node(executable, **extra))
    if rviz:
        nodes.append(NodeSpec(package='rviz2', executable='rviz2', name='rviz2',
                              namespace=namespace,
                              arguments=('-d', os.path.join(share, 'rviz', f'{cfg.robot}.rviz')),
                              ros_install_only=True))
    return nodes
