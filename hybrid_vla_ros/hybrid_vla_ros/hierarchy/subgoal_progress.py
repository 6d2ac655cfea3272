"""When is the active sub-goal done? Decided from the measured state only (no ground truth).

A sub-goal is complete when the tool is within ``reach_tol`` of its target for
``hold_steps`` consecutive updates and, for a precision skill (``PRECISION_SKILLS``: descend,
place, touch, move_to: the target pose is the point of the step), has come to rest there or has
stopped closing in on it:

- at rest: over the last ``rest_window`` s the tool has stayed within ``still_speed`` x
  ``rest_window`` of where it is now (a window, not one update: the turning point of an
  oscillation is slow for an instant but not at rest), so the error left is what the motor policy
  converged to, not a snapshot of it passing through;
- stopped closing in: ``max_dwell`` s spent in all within ``reach_tol`` since the closest
  approach last improved by the fraction ``dwell_gain`` (a stochastic policy that dithers near
  the target, in and out of the ball, never rests; one that is still converging keeps improving
  its closest approach and is given the time).

A transit skill (move_above, lift, retreat: a way-station) is done on reaching ``reach_tol``
(with ``transit_rest``, once at rest or after ``max_dwell`` s within, as a precision skill
without the closing-in extension): waiting there for the arm to stop only spends the task's
time.

A gripper skill (grasp, release) needs instead the gripper settled in the commanded state, with
no rest asked of the tool. A sub-goal that makes no progress for ``timeout`` seconds is reported
stale (the strategic planner then re-plans): progress is the tool getting ``progress_tol`` closer
to the target than it has been, or the gripper moving. Slow but steady execution (a loaded
machine, a slow arm) is never mistaken for a stuck one; a sub-goal re-planned while it was still
being executed would replace the plan with one made from a half-done scene.
"""
from collections import deque
from typing import Optional

import numpy as np

from ..domain.vocabulary import PRECISION_SKILLS

GRIPPER_SKILLS = {'grasp': True, 'release': False}  # skill -> wants closed


class SubgoalProgress:
    def __init__(self, reach_tol: float = 0.01, settle_tol: float = 0.02, hold_steps: int = 2,
                 timeout: float = 20.0, progress_tol: float = 0.005, still_speed: float = 0.001,
                 max_dwell: float = 1.0, rest_window: float = 0.2, dwell_gain: float = 0.2,
                 transit_rest: bool = False):
        self.reach_tol, self.settle_tol, self.still_speed = reach_tol, settle_tol, still_speed
        self.max_dwell, self.rest_window, self.dwell_gain = max_dwell, rest_window, dwell_gain
        self.hold_steps, self.timeout = hold_steps, timeout
        self.progress_tol, self.transit_rest = progress_tol, transit_rest
        self.reset(None)

    def reset(self, started_at: Optional[float]) -> None:
        self.started_at = started_at   # of the sub-goal, then of its last progress
        self.prev_g = None
        self.recent = deque()  # (time, tool position) of the updates of the last rest_window s,
        #                        the last update's last
        self.within_time = 0.0  # time within reach_tol since the closest approach improved (s)
        self.within_best = None  # closest approach within reach_tol (m)
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
        dt = now - self.recent[-1][0] if self.recent else 0.0   # since the last update
        still = self._at_rest(now, tool_pos)
        dist = float(np.linalg.norm(np.asarray(target_pos) - tool_pos))
        within = dist < self.reach_tol
        precise = skill in PRECISION_SKILLS
        if within and (self.within_best is None
                       or (precise and dist < (1.0 - self.dwell_gain) * self.within_best)):
            self.within_best, self.within_time = dist, 0.0   # still closing in
        elif within and self.prev_within:
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
        elif precise or self.transit_rest:
            ok = within and at_rest
        else:
            ok = within
        self.count = self.count + 1 if ok else 0
        if self.count >= self.hold_steps:
            return 'done'
        if now - self.started_at > self.timeout:
            return 'stale'
        return 'active'

    def _at_rest(self, now: float, tool_pos) -> bool:
        """The tool has stayed within ``still_speed`` x ``rest_window`` of ``tool_pos`` for the
        last ``rest_window`` s."""
        recent = self.recent
        if recent and now < recent[-1][0]:
            recent.clear()   # time went back: a new clock
        recent.append((now, tool_pos))
        while len(recent) > 1 and recent[1][0] <= now - self.rest_window + 1e-9:
            recent.popleft()
        if now - recent[0][0] < self.rest_window - 1e-9:
            return False     # not watched for a whole window yet
        radius = self.still_speed * self.rest_window
        return all(float(np.linalg.norm(p - tool_pos)) <= radius for _, p in recent)


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
