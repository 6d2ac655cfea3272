"""ROS-free logic of the ros2_control interfaces the sim arm speaks.

``sim_arm`` accepts what ros2_control's standard controllers accept: a forward position command
(one value per arm joint, in the configured order) and a JointTrajectory (interpolated like the
joint_trajectory_controller; a new trajectory replaces the old one from its start time). This
module validates and interpolates; the node only converts messages.
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


class CommandError(ValueError):
    """A command was rejected; the arm keeps its previous target."""


def shorten(items, n: int = 8) -> str:
    """The first ``n`` items of a (possibly hostile, huge) list for an error message."""
    head = [items[i] for i in range(min(len(items), n))]
    text = ', '.join(repr(v)[:40] for v in head)
    return f'[{text}, ... ({len(items)} in all)]' if len(items) > n else f'[{text}]'


def validate_forward_command(values: Sequence[float], n_joints: int) -> np.ndarray:
    """Check a forward-controller command: exactly ``n_joints`` finite values."""
    q = np.asarray(values, dtype=float).reshape(-1)
    if q.shape[0] != n_joints:
        raise CommandError(f'forward command has {q.shape[0]} values, expected {n_joints} '
                           '(one per arm joint, in the configured joint order)')
    if not np.all(np.isfinite(q)):
        bad = [i for i in range(n_joints) if not np.isfinite(q[i])]
        raise CommandError(f'forward command has non-finite values at indices {bad}')
    return q


def clamp_to_limits(q: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """Clamp to [lower, upper]; returns (clamped, indices that were out of limits)."""
    qc = np.clip(q, lower, upper)
    return qc, np.flatnonzero(qc != q).tolist()


@dataclass
class _Trajectory:
    start_time: float                 # seconds, same clock as ``sample``'s ``now``
    times: np.ndarray                 # (N,) time_from_start, strictly increasing
    positions: np.ndarray             # (N, J) in the configured joint order
    start_positions: np.ndarray       # (J,) where the arm was told to be when it arrived


class TrajectoryFollower:
    """Joint-space trajectory interpolation in the manner of joint_trajectory_controller.

    Positions-only points are interpolated linearly (the JTC's spline with positions only);
    before the first point the arm moves from where it was commanded at the trajectory's start.
    After the last point it holds the last point.
    """

    def __init__(self, joint_names: Sequence[str]):
        self.joint_names = list(joint_names)
        self._traj: Optional[_Trajectory] = None

    @property
    def active(self) -> bool:
        return self._traj is not None

    def clear(self) -> None:
        self._traj = None

    def set_trajectory(self, joint_names: Sequence[str], times: Sequence[float],
                       positions: Sequence[Sequence[float]], start_time: float,
                       current: np.ndarray) -> None:
        """Validate and accept a trajectory (replacing the current one from ``start_time``).

        :param joint_names: the message's joint order; must name exactly the configured joints.
        :param times: time_from_start of each point (s).
        :param positions: one row per point, in ``joint_names`` order.
        :param start_time: when the trajectory starts (header stamp; 0 means now, resolved by the
            caller).
        :param current: the current commanded position (start of the first segment).
        """
        names = list(joint_names)
        unknown = sorted(set(names) - set(self.joint_names))
        if unknown:
            raise CommandError(f'trajectory names unknown joints {shorten(unknown)}; '
                               f'expected {self.joint_names}')
        missing = sorted(set(self.joint_names) - set(names))
        if missing or len(names) != len(self.joint_names):
            raise CommandError(f'trajectory must name each of {self.joint_names} once; '
                               f'missing {missing}, got {shorten(names)}')
        if len(times) == 0:
            raise CommandError('trajectory has no points')
        t = np.asarray(times, dtype=float)
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
            raise CommandError(f'time_from_start must be finite, >= 0 and strictly increasing, '
                               f'got {t.tolist()}')
        rows = [np.asarray(p, dtype=float).reshape(-1) for p in positions]
        for i, row in enumerate(rows):
            if row.shape[0] != len(names):
                raise CommandError(f'point {i} has {row.shape[0]} positions, expected '
                                   f'{len(names)}')
            if not np.all(np.isfinite(row)):
                raise CommandError(f'point {i} has non-finite positions')
        order = [names.index(j) for j in self.joint_names]
        p = np.stack(rows)[:, order]
        self._traj = _Trajectory(float(start_time), t, p, np.asarray(current, float).copy())

    def sample(self, now: float) -> Optional[np.ndarray]:
        """The commanded position at ``now`` (None if no trajectory or not started yet)."""
        tr = self._traj
        if tr is None or now < tr.start_time:
            return None
        t = now - tr.start_time
        times = np.concatenate([[0.0], tr.times]) if tr.times[0] > 0 else tr.times
        pos = np.vstack([tr.start_positions, tr.positions]) if tr.times[0] > 0 else tr.positions
        if t >= times[-1]:
            return pos[-1].copy()
        k = int(np.searchsorted(times, t, side='right')) - 1
        a = (t - times[k]) / (times[k + 1] - times[k])
        return (1.0 - a) * pos[k] + a * pos[k + 1]
