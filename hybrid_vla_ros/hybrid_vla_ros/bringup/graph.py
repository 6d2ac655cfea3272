"""The node graph of the stack, described once.

``launch/arm.launch.py`` turns these specs into ``launch_ros.actions.Node`` actions (through
:func:`launch_node_arguments`); the pip-only launcher (``hybrid-vla launch arm``) turns the same
specs into OS processes. Neither adds nodes, parameters or remappings of its own, so both bring
up the same graph.

Parameter precedence is the same in both: the robot YAML first (its ``/**`` section, then the
node's own section), then the spec's ``parameters`` (and ``--set`` overrides) as a node-specific
section that comes last and so wins. launch_ros writes a dict of parameters under the node's
full name only when the node's name *and namespace* are given (otherwise under ``/**``, which
the YAML's node section would beat), so :func:`launch_node_arguments` always passes a namespace.
"""
from dataclasses import dataclass, field
import hashlib
import math
import os
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from hybrid_vla_ros.robot.model import DEFAULT_ROBOT, RobotModel, load_robot

HARDWARE = ('sim', 'mock', 'real')
DEVICES = ('cpu', 'cuda')
# The stack's own nodes, top to bottom (docs/architecture.md); each is a console script of
# this package.
STACK_NODES = ('strategic_planner', 'tactical_planner', 'expert_router', 'motor_policy',
               'chunk_executor')
# hardware:=mock has no camera of its own: the scene camera node (its own executable; no
# physics, no commands) renders the MuJoCo scene posed by ros2_control's /joint_states.
SCENE_CAMERA = 'scene_camera'
# The frame our camera images are stamped with (sim_arm and scene_camera); its pose in the base
# frame is the robot's ``camera_extrinsics`` (the YAML's ``/**``, else the simulator's default).
CAMERA_FRAME = 'scene_camera_optical_frame'


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
    # The graph works without it (rviz2): when its package is missing it is skipped with a
    # warning; a missing package of any other node stops the launch before anything starts.
    optional: bool = False
    # Name of the node whose process must have exited (successfully) before this one starts
    # (controller spawners, in ros2_control_demos' order; launch: OnProcessExit).
    after: Optional[str] = None


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
    ('ground_truth/task_status', 'std_msgs/msg/String'),   # sim resets split bag episodes
)


class MissingPackagesError(RuntimeError):
    """Packages that required nodes of the graph need are not installed."""


def check_packages(specs: Sequence[NodeSpec], has_package: Callable[[str], bool]
                   ) -> Tuple[List[NodeSpec], List[str]]:
    """The specs to start and warnings, decided before anything starts (a launch that failed
    half-way would leave the nodes it had started running).

    :param has_package: whether a package is installed (on a ROS install:
        ``ament_index_python.packages.get_package_share_directory`` succeeds).
    :raises MissingPackagesError: a required node's package is missing (all are named).
    """
    found = {p: bool(has_package(p)) for p in sorted({s.package for s in specs})}
    missing = sorted({s.package for s in specs if not found[s.package] and not s.optional})
    if missing:
        users = [f'{s.package}/{s.executable} ({s.name})' for s in specs
                 if s.package in missing]
        raise MissingPackagesError(
            f"package(s) {', '.join(missing)} not found, needed by {', '.join(users)}: "
            'install them (e.g. apt install ros-$ROS_DISTRO-<package>); nothing was started')
    start = [s for s in specs if found[s.package]]
    names = {s.name for s in start}
    warnings = [f'{s.package} not found: {s.name} is skipped (optional)'
                for s in specs if not found[s.package]]
    for s in start:
        if s.after is not None and s.after not in names:
            raise MissingPackagesError(f'{s.name} waits for {s.after}, which is not started')
    return start, warnings


def namespaced_parameters_file(params_file: str, namespace: str) -> str:
    """``params_file`` for nodes in ``namespace``: a node section ``name:`` of a ROS parameter
    YAML only matches the node ``/name`` (root namespace), so for a namespaced graph its
    sections are written under ``/<namespace>/name`` (``/**`` stays) into a generated copy."""
    ns = namespace.strip('/')
    if not ns:
        return params_file
    with open(params_file, 'rb') as f:
        raw = f.read()
    doc = yaml.safe_load(raw) or {}
    out = {k if str(k).startswith('/') else f'/{ns}/{k}': v for k, v in doc.items()}
    folder = os.path.join(tempfile.gettempdir(), 'hybrid_vla_params')
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256(raw + ns.encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(params_file))[0]
    path = os.path.join(folder, f"{stem}_{ns.replace('/', '_')}_{digest}.yaml")
    if not os.path.isfile(path):
        tmp = f'{path}.{os.getpid()}'
        with open(tmp, 'w') as f:
            yaml.safe_dump(out, f, sort_keys=False)
        os.replace(tmp, path)   # atomic: concurrent launches see a whole file
    return path


