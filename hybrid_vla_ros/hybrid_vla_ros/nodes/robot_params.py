"""The robot parameters every node shares, declared once: ``robot = declare_robot(node)``.

The launchers (``arm.launch.py robot:=NAME|PATH``, ``hybrid-vla launch arm --robot NAME|PATH``)
pass the robot YAML as the parameters file and ``robot_config:=<absolute path of that YAML>``.
:func:`declare_robot` declares the ``/**`` keys of the robot model (:mod:`hybrid_vla_ros.robot.
model`) as parameters, each defaulting to the value of that YAML, so a node started without any
parameter (``ros2 run``) gets the robot of ``robot_config`` if given, else the YAML named by
``robot`` in the package's ``config/`` (if there is one), else :data:`DEFAULT_ROBOT`'s YAML.
Parameters set explicitly (``-p``, a parameters file) override the YAML's values. A relative
``urdf`` is looked up beside the ``robot_config`` YAML first.

The robot is validated at start (:class:`~hybrid_vla_ros.robot_config.ConfigError`, naming the
file and the key); :func:`~hybrid_vla_ros.nodes.node_main.run_node` prints that message and the
node exits with code 1.
"""
from typing import Dict, Optional

import numpy as np

from hybrid_vla_ros.robot.model import DEFAULT_ROBOT, RobotModel, robot_from_parameters
from hybrid_vla_ros.robot_config import (
    RobotConfig,
    config_dir,
    config_path,
    load_parameters,
)

ROBOT_CONFIG = 'robot_config'

# key -> description; the keys of RobotConfig (required or with a default in RobotConfig)
SHARED = {
    'robot': 'robot name (config/<robot>.yaml when robot_config is not given)',
    'urdf': 'URDF/xacro of the robot: a file of hybrid_vla_description/urdf/, a path relative '
            'to the robot_config YAML, or absolute',
    'joint_names': 'arm joints from base_frame to tool_frame, in controller (= state/action) '
                   'order',
    'gripper_joint': 'gripper joint commanded by the gripper controller (its mimic joints '
                     'follow)',
    'base_frame': 'frame of every pose (the URDF root or fixed to it at the identity)',
    'tool_frame': 'tool frame: z out of the gripper, fingers opening along y',
    'forward_command_topic': 'forward position controller command topic',
    'trajectory_topic': 'joint trajectory controller topic',
    'gripper_command_topic': 'gripper controller command topic (gripper joint units)',
    'joint_states_topic': 'joint state topic',
    'camera_topic': 'scene camera image topic',
}
# optional keys: unset = the robot model's default
OPTIONAL = {
    'home': 'home arm joint positions (default: the URDF ros2_control initial_values, else '
            'the middle of each range)',
    'gripper_open': 'gripper joint position when open (default: its upper URDF limit)',
    'gripper_closed': 'gripper joint position when closed (default: its lower URDF limit)',
    'camera_extrinsics': 'scene camera optical frame in base_frame, 16 values row-major '
                         '(T_base_camera_optical; default: the simulator camera)',
}


def _descriptor(text: str, dynamic: bool = False):
    from rcl_interfaces.msg import ParameterDescriptor
    return ParameterDescriptor(description=text, dynamic_typing=dynamic)


def _yaml_for(robot_config: str, robot: Optional[str]) -> str:
    """The robot YAML the defaults come from (see the module docstring)."""
    if robot_config:
        return config_path(robot_config)   # ConfigError naming it if missing
    if robot:
        import os
        candidate = os.path.join(config_dir(), f'{robot}.yaml')
        if os.path.isfile(candidate):
            return candidate
    return config_path(DEFAULT_ROBOT)


def declare_robot(node) -> RobotModel:
    """Declare the shared robot parameters on ``node`` and return its validated RobotModel.

    :raises ConfigError: the robot (YAML + overrides + URDF) is invalid; the message names the
        YAML file and the key.
    """
    import os
    p = node.declare_parameter
    robot_config = p(ROBOT_CONFIG, '', _descriptor(
        'path of the robot YAML the launchers pass (the defaults of these parameters; a '
        "relative urdf resolves beside it); empty = config/<robot>.yaml or the default "
        'robot')).value
    # ``robot`` first, unset unless given: it may name the YAML of the defaults
    given = p('robot', None, _descriptor(SHARED['robot'], dynamic=True)).value
    path = os.path.abspath(_yaml_for(robot_config, given))
    params: Dict[str, Dict] = load_parameters(path)
    shared = dict(params.get('/**', {}))
    if given is not None:
        shared['robot'] = given
    elif 'robot' in shared:
        from rclpy.parameter import Parameter
        node.set_parameters([Parameter('robot', value=shared['robot'])])
    defaults = {f: getattr(RobotConfig, f, None) for f in SHARED}
    for key, text in SHARED.items():
        if key == 'robot':
            continue
        default = shared.get(key, defaults[key])
        if default is None:   # required and missing in the YAML: left to the model's check
            value = p(key, None, _descriptor(text, dynamic=True)).value
        else:
            value = p(key, list(default) if isinstance(default, (list, tuple)) else default,
                      _descriptor(text)).value
        if value is not None:
            shared[key] = list(value) if key == 'joint_names' else value
    for key, text in OPTIONAL.items():
        value = p(key, shared.get(key), _descriptor(text, dynamic=True)).value
        if value is None:
            shared.pop(key, None)
        else:
            shared[key] = list(value) if isinstance(value, (list, tuple, np.ndarray)) \
                else value
    params['/**'] = shared
    robot = robot_from_parameters(params, path)
    node.get_logger().info(
        f'robot {robot.name}: {robot.n_joints} joints {list(robot.joint_names)}, gripper '
        f'{robot.gripper_joint}, {robot.base_frame} -> {robot.tool_frame} ({path})')
    return robot


def scene_camera(robot: RobotModel) -> np.ndarray:
    """The scene camera's optical frame in the base frame (4x4): the robot's
    ``camera_extrinsics`` or the simulator's default mounting."""
    if robot.camera_extrinsics is not None:
        return robot.camera_extrinsics.copy()
    try:
        from hybrid_vla_ros.sim.workspace import scene_camera as sim_scene_camera
    except ImportError:   # the simulator's function is not there yet: its default mounting
        return robot.camera_mounting(workspace_centre=(0.49, 0.0), workspace_half_width=0.53)
    return np.asarray(sim_scene_camera(robot), dtype=float)
