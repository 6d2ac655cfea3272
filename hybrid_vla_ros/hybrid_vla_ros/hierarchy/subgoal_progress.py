"""When is the active sub-goal done? Decided from the measured state only (no ground truth).

A sub-goal is complete when the tool is within ``reach_tol`` of its target for
``hold_steps`` consecutive updates and, for a motion skill, has come to rest there (moving
slower than ``still_speed``: the arm has finished its approach, so the error left is what the
motor policy converged to, not a snapshot of it passing within ``reach_tol``) or has spent
``max_dwell`` s in all within ``reach_tol`` (a stochastic policy that dithers near the target,
in and out of the ball, never rests); a gripper skill (grasp, release) needs instead the gripper
settled in the commanded state, with no rest asked of the tool. A sub-goal that makes no
progress for ``timeout`` seconds is reported stale (the strategic planner then re-plans):
progress is the tool getting ``progress_tol`` closer to the target than it has been, or the
gripper moving. Slow but steady execution (a loaded machine, a slow arm) is never mistaken for
a stuck one; a sub-goal re-planned while it was still being executed would replace the plan
with one made from a half-done scene.
"""
from typing import Optional

import numpy as np

GRIPPER_SKILLS = {'grasp': True, 'release': False}  # skill -> wants closed


class SubgoalProgress:
    def __init__(self, reach_tol: float = 0.01, settle_tol: float = 0.02, hold_steps: int = 2,
                 timeout: float = 20.0, progress_tol: float = 0.005, still_speed: float = 0.001,
                 max_dwell: float = 1.0):
        self.reach_tol, self.settle_tol, self.still_speed = reach_tol, settle_tol, still_speed
        self.max_dwell = max_dwell
        self.hold_steps, self.timeout = hold_steps, timeout
        self.progress_tol = progress_tol
        self.reset(None)

    def reset(self, started_at: Optional[float]) -> None:
        self.started_at = started_at   # of the sub-goal, then of its last progress
        self.prev_g = None
        self.prev_tool = None  # (time, tool position) of the last update
        self.within_time = 0.0  # time spent within reach_tol so far (s)
        self.prev_within = False
        self.count = 0
        self.best = None      # closest distance to the target so far (m)
        self.best_g = None    # gripper when progress was last seen

    def update(self, now: float, skill: str, target_pos, tool_pos, gripper: float) -> str:
        """'done', 'stale' or 'active' for the sub-goal being executed."""
        if self.started_at is None:
            self.started_at = now
        settled = self.prev_g is not None and abs(gripper - self.prev_g) < self.settle_tol
        self.prev_g = gripper
        tool_pos = np.asarray(tool_pos, float)
        still = False
        if self.prev_tool is not None and now > self.prev_tool[0]:
            speed = float(np.linalg.norm(tool_pos - self.prev_tool[1])) / (now - self.prev_tool[0])
            still = speed < self.still_speed
        elif self.prev_tool is not None:   # the same instant again: judged as the last one was
            still = self.count > 0
        dt = now - self.prev_tool[0] if self.prev_tool is not None else 0.0
        self.prev_tool = (now, tool_pos)
        dist = float(np.linalg.norm(np.asarray(target_pos) - tool_pos))
        within = dist < self.reach_tol
        if within and self.prev_within:
            self.within_time += max(dt, 0.0)
        self.prev_within = within
        at_rest = still or self.within_time >= self.max_dwell
        if self.best is None or dist < self.best - self.progress_tol \
                or abs(gripper - self.best_g) > self.settle_tol:
            self.best, self.best_g, self.started_at = dist if self.best is None else \
                min(dist, self.best), gripper, now
        if skill in GRIPPER_SKILLS:
            closed = GRIPPER_SKILLS[skill]
            ok = within and settled and ((gripper > 0.3) if closed else (gripper < 0.2))
        else:
            ok = within and at_rest
        self.count = self.count + 1 if ok else 0
        if self.count >= self.hold_steps:
            return 'done'
        if now - self.started_at > self.timeout:
            return 'stale'
        return 'active'


def anchor_final_waypoint(waypoints, target_pos, target_quat):
    """The sub-goal's target is the final waypoint: the tactical level adds via-points and
    timing, it does not move the goal the strategic level grounded (and against which completion
    is judged). Returns the list with the last waypoint's pose replaced."""
    import dataclasses
    if not waypoints:
        return waypoints
    last = dataclasses.replace(waypoints[-1], pos=np.asarray(target_pos, float),
                               quat=np.asarray(target_quat, float))
    return list(waypoints[:-1]) + [last]
