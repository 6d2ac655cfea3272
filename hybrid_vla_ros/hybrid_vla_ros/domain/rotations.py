"""Quaternion helpers in plain numpy (ROS order x, y, z, w) for the layers that must not load
the simulator. ``mat_to_quat`` follows MuJoCo's ``mju_mat2Quat`` operation for operation, so
``down_quat`` gives bit-identical results to ``sim.kinematics.down_quat``."""
import math

import numpy as np


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _mat_to_quat_wxyz(R) -> list:
    m = [float(v) for v in np.asarray(R, float).reshape(9)]
    q = [0.0] * 4
    if m[0] + m[4] + m[8] > 0:
        q[0] = 0.5 * math.sqrt(1 + m[0] + m[4] + m[8])
        q[1] = 0.25 * (m[7] - m[5]) / q[0]
        q[2] = 0.25 * (m[2] - m[6]) / q[0]
        q[3] = 0.25 * (m[3] - m[1]) / q[0]
    elif m[0] > m[4] and m[0] > m[8]:
        q[1] = 0.5 * math.sqrt(1 + m[0] - m[4] - m[8])
        q[0] = 0.25 * (m[7] - m[5]) / q[1]
        q[2] = 0.25 * (m[1] + m[3]) / q[1]
        q[3] = 0.25 * (m[2] + m[6]) / q[1]
    elif m[4] > m[8]:
        q[2] = 0.5 * math.sqrt(1 - m[0] + m[4] - m[8])
        q[0] = 0.25 * (m[2] - m[6]) / q[2]
        q[1] = 0.25 * (m[1] + m[3]) / q[2]
        q[3] = 0.25 * (m[5] + m[7]) / q[2]
    else:
        q[3] = 0.5 * math.sqrt(1 - m[0] - m[4] + m[8])
        q[0] = 0.25 * (m[3] - m[1]) / q[3]
        q[1] = 0.25 * (m[2] + m[6]) / q[3]
        q[2] = 0.25 * (m[5] + m[7]) / q[3]
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if norm < 1e-15:
        return [1.0, 0.0, 0.0, 0.0]
    if abs(norm - 1) > 1e-15:
        inv = 1 / norm
        q = [v * inv for v in q]
    return q


def mat_to_quat(R) -> np.ndarray:
    """Rotation matrix -> unit quaternion (xyzw) with w >= 0."""
    w, x, y, z = _mat_to_quat_wxyz(R)
    q = np.array([x, y, z, w])
    return -q if w < 0 else q


def quat_to_mat(q_xyzw) -> np.ndarray:
    """Quaternion (xyzw, any norm) -> rotation matrix (3, 3)."""
    q = np.asarray(q_xyzw, float)
    x, y, z, w = (float(v) for v in q / np.linalg.norm(q))
    if w == 1 and x == 0 and y == 0 and z == 0:
        return np.eye(3)
    return np.array([[w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z]])


def yaw_of(q_xyzw) -> float:
    """Rotation about base z of a quaternion (xyzw): atan2(R[1, 0], R[0, 0])."""
    R = quat_to_mat(q_xyzw)
    return float(np.arctan2(R[1, 0], R[0, 0]))


def down_quat(yaw: float = 0.0) -> np.ndarray:
    """Quaternion (xyzw) of the TCP pointing down (tool z = -z) rotated by ``yaw`` about base z."""
    return mat_to_quat(rot_z(yaw) @ np.diag([-1.0, 1.0, -1.0]))   # = Rz(yaw) Ry(pi)


def rotation_error(R_target, R_current) -> np.ndarray:
    """Axis-angle vector (base frame) that rotates ``R_current`` onto ``R_target`` (the same
    operations as ``sim.kinematics.rotation_error``)."""
    Re = np.asarray(R_target, float) @ np.asarray(R_current, float).T
    q = _mat_to_quat_wxyz(Re)
    if q[0] < 0:
        q = [-v for v in q]
    v = np.array(q[1:])
    s = float(np.linalg.norm(v))
    if s < 1e-12:
        return np.zeros(3)
    return v / s * (2.0 * math.atan2(s, q[0]))
