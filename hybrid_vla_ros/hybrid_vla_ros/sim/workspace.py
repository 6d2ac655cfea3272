"""The table-top workspace of a robot: where the tasks put objects, pads, targets and walls.

The tasks are written once, in the coordinates of a reference rectangle (:data:`REFERENCE`:
x 0.36..0.62 m, y -0.26..0.26 m in front of the base). :func:`workspace_of` finds, for any
robot, the largest copy of that rectangle (same aspect, scale <= 1, so task difficulty and
tolerances never grow) in which a top-down grasp is reachable: inverse kinematics with the
tool pointing down converges inside the joint limits at every point of a 5 x 5 grid, at the
grasp height and at the lift height, for gripper yaws of 0 and +-45 degrees. A task point
``(x, y)`` of the reference maps to ``(cx + (x - 0.49) s, cy + y s)``.

The default scene camera (:func:`scene_camera`) looks at the workspace centre from beyond its
far edge, unless the robot YAML mounts it (``camera_extrinsics``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
import math
from typing import Tuple

import numpy as np

from .kinematics import down_quat

REF_CENTRE = (0.49, 0.0)
REF_HALF = (0.13, 0.26)
# heights the tool must reach pointing down (m): object centre (grasp) and the lift / reach top
CHECK_HEIGHTS = (0.02, 0.30)
CHECK_YAWS = (0.0, math.pi / 4, -math.pi / 4)
SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
GRID = 5


@dataclass(frozen=True)
class Workspace:
    """A rectangle on the table (base frame) and its scale relative to the reference."""

    centre: Tuple[float, float]
    scale: float = 1.0

    @property
    def half(self) -> Tuple[float, float]:
        return (REF_HALF[0] * self.scale, REF_HALF[1] * self.scale)

    @property
    def x_range(self) -> Tuple[float, float]:
        return (self.x(REF_CENTRE[0] - REF_HALF[0]), self.x(REF_CENTRE[0] + REF_HALF[0]))

    @property
    def y_range(self) -> Tuple[float, float]:
        return (self.y(REF_CENTRE[1] - REF_HALF[1]), self.y(REF_CENTRE[1] + REF_HALF[1]))

    def x(self, x_ref: float) -> float:
        """A reference x coordinate in this workspace (exactly itself in the reference)."""
        if self.scale == 1.0 and self.centre[0] == REF_CENTRE[0]:
            return float(x_ref)
        return float(self.centre[0] + (x_ref - REF_CENTRE[0]) * self.scale)

    def y(self, y_ref: float) -> float:
        if self.scale == 1.0 and self.centre[1] == REF_CENTRE[1]:
            return float(y_ref)
        return float(self.centre[1] + (y_ref - REF_CENTRE[1]) * self.scale)

    def xy(self, p) -> np.ndarray:
        return np.array([self.x(p[0]), self.y(p[1])])

    def d(self, dist_ref: float) -> float:
        """A reference distance in this workspace."""
        return float(dist_ref * self.scale)


REFERENCE = Workspace(REF_CENTRE, 1.0)


def reachable(kin, home_q, ws: Workspace) -> bool:
    """Top-down IK converges inside the joint limits on the grid of ``ws`` (module docstring)."""
    xs = np.linspace(*ws.x_range, GRID)
    ys = np.linspace(*ws.y_range, GRID)
    for z in CHECK_HEIGHTS:
        for yaw in CHECK_YAWS:
            quat = down_quat(yaw)
            q_prev = home_q
            for x in xs:
                for y in ys:
                    q, ok, _, _ = kin.ik((x, y, z), quat, q0=q_prev, q_rest=home_q,
                                         max_iters=200)
                    if not ok:
                        q, ok, _, _ = kin.ik((x, y, z), quat, q0=home_q, q_rest=home_q,
                                             max_iters=300)
                    if not ok:
                        return False
                    q_prev = q
    return True


@lru_cache(maxsize=16)
def _workspace(robot) -> Workspace:
    kin = robot.kinematics()
    reach = kin.reach()
    for s in SCALES:
        hx = REF_HALF[0] * s
        # centres from the reference outwards, never beyond what the arm could reach
        cands = sorted({round(c, 3) for c in np.arange(0.2, reach, 0.03)} | {REF_CENTRE[0]},
                       key=lambda c: abs(c - REF_CENTRE[0]))
        for cx in cands:
            if cx - hx < 0.1 or cx + hx > reach:
                continue
            ws = Workspace((float(cx), 0.0), s)
            if reachable(kin, robot.home_q, ws):
                return ws
    raise ValueError(f'{robot.config_file}: robot {robot.name!r} reaches no table-top '
                     f'workspace (top-down IK fails for every rectangle of scale >= '
                     f'{SCALES[-1]}; check base_frame/tool_frame and the joint limits)')


def workspace_of(robot) -> Workspace:
    """The robot's workspace (cached per robot model)."""
    return _workspace(robot)


def scene_camera(robot) -> np.ndarray:
    """The scene camera's optical frame in the base frame (4x4) for ``robot``."""
    if robot.camera_extrinsics is not None:
        return robot.camera_extrinsics.copy()
    ws = workspace_of(robot)
    return robot.camera_mounting(ws.centre, 2.04 * ws.half[1])
