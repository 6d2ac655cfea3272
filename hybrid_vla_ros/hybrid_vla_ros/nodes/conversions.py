"""Message <-> numpy helpers shared by the nodes (poses, joint states)."""
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


def arm_state(msg, joint_names, gripper_joint='finger_left_joint', finger_open=0.04):
    """(7 joints + gripper 0..1) from a JointState, or raise ValueError naming the problem."""
    names = list(msg.name)
    if len(msg.position) != len(names):
        raise ValueError(f'{len(names)} names but {len(msg.position)} positions')
    missing = [j for j in list(joint_names) + [gripper_joint] if j not in names]
    if missing:
        raise ValueError(f'missing joints {missing}')
    q = [msg.position[names.index(j)] for j in joint_names]
    g = 1.0 - msg.position[names.index(gripper_joint)] / finger_open
    s = np.array(q + [min(1.0, max(0.0, g))])
    if not np.all(np.isfinite(s)):
        raise ValueError('NaN/Inf positions')
    return s


def robot_kinematics(urdf_file: str):
    """FK/IK of the robot described by ``hybrid_vla_description/urdf/<urdf_file>``."""
    from hybrid_vla_ros.sim.description import urdf_string, xacro_path
    from hybrid_vla_ros.sim.kinematics import Kinematics
    return Kinematics.from_urdf(urdf_string(xacro_path(f'urdf/{urdf_file}')))