def launch_node_arguments(spec: NodeSpec) -> dict:
    """Keyword arguments of ``launch_ros.actions.Node`` for ``spec``.

    ``parameters``: the YAML files, then a dict of the spec's parameters (a ``('xacro', path)``
    value is left for the launch file to turn into a ``Command`` substitution). ``namespace`` is
    always a string (``''`` = the launch's namespace): with a name and a namespace, launch_ros
    writes the dict under the node's full name, so it beats the YAML's node section exactly as
    the pip-only launcher's node-specific file does.
    """
    parameters: List[object] = list(spec.parameter_files)
    if spec.parameters:
        parameters.append(dict(spec.parameters))
    return dict(package=spec.package, executable=spec.executable, name=spec.name,
                namespace=spec.namespace, parameters=parameters,
                remappings=list(spec.remappings), arguments=list(spec.arguments))


def quaternion_xyzw(rotation) -> Tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w), w >= 0, of a 3x3 rotation matrix (rows of floats)."""
    (a, b, c), (d, e, f), (g, h, i) = [[float(v) for v in row] for row in rotation]
    trace = a + e + i
    if trace > 0:
        r = 2.0 * math.sqrt(1.0 + trace)
        q = ((h - f) / r, (c - g) / r, (d - b) / r, 0.25 * r)
    elif a >= e and a >= i:
        r = 2.0 * math.sqrt(1.0 + a - e - i)
        q = (0.25 * r, (b + d) / r, (c + g) / r, (h - f) / r)
    elif e >= i:
        r = 2.0 * math.sqrt(1.0 + e - a - i)
        q = ((b + d) / r, 0.25 * r, (f + h) / r, (c - g) / r)
    else:
        r = 2.0 * math.sqrt(1.0 + i - a - e)
        q = ((c + g) / r, (f + h) / r, 0.25 * r, (d - b) / r)
    n = math.sqrt(sum(v * v for v in q))
    q = tuple(v / n for v in q)
    return q if q[3] >= 0 else tuple(-v for v in q)


def camera_extrinsics(robot) -> List[float]:
    """T_base_camera_optical (16 values, row-major) of ``robot`` (a RobotModel, name or YAML
    path): its ``camera_extrinsics`` or the simulator's default mounting, the same the strategic
    planner grounds with (:func:`hybrid_vla_ros.nodes.robot_params.scene_camera`)."""
    from hybrid_vla_ros.nodes.robot_params import scene_camera
    return [float(v) for v in scene_camera(resolve_robot(robot)).ravel()]


def camera_tf_spec(robot, namespace: str = '') -> NodeSpec:
    """tf2_ros' static_transform_publisher of the robot's base frame -> :data:`CAMERA_FRAME`,
    so the camera images and the markers are in robot_state_publisher's TF tree (rviz)."""
    robot = resolve_robot(robot)
    T = camera_extrinsics(robot)
    R = [T[0:3], T[4:7], T[8:11]]
    x, y, z = T[3], T[7], T[11]
    q = quaternion_xyzw(R)
    args = ('--x', x, '--y', y, '--z', z, '--qx', q[0], '--qy', q[1], '--qz', q[2],
            '--qw', q[3], '--frame-id', robot.base_frame, '--child-frame-id', CAMERA_FRAME)
    return NodeSpec(package='tf2_ros', executable='static_transform_publisher',
                    name='scene_camera_tf', namespace=namespace,
                    arguments=tuple(a if isinstance(a, str) else repr(float(a)) for a in args),
                    ros_install_only=True)


def recorder_spec(path: str, *, namespace: str = '', topics=GRAPH_TOPICS) -> NodeSpec:
    """A node that records ``topics`` into the MCAP bag ``path`` (``ros2 bag record``'s role)."""
    return NodeSpec(package='hybrid_vla_ros', executable='bag_recorder', name='bag_recorder',
                    namespace=namespace, module='hybrid_vla_ros.nodes.topic_recorder',
                    arguments=(os.path.abspath(path),) + tuple(f'{t}:{ty}' for t, ty in topics))


def description_share() -> str:
    """The hybrid_vla_description folder ($HYBRID_VLA_DESCRIPTION_DIR, its installed share/, or
    the source tree): the one the robot's xacro is read from."""
    from hybrid_vla_ros.sim.description import description_dir
    return description_dir()


