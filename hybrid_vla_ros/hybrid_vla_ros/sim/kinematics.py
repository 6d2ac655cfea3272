"""The robot's kinematics, for the simulator's users: :mod:`hybrid_vla_ros.robot.kinematics`."""
from ..robot.kinematics import (  # noqa: F401 (re-exported)
    DOWN_QUAT_XYZW,
    Kinematics,
    down_quat,
    mat_to_quat,
    quat_to_mat,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_wxyz,
    rot_z,
    rotation_error,
    slerp,
)
