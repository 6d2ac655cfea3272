"""How a robot's data is named in a LeRobot v3 dataset and found in a ROS bag.

The ``dataset`` section of the robot YAML (ROS parameter layout, like every other section)
overrides any of the defaults below; the defaults follow LeRobot's conventions
(``observation.state``, ``action``, ``observation.images.<camera>``) and the robot's own topics
(``/**`` section), so a robot with no ``dataset`` section still maps::

    dataset:
      ros__parameters:
        state_feature: observation.state
        action_feature: action
        camera_feature: observation.images.camera
        gripper_name: gripper          # name of the gripper entry in state/action `names`
        fps: 20                        # frame grid of `hybrid-vla dataset from-bag`
        episode_gap: 1.0               # s without joint states that ends an episode
        topics:
          joint_states: /joint_states  # sensor_msgs/JointState
          command: /forward_position_controller/commands  # std_msgs/Float64MultiArray
          gripper_command: /gripper_controller/commands
          action_chunk: action_chunk   # hybrid_vla_msgs/ActionChunk (preferred action source)
          camera: camera/image_raw     # sensor_msgs/Image
          instruction: instruction     # std_msgs/String
          subgoals: subgoals           # hybrid_vla_msgs/SubGoalList (its plan's instruction)

A user's dataset recorded by LeRobot for the same robot is read through the same names: the
``names`` of its state and action features are matched to ``joint_names`` + ``gripper_name``.
"""
from dataclasses import dataclass, field, fields
import os
from typing import Dict, Optional, Tuple

from hybrid_vla_ros.robot.model import DEFAULT_ROBOT, RobotModel
from hybrid_vla_ros.robot_config import (
    ConfigError,
    RobotConfig,
    config_path,
    load_parameters,
    load_robot_config,
)

SECTION = 'dataset'
_NOT_KEYS = ('robot', 'joint_names', 'topics', 'config_file')  # not settable in the section
TOPIC_KEYS = ('joint_states', 'command', 'gripper_command', 'action_chunk', 'camera',
              'instruction', 'subgoals')


@dataclass(frozen=True)
class DatasetSpec:
    """Feature names and bag topics of one robot (see the module docstring)."""

    robot: str
    joint_names: Tuple[str, ...]
    state_feature: str = 'observation.state'
    action_feature: str = 'action'
    camera_feature: str = 'observation.images.camera'
    gripper_name: str = 'gripper'
    fps: int = 20
    episode_gap: float = 1.0
    topics: Dict[str, str] = field(default_factory=dict)
    config_file: str = ''   # the robot YAML (load_robot(spec.config_file) is this robot)

    @property
    def state_names(self) -> Tuple[str, ...]:
        """Names of the state/action vector entries: the arm joints, then the gripper."""
        return tuple(self.joint_names) + (self.gripper_name,)

    @property
    def dim(self) -> int:
        return len(self.joint_names) + 1

    def topic(self, key: str) -> str:
        return self.topics[key]


def _default_topics(cfg: RobotConfig) -> Dict[str, str]:
    return {'joint_states': cfg.joint_states_topic, 'command': cfg.forward_command_topic,
            'gripper_command': cfg.gripper_command_topic, 'action_chunk': 'action_chunk',
            'camera': cfg.camera_topic, 'instruction': 'instruction', 'subgoals': 'subgoals'}


def load_dataset_spec(robot=DEFAULT_ROBOT, cfg: Optional[RobotConfig] = None) -> DatasetSpec:
    """The robot's :class:`DatasetSpec`: defaults, overridden by its YAML ``dataset`` section.

    ``robot``: a config name, a robot YAML path or a
    :class:`~hybrid_vla_ros.robot.RobotModel`."""
    if isinstance(robot, RobotModel):
        cfg, path = cfg or robot.config, robot.config_file
        params = robot.section(SECTION)
    else:
        robot = str(robot)
        cfg = cfg or load_robot_config(robot)
        path = config_path(robot)
        params = dict(load_parameters(robot).get(SECTION, {}))
    topics = _default_topics(cfg)
    given = params.pop('topics', None) or {}
    if not isinstance(given, dict):
        raise ConfigError(f"{path}: key '{SECTION}.topics' = {given!r}, expected a mapping")
    for k, v in given.items():
        if k not in TOPIC_KEYS:
            raise ConfigError(f"{path}: key '{SECTION}.topics.{k}' is unknown, expected one of "
                              f"{list(TOPIC_KEYS)}")
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{path}: key '{SECTION}.topics.{k}' = {v!r}, expected a topic "
                              'name')
        topics[k] = v
    known = {f.name: f for f in fields(DatasetSpec)}
    values = {}
    for k, v in params.items():
        if k not in known or k in _NOT_KEYS:
            raise ConfigError(f"{path}: key '{SECTION}.{k}' is unknown, expected one of "
                              f"{[n for n in known if n not in _NOT_KEYS]}")
        want = {'fps': int, 'episode_gap': (int, float)}.get(k, str)
        if not isinstance(v, want) or isinstance(v, bool) or (want is str and not v):
            raise ConfigError(f"{path}: key '{SECTION}.{k}' = {v!r}, expected "
                              f"{'a number' if k == 'episode_gap' else want.__name__}")
        values[k] = v
    spec = DatasetSpec(robot=cfg.robot, joint_names=tuple(cfg.joint_names), topics=topics,
                       config_file=os.path.abspath(path), **values)
    if spec.fps <= 0 or spec.episode_gap <= 0:
        raise ConfigError(f"{path}: keys '{SECTION}.fps' = {spec.fps!r} and "
                          f"'{SECTION}.episode_gap' = {spec.episode_gap!r} must be > 0")
    if not spec.camera_feature.startswith('observation.images.'):
        raise ConfigError(f"{path}: key '{SECTION}.camera_feature' = {spec.camera_feature!r}, "
                          "expected 'observation.images.<camera>'")
    return spec
