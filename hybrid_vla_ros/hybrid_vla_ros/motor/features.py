"""What the motor experts see: one definition for training, sim evaluation and the ROS node.

The motor level is conditioned on the waypoint it is heading to now (from the tactical level,
or the sub-goal's target itself when there is no tactical level). Besides the waypoint it gets the
tool pose from forward kinematics of the measured joints (the URDF is known on any robot) and the
tool-to-waypoint error, once raw and once saturated at 1 cm: the fine copy makes sub-millimetre
errors visible to the network after normalisation, which is what precision placement needs.
"""
from typing import Optional, Sequence

import numpy as np

STATE_DIM = 8   # 7 joints [rad] + gripper [0..1]
GOAL_DIM = 21   # waypoint pos(3) quat(4) gripper(1), tool pos(3) quat(4), error(3), fine error(3)
FINE_SCALE = 0.01  # m: the fine error saturates at 1 cm


def waypoint_vector(pos, quat, gripper) -> np.ndarray:
    return np.concatenate([np.asarray(pos, float), np.asarray(quat, float),
                           [float(gripper)]]).astype(np.float32)


def goal_features(waypoint: np.ndarray, tool_pos, tool_quat) -> np.ndarray:
    """(GOAL_DIM,) features from the active waypoint (8,) and the measured tool pose."""
    wp = np.asarray(waypoint, float).reshape(-1)
    if wp.shape[0] != 8:
        raise ValueError(f'waypoint has {wp.shape[0]} values, expected 8 (pos, quat xyzw, '
                         'gripper)')
    tp, tq = np.asarray(tool_pos, float), np.asarray(tool_quat, float)
    if tq @ wp[3:7] < 0:  # q and -q are the same rotation: keep them on one hemisphere
        tq = -tq
    err = wp[:3] - tp
    out = np.concatenate([wp, tp, tq, err, np.clip(err / FINE_SCALE, -1.0, 1.0)])
    if not np.all(np.isfinite(out)):
        raise ValueError('motor observation has NaN/Inf (waypoint or tool pose)')
    return out.astype(np.float32)


class WaypointTracker:
    """Which waypoint of a sub-goal the arm is heading to.

    Waypoints are passed in order; an intermediate one counts as passed when the tool comes within
    ``pass_tol`` of it. The last one is never passed (it is the sub-goal's target).
    """

    def __init__(self, pass_tol: float = 0.02):
        self.pass_tol = float(pass_tol)
        self.waypoints: Sequence[np.ndarray] = ()
        self.index = 0

    def set_waypoints(self, waypoints: Sequence[np.ndarray]) -> None:
        wps = [np.asarray(w, np.float32).reshape(-1) for w in waypoints]
        if not wps:
            raise ValueError('a sub-goal needs at least one waypoint')
        for i, w in enumerate(wps):
            if w.shape[0] != 8 or not np.all(np.isfinite(w)):
                raise ValueError(f'waypoint {i}: expected 8 finite values, got {w.tolist()}')
        self.waypoints, self.index = wps, 0

    def update(self, tool_pos) -> Optional[np.ndarray]:
        """Advance past reached via-points; returns the active waypoint (8,) or None."""
        if not self.waypoints:
            return None
        p = np.asarray(tool_pos, float)
        while (self.index < len(self.waypoints) - 1
               and np.linalg.norm(self.waypoints[self.index][:3] - p) < self.pass_tol):
            self.index += 1
        return self.waypoints[self.index]
