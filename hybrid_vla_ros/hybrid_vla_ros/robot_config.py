"""Typed robot configuration loaded from ``config/<robot>.yaml`` (ROS parameter YAML).

The YAML is what ``ros2 launch`` passes to the nodes; this module reads the same file without
ROS so models, sim and tests see exactly the parameters the nodes get.
"""
from dataclasses import MISSING, dataclass, fields
import os
from typing import Any, Dict, Tuple

import yaml

PACKAGE = 'hybrid_vla_ros'


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names key, value, expectation."""


@dataclass(frozen=True)
class RobotConfig:
    """Robot-specific parameters shared by every node (the ``/**`` section)."""

    robot: str
    urdf: str
    joint_names: Tuple[str, ...]
    gripper_joint: str
    base_frame: str = 'base_link'
    tool_frame: str = 'tool0'
    forward_command_topic: str = '/forward_position_controller/commands'
    trajectory_topic: str = '/joint_trajectory_controller/joint_trajectory'
    gripper_command_topic: str = '/gripper_controller/commands'
    joint_states_topic: str = '/joint_states'
    camera_topic: str = 'camera/image_raw'

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


def config_dir() -> str:
    """The package's config folder (installed share/ or the source tree: :mod:`.resources`)."""
    from .resources import find
    return find(PACKAGE, 'config')


def config_path(robot: str) -> str:
    path = robot if robot.endswith('.yaml') else os.path.join(config_dir(), f'{robot}.yaml')
    if not os.path.isfile(path):
        raise ConfigError(f"robot config '{robot}': no file {path}")
    return path


def load_parameters(robot: str) -> Dict[str, Dict[str, Any]]:
    """All sections of the YAML as {node_name: parameters} (``/**`` kept as is)."""
    path = config_path(robot)
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    out = {}
    for node, section in data.items():
        if not isinstance(section, dict) or 'ros__parameters' not in section:
            raise ConfigError(f"{path}: section '{node}' must contain 'ros__parameters'")
        out[node] = dict(section['ros__parameters'] or {})
    return out


def load_robot_config(robot: str) -> RobotConfig:
    """Read and validate the ``/**`` section of ``config/<robot>.yaml`` (or a YAML path)."""
    path = config_path(robot)
    return robot_config_from_parameters(load_parameters(robot).get('/**', {}), path)


def robot_config_from_parameters(params: Dict[str, Any], path: str) -> RobotConfig:
    """Validate the shared robot parameters ``params`` (``path`` names their source in errors)."""
    known = {f.name: f for f in fields(RobotConfig)}
    values = {k: v for k, v in params.items() if k in known}
    for name, f in known.items():
        if name not in values and f.default is MISSING:
            raise ConfigError(f"{path}: key '/**.{name}' is missing")
    names = values.get('joint_names')
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{path}: key 'joint_names' = {names!r}, expected a non-empty list of strings")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: key 'joint_names' = {names!r} has duplicates")
    values['joint_names'] = tuple(names)
    for k, v in values.items():
        if k != 'joint_names' and not isinstance(v, str) or k != 'joint_names' and not v:
            raise ConfigError(f"{path}: key '/**.{k}' = {v!r}, expected a non-empty string")
    # Extra shared keys are allowed: nodes may declare them as parameters.
    return RobotConfig(**values)
