"""Forward kinematics, Jacobian and damped-least-squares IK of a robot's tool frame.

Works for any serial chain of revolute joints (a :class:`~hybrid_vla_ros.robot.RobotModel`'s
``base_frame`` -> ``tool_frame``) on any MuJoCo model that contains the arm (the URDF alone or
the full sim scene), through a private ``MjData``, so it never disturbs the simulation state.
Poses are in the base frame (the URDF's root link = MuJoCo world), positions in metres,
quaternions in ROS order (x, y, z, w).
"""
from __future__ import annotations

import mujoco
import numpy as np

# Tool orientation with the gripper pointing straight down (tool z = -base z, tool x = -base x,
# fingers opening along base y): Ry(pi).
DOWN_QUAT_XYZW = np.array([0.0, 1.0, 0.0, 0.0])


# ----------------------------------------------------------------------------- rotations
def quat_xyzw_to_wxyz(q):
    q = np.asarray(q, dtype=float)
    return np.array([q[3], q[0], q[1], q[2]])


def quat_wxyz_to_xyzw(q):
    q = np.asarray(q, dtype=float)
    return np.array([q[1], q[2], q[3], q[0]])


def quat_to_mat(q_xyzw):
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, quat_xyzw_to_wxyz(q_xyzw) / np.linalg.norm(q_xyzw))
    return m.reshape(3, 3)


def mat_to_quat(R):
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(R, dtype=float).reshape(9))
    if q[0] < 0:
        q = -q
    return quat_wxyz_to_xyzw(q)


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def down_quat(yaw: float = 0.0):
    """Quaternion (xyzw) of the TCP pointing down (tool z = -z) rotated by ``yaw`` about base z."""
    R = rot_z(yaw) @ np.diag([-1.0, 1.0, -1.0])  # = Rz(yaw) Ry(pi)
    return mat_to_quat(R)


def rotation_error(R_target, R_current):
    """Axis-angle vector (base frame) that rotates R_current onto R_target."""
    Re = R_target @ R_current.T
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, Re.reshape(9))
    if q[0] < 0:
        q = -q
    v = q[1:]
    s = np.linalg.norm(v)
    if s < 1e-12:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(s, q[0])
    return v / s * angle


def slerp(q0_xyzw, q1_xyzw, t):
    a = np.asarray(q0_xyzw, float)
    b = np.asarray(q1_xyzw, float)
    d = float(np.dot(a, b))
    if d < 0:
        b, d = -b, -d
    if d > 0.9995:
        r = a + t * (b - a)
        return r / np.linalg.norm(r)
    th = np.arccos(d)
    return (np.sin((1 - t) * th) * a + np.sin(t * th) * b) / np.sin(th)


# ----------------------------------------------------------------------------- kinematics
class Kinematics:
    """FK / Jacobian / IK for the arm joints ``joint_names`` of ``model`` (its own MjData), at
    the body ``tcp_body`` (the tool frame)."""

    def __init__(self, model: mujoco.MjModel, joint_names, tcp_body: str):
        self.model = model
        self.data = mujoco.MjData(model)
        self.joint_names = tuple(joint_names)
        jids = [model.joint(n).id for n in self.joint_names]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dofadr = np.array([model.jnt_dofadr[j] for j in jids])
        self.lower = np.array([model.jnt_range[j][0] for j in jids])
        self.upper = np.array([model.jnt_range[j][1] for j in jids])
        self.tcp_id = model.body(tcp_body).id
        self.n = len(self.joint_names)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    @classmethod
    def from_robot(cls, robot):
        """The kinematics of a :class:`~hybrid_vla_ros.robot.RobotModel` (from its URDF)."""
        spec = mujoco.MjSpec.from_string(robot.urdf)
        spec.compiler.fusestatic = False
        return cls(spec.compile(), robot.joint_names, robot.tool_frame)

    def _set(self, q):
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)

    def reach(self) -> float:
        """An upper bound of the tool frame's distance from the world origin over every
        configuration: the sum of the body offsets from the tool up the chain (m)."""
        b, r = self.tcp_id, 0.0
        while b > 0:
            r += float(np.linalg.norm(self.model.body_pos[b]))
            b = int(self.model.body_parentid[b])
        return r

    def fk(self, q):
        """TCP pose for joint vector q: (position (3,), quaternion xyzw (4,))."""
        self._set(q)
        R = self.data.xmat[self.tcp_id].reshape(3, 3)
        return self.data.xpos[self.tcp_id].copy(), mat_to_quat(R)

    def fk_matrix(self, q):
        self._set(q)
        return self.data.xpos[self.tcp_id].copy(), self.data.xmat[self.tcp_id].reshape(3, 3).copy()

    def jacobian(self, q):
        """6 x n geometric Jacobian of the TCP (rows: linear xyz, angular xyz; base frame)."""
        self._set(q)
        mujoco.mj_comPos(self.model, self.data)
        mujoco.mj_jacBody(self.model, self.data, self._jacp, self._jacr, self.tcp_id)
        return np.vstack([self._jacp[:, self.dofadr], self._jacr[:, self.dofadr]])

    def clamp(self, q):
        return np.clip(q, self.lower, self.upper)

    def ik(self, pos, quat_xyzw=None, q0=None, q_rest=None, tol_pos=1e-6, tol_rot=1e-5,
           max_iters=300, damping=1e-3, nullspace_gain=0.05, rot_weight=0.5):
        """Damped-least-squares IK. Returns (q, ok, pos_err_m, rot_err_rad).

        ``quat_xyzw`` None = position only. ``q_rest`` biases the redundancy (null space);
        joint limits are enforced by clamping every iterate (with a small margin).
        """
        pos = np.asarray(pos, float)
        q = self.clamp(np.asarray(q0 if q0 is not None else np.zeros(self.n), float).copy())
        q_rest = None if q_rest is None else np.asarray(q_rest, float)
        R_t = None if quat_xyzw is None else quat_to_mat(quat_xyzw)
        margin = 1e-3
        lo, hi = self.lower + margin, self.upper - margin
        ep = er = np.inf
        for _ in range(max_iters):
            J = self.jacobian(q)
            p = self.data.xpos[self.tcp_id]
            R = self.data.xmat[self.tcp_id].reshape(3, 3)
            e_p = pos - p
            ep = float(np.linalg.norm(e_p))
            if R_t is not None:
                e_r = rotation_error(R_t, R)
                er = float(np.linalg.norm(e_r))
                e = np.concatenate([e_p, rot_weight * e_r])
                Jw = np.vstack([J[:3], rot_weight * J[3:]])
            else:
                er = 0.0
                e = e_p
                Jw = J[:3]
            if ep < tol_pos and er < tol_rot:
                return q, True, ep, er
            m = Jw.shape[0]
            lam2 = damping ** 2 if ep + er > 1e-3 else (damping * 0.1) ** 2
            JJt = Jw @ Jw.T + lam2 * np.eye(m)
            dq = Jw.T @ np.linalg.solve(JJt, e)
            if q_rest is not None and nullspace_gain > 0:
                Jpinv = Jw.T @ np.linalg.inv(JJt)
                N = np.eye(self.n) - Jpinv @ Jw
                dq = dq + N @ (nullspace_gain * (q_rest - q))
            step = np.max(np.abs(dq))
            if step > 0.3:
                dq *= 0.3 / step
            q = np.clip(q + dq, lo, hi)
        return q, (ep < max(tol_pos, 1e-5) and er < max(tol_rot, 1e-4)), ep, er
