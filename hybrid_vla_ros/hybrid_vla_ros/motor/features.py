"""What the motor experts see: one definition for training, sim evaluation and the ROS node.

The motor level is conditioned on the waypoint it is heading to now (from the tactical level,
or the sub-goal's target itself when there is no tactical level). Besides the waypoint it gets the
tool pose from forward kinematics of the measured joints (the URDF is known on any robot) and the
tool-to-waypoint error, once raw and once saturated at 1 cm: the fine copy makes sub-millimetre
errors visible to the network after normalisation, which is what precision placement needs.

Precision checkpoints (``goal_dim`` = :data:`GOAL_DIM_LOG`) add the position error once more on
a log scale, sign(e) log(1 + |e| / 0.1 mm) / log(1 + 10 cm / 0.1 mm): 0.05 mm, 1 mm and 10 cm
become 0.06, 0.35 and 1.0, so every scale of the final approach is an O(0.1..1) input; and the
orientation error (rotation vector, base frame) on the same kind of log scale (0.1 mrad .. 1 rad):
a milliradian of tool tilt is invisible in raw quaternion features, yet the expert corrects it.
Which layout a checkpoint expects follows from its ``encoder.goal_dim`` (:func:`log_error_for`).
"""
from typing import Optional, Sequence

import numpy as np

from hybrid_vla_ros.domain.rotations import quat_to_mat, rotation_error

# The state is the robot's: its n arm joints [rad] + the gripper closure [0..1]
# (RobotModel.state_dim); the waypoint and the goal features below do not depend on the arm.
WAYPOINT_DIM = 8  # pos(3) quat xyzw(4) gripper(1)
GOAL_DIM = 21   # waypoint pos(3) quat(4) gripper(1), tool pos(3) quat(4), error(3), fine error(3)
FINE_SCALE = 0.01  # m: the fine error saturates at 1 cm
GOAL_DIM_LOG = GOAL_DIM + 6  # ... plus the log-scale position error(3), rotation error(3)
LOG_UNIT, LOG_RANGE = 1e-4, 0.1  # m: log-scale error unit (0.1 mm) and full scale (10 cm)
ROT_UNIT, ROT_RANGE = 1e-4, 1.0  # rad: the same for the rotation error


def _log_scale(x: np.ndarray, unit: float, full: float) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x) / unit) / np.log1p(full / unit)


def log_error_for(goal_dim: int) -> bool:
    """Whether a checkpoint with this ``encoder.goal_dim`` expects the log-scale error."""
    if goal_dim not in (GOAL_DIM, GOAL_DIM_LOG):
        raise ValueError(f'motor goal_dim {goal_dim}: expected {GOAL_DIM} or {GOAL_DIM_LOG}')
    return goal_dim == GOAL_DIM_LOG


def waypoint_vector(pos, quat, gripper) -> np.ndarray:
    return np.concatenate([np.asarray(pos, float), np.asarray(quat, float),
                           [float(gripper)]]).astype(np.float32)


def goal_features(waypoint: np.ndarray, tool_pos, tool_quat, log_error: bool = False
                  ) -> np.ndarray:
    """(GOAL_DIM,) features from the active waypoint (WAYPOINT_DIM,) and the measured tool
    pose ((GOAL_DIM_LOG,) with ``log_error``)."""
    wp = np.asarray(waypoint, float).reshape(-1)
    if wp.shape[0] != WAYPOINT_DIM:
        raise ValueError(f'waypoint has {wp.shape[0]} values, expected {WAYPOINT_DIM} (pos, '
                         'quat xyzw, gripper)')
    tp, tq = np.asarray(tool_pos, float), np.asarray(tool_quat, float)
    if tq @ wp[3:7] < 0:  # q and -q are the same rotation: keep them on one hemisphere
        tq = -tq
    err = wp[:3] - tp
    parts = [wp, tp, tq, err, np.clip(err / FINE_SCALE, -1.0, 1.0)]
    if log_error:
        parts += [_log_scale(err, LOG_UNIT, LOG_RANGE),
                  _log_scale(rotation_error(quat_to_mat(wp[3:7]), quat_to_mat(tq)),
                             ROT_UNIT, ROT_RANGE)]
    out = np.concatenate(parts)
    if not np.all(np.isfinite(out)):
        raise ValueError('motor observation has NaN/Inf (waypoint or tool pose)')
    return out.astype(np.float32)


class WaypointTracker:
    """Which waypoint of a sub-goal the arm is heading to.

    Waypoints are passed in order; an intermediate one counts as passed when the tool comes within
    ``pass_tol`` of it. The last one is never passed (it is the sub-goal's target).
    :meth:`set_waypoints` refuses what no arm can follow: non-finite values, a quaternion that is
    not unit length, a gripper outside 0..1, a position further than ``reach`` (m) from the base
    (e.g. :meth:`Kinematics.reach`), more than ``MAX_WAYPOINTS``.
    """

    MAX_WAYPOINTS = 1000

    def __init__(self, pass_tol: float = 0.02, reach: float = float('inf')):
        self.pass_tol = float(pass_tol)
        self.reach = float(reach)
        self.waypoints: Sequence[np.ndarray] = ()
        self.index = 0

    def set_waypoints(self, waypoints: Sequence[np.ndarray]) -> None:
        wps = [np.asarray(w, np.float32).reshape(-1) for w in waypoints]
        if not wps:
            raise ValueError('a sub-goal needs at least one waypoint')
        if len(wps) > self.MAX_WAYPOINTS:
            raise ValueError(f'{len(wps)} waypoints, at most {self.MAX_WAYPOINTS}')
        for i, w in enumerate(wps):
            if w.shape[0] != WAYPOINT_DIM or not np.all(np.isfinite(w)):
                raise ValueError(f'waypoint {i}: expected {WAYPOINT_DIM} finite values, got '
                                 f'{w.tolist()[:WAYPOINT_DIM]}')
            if abs(float(np.linalg.norm(w[3:7])) - 1.0) > 0.01:
                raise ValueError(f'waypoint {i}: orientation {w[3:7].tolist()} is not a unit '
                                 'quaternion')
            if not 0.0 <= w[7] <= 1.0:
                raise ValueError(f'waypoint {i}: gripper {w[7]:g} outside 0 (open) .. 1 (closed)')
            if float(np.linalg.norm(w[:3])) > self.reach:
                raise ValueError(f'waypoint {i}: position {w[:3].tolist()} is beyond the arm\'s '
                                 f'reach ({self.reach:.2f} m from the base)')
        self.waypoints, self.index = wps, 0

    def update(self, tool_pos) -> Optional[np.ndarray]:
        """Advance past reached via-points; returns the active waypoint or None."""
        if not self.waypoints:
            return None
        p = np.asarray(tool_pos, float)
        while (self.index < len(self.waypoints) - 1
               and np.linalg.norm(self.waypoints[self.index][:3] - p) < self.pass_tol):
            self.index += 1
        return self.waypoints[self.index]
