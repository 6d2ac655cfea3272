"""When is the active sub-goal done? Decided from the measured state only (no ground truth).

A sub-goal is complete when the tool is within ``reach_tol`` of its target and, for skills that
move the gripper, the gripper has settled in the commanded state, for ``hold_steps`` consecutive
updates. A sub-goal that makes no progress for ``timeout`` seconds is reported stale (the
strategic planner then re-plans): progress is the tool getting ``progress_tol`` closer to the
target than it has been, or the gripper moving. Slow but steady execution (a loaded machine, a
slow arm) is never mistaken for a stuck one; a sub-goal re-planned while it was still being
executed would replace the plan with one made from a half-done scene.
"""
from typing import Optional

import numpy as np

GRIPPER_SKILLS = {'grasp': True, 'release': False}  # skill -> wants closed


class SubgoalProgress:
    def __init__(self, reach_tol: float = 0.01, settle_tol: float = 0.02, hold_steps: int = 2,
                 timeout: float = 20.0, progress_tol: float = 0.005):
        self.reach_tol, self.settle_tol = reach_tol, settle_tol
        self.hold_steps, self.timeout = hold_steps, timeout
        self.progress_tol = progress_tol
        self.reset(None)

    def reset(self, started_at: Optional[float]) -> None:
        self.started_at = started_at   # of the sub-goal, then of its last progress
        self.prev_g = None
        self.count = 0
        self.best = None      # closest distance to the target so far (m)
        self.best_g = None    # gripper when progress was last seen

    def update(self, now: float, skill: str, target_pos, tool_pos, gripper: float) -> str:
        """'done', 'stale' or 'active' for the sub-goal being executed."""
        if self.started_at is None:
            self.started_at = now
        settled = self.prev_g is not None and abs(gripper - self.prev_g) < self.settle_tol
        self.prev_g = gripper
        dist = float(np.linalg.norm(np.asarray(target_pos) - np.asarray(tool_pos)))
        reached = dist < self.reach_tol
        if self.best is None or dist < self.best - self.progress_tol \
                or abs(gripper - self.best_g) > self.settle_tol:
            self.best, self.best_g, self.started_at = dist if self.best is None else \
                min(dist, self.best), gripper, now
        if skill in GRIPPER_SKILLS:
            closed = GRIPPER_SKILLS[skill]
            ok = reached and settled and ((gripper > 0.3) if closed else (gripper < 0.2))
        else:
            ok = reached
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
