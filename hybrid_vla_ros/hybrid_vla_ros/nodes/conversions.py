"""Message <-> numpy helpers shared by the nodes (poses, the robot adapter, the plan in
effect)."""
from geometry_msgs.msg import Pose
import numpy as np


def to_pose(pos, quat) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in pos)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in quat)
    return p


def from_pose(pose: Pose):
    """(pos (3,), quat xyzw (4,)) as float arrays."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])


class RobotAdapter:
    """Messages <-> the policy's state/action layout of one robot (openpi's DroidInputs /
    DroidOutputs): the arm joints in the robot's order, then the gripper closure 0 (open) ..
    1 (closed): ``robot.state_dim`` values."""

    def __init__(self, robot):
        self.robot = robot
        self.n = robot.n_joints
        self.joint_names = list(robot.joint_names)

    def state(self, msg) -> np.ndarray:
        """The (state_dim,) policy state of a JointState, or ValueError naming the problem."""
        return self.robot.state_from_joint_state(msg.name, msg.position)

    def measured(self, msg):
        """(arm positions (n,), gripper joint position in joint units) of a JointState, or
        ValueError naming the problem."""
        q = self.state(msg)[:self.n]
        return q, float(msg.position[list(msg.name).index(self.robot.gripper_joint)])

    def arm(self, state) -> np.ndarray:
        """The arm joints of a state / chunk step (or of each row of a chunk)."""
        return np.asarray(state)[..., :self.n]

    def gripper(self, state):
        """The gripper closure of a state (or of each row of a chunk)."""
        return np.asarray(state)[..., self.n]

    def chunk_fields(self, chunk: np.ndarray):
        """(positions (H * n, row-major), gripper closures (H,) in [0, 1]) of an (H, state_dim)
        chunk: the ActionChunk's fields."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[1] != self.robot.state_dim:
            raise ValueError(f'chunk of shape {chunk.shape}, expected (H, '
                             f'{self.robot.state_dim})')
        return (chunk[:, :self.n].astype(float).ravel().tolist(),
                np.clip(chunk[:, self.n], 0.0, 1.0).astype(float).tolist())

    def gripper_command(self, closure: float) -> float:
        """The gripper controller's command (joint units) for a closure."""
        return self.robot.gripper_position(closure)


def robot_kinematics(robot=None):
    """FK/IK (base_frame -> tool_frame) of ``robot``: a RobotModel, a robot name or a robot YAML
    path (default: the default robot)."""
    from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot
    return load_robot(DEFAULT_ROBOT if robot is None else robot).kinematics()


MAX_TEXT = 1024  # characters of any one name or description field of a plan message
MAX_SCENE_OBJECTS = 256  # grounded objects a plan message may carry


def check_subgoal_list(msg) -> None:
    """Raise ValueError naming the first problem of a ``SubGoalList`` message: more sub-goals
    than a plan may have, an active index past the end, a skill off the allow-list, over-long
    text, a non-finite or non-unit target pose, confidence or gripper outside 0..1. Levels
    below the planner check this before they act on (or spend time on) a plan; the scene
    objects and their poses must pair up and be finite."""
    import math

    from hybrid_vla_ros.planning.skills import MAX_SUBGOALS, SKILL_ALLOW_LIST
    if len(msg.subgoals) > MAX_SUBGOALS:
        raise ValueError(f'{len(msg.subgoals)} sub-goals, at most {MAX_SUBGOALS}')
    if msg.active_index > len(msg.subgoals):
        raise ValueError(f'active_index {msg.active_index} past the {len(msg.subgoals)} '
                         'sub-goals')
    if len(msg.instruction) > 64 * MAX_TEXT:
        raise ValueError(f'instruction of {len(msg.instruction)} characters')
    for i, sg in enumerate(msg.subgoals):
        for name in ('id', 'skill', 'object', 'description'):
            if len(getattr(sg, name)) > MAX_TEXT:
                raise ValueError(f'sub-goal {i}: {name} of {len(getattr(sg, name))} characters')
        if sg.skill not in SKILL_ALLOW_LIST:
            raise ValueError(f'sub-goal {i}: skill {sg.skill[:40]!r} is not allow-listed')
        pos, quat = from_pose(sg.target_pose)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ValueError(f'sub-goal {i}: target pose has NaN/Inf')
        if abs(float(np.linalg.norm(quat)) - 1.0) > 0.01:
            raise ValueError(f'sub-goal {i}: target orientation is not a unit quaternion')
        for name in ('confidence', 'gripper'):
            v = float(getattr(sg, name))
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f'sub-goal {i}: {name} {v} outside 0..1')
    if len(msg.scene_objects) > MAX_SCENE_OBJECTS:
        raise ValueError(f'{len(msg.scene_objects)} scene objects, at most {MAX_SCENE_OBJECTS}')
    if len(msg.scene_objects) != len(msg.scene_poses):
        raise ValueError(f'{len(msg.scene_objects)} scene objects but {len(msg.scene_poses)} '
                         'scene poses')
    for name, pose in zip(msg.scene_objects, msg.scene_poses):
        pos, quat = from_pose(pose)
        if len(name) > MAX_TEXT or not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ValueError(f'scene object {name[:40]!r}: over-long name or NaN/Inf pose')


def active_plan(msg):
    """The :class:`~hybrid_vla_ros.hierarchy.active_plan.ActivePlan` of a (checked, see
    :func:`check_subgoal_list`) ``SubGoalList``: its stamp is the plan's identity."""
    from hybrid_vla_ros.domain.rotations import yaw_of
    from hybrid_vla_ros.domain.types import SubGoal
    from hybrid_vla_ros.hierarchy.active_plan import ActivePlan
    subgoals = []
    for sg in msg.subgoals:
        pos, quat = from_pose(sg.target_pose)
        subgoals.append(SubGoal(sg.id, sg.skill, sg.object, sg.description, pos, quat,
                                gripper=float(sg.gripper), confidence=float(sg.confidence)))
    obstacle = None
    if 'obstacle' in msg.scene_objects:
        ob_pos, ob_quat = from_pose(msg.scene_poses[list(msg.scene_objects).index('obstacle')])
        obstacle = {'pos': ob_pos, 'yaw': yaw_of(ob_quat)}
    st = msg.header.stamp
    return ActivePlan(stamp_ns=int(st.sec) * 1_000_000_000 + int(st.nanosec),
                      instruction=msg.instruction, active_index=int(msg.active_index),
                      subgoals=tuple(subgoals), frame_id=msg.header.frame_id,
                      obstacle=obstacle)