def resolve_robot(robot=DEFAULT_ROBOT) -> RobotModel:
    """The validated robot of a name (``config/<robot>.yaml``), a robot YAML path or a
    RobotModel (:class:`~hybrid_vla_ros.robot_config.ConfigError` naming file and key)."""
    return load_robot(robot)


def robot_file(robot: RobotModel, folder: str, name: str) -> str:
    """``name`` beside the robot's YAML if there is one (a robot outside the package), else in
    ``hybrid_vla_description/<folder>/``."""
    beside = os.path.join(os.path.dirname(os.path.abspath(robot.config_file)), name)
    if os.path.isfile(beside):
        return beside
    return os.path.join(description_share(), folder, name)


def arm_graph(*, robot=DEFAULT_ROBOT, hardware: str = 'sim', device: str = 'cpu',
              namespace: str = '', rviz: bool = False) -> List[NodeSpec]:
    """The nodes ``arm.launch.py robot:=... hardware:=... device:=...`` starts.

    Every node of ours gets the robot YAML as its parameters file and ``robot_config:=`` its
    absolute path (:func:`~hybrid_vla_ros.nodes.robot_params.declare_robot`); the robot's
    xacro feeds robot_state_publisher, ``<robot>_controllers.yaml`` ros2_control and
    ``<robot>.rviz`` rviz2 (beside the YAML if there, else in hybrid_vla_description).

    :param robot: name of ``config/<robot>.yaml``, a path to such a YAML, or a RobotModel; it is
        validated before anything starts.
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
    model = resolve_robot(robot)
    robot_yaml = os.path.abspath(model.config_file)
    params_file = namespaced_parameters_file(robot_yaml, namespace)
    urdf_xacro = model.urdf_file
    nodes: List[NodeSpec] = []

    def stack_node(executable: str, name: Optional[str] = None,
                   parameters: Optional[Dict[str, object]] = None) -> NodeSpec:
        return NodeSpec(package='hybrid_vla_ros', executable=executable,
                        name=name or executable, namespace=namespace,
                        parameter_files=(params_file,),
                        parameters={'robot_config': robot_yaml, **(parameters or {})},
                        module=f'hybrid_vla_ros.nodes.{executable}')

    # at the root namespace, like ros2_control (its /robot_description feeds the controller
    # manager; /tf, /tf_static are absolute anyway)
    robot_state_publisher = NodeSpec(
        package='robot_state_publisher', executable='robot_state_publisher',
        name='robot_state_publisher',
        parameters={'robot_description': ('xacro', urdf_xacro)}, ros_install_only=True)
    if hardware == 'sim':
        # sim_arm publishes /joint_states of every joint of the same xacro (fingers included)
        nodes += [stack_node('sim_arm'), robot_state_publisher,
                  camera_tf_spec(model, namespace)]
    elif hardware == 'mock':
        controllers = robot_file(model, 'config', f'{model.name}_controllers.yaml')
        nodes += [
            robot_state_publisher,
            # Jazzy+: the controller_manager reads the description from its
            # ~/robot_description topic (robot_state_publisher's, latched), not a parameter
            NodeSpec(package='controller_manager', executable='ros2_control_node',
                     name='controller_manager', parameter_files=(controllers,),
                     remappings=(('~/robot_description', '/robot_description'),),
                     ros_install_only=True),
        ]
        # ros2_control_demos' order: the joint state broadcaster first, then each spawner once
        # the previous one has exited (the inactive alternative last)
        previous = None
        for ctrl, active in (('joint_state_broadcaster', True),
                             ('forward_position_controller', True),
                             ('gripper_controller', True),
                             ('joint_trajectory_controller', False)):
            args = (ctrl, '--controller-manager', '/controller_manager')
            spawner = NodeSpec(package='controller_manager', executable='spawner',
                               name=f'spawner_{ctrl}',
                               arguments=args + (() if active else ('--inactive',)),
                               ros_install_only=True, after=previous)
            nodes.append(spawner)
            previous = spawner.name
        # mock_components has no camera: mirror its joint states into the MuJoCo scene
        nodes.append(stack_node(SCENE_CAMERA))
        nodes.append(camera_tf_spec(model, namespace))
    for executable in STACK_NODES:
        extra = {'parameters': {'device': device}} if executable == 'motor_policy' else {}
        nodes.append(stack_node(executable, **extra))
    if rviz:
        nodes.append(NodeSpec(package='rviz2', executable='rviz2', name='rviz2',
                              namespace=namespace,
                              arguments=('-d', robot_file(model, 'rviz', f'{model.name}.rviz')),
                              ros_install_only=True, optional=True))
    return nodes
