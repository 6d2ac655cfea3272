"""ROS-free logic of the ``tactical_planner`` node: the waypoints of the active sub-goal.

Waypoints are computed once per active sub-goal (:func:`~.active_plan.subgoal_key`), from the
measured state at that moment (tool pose by FK, gripper), the sub-goal and the obstacle the
strategic level grounded; the sub-goal's target stays the final waypoint
(:func:`~.subgoal_progress.anchor_final_waypoint`). The same waypoints are returned on every
later :meth:`TacticalCore.tick` of that sub-goal (the node re-publishes them at its rate).
Nothing is returned (the levels below stop: the arm holds) without a state, without an active
sub-goal, when the waypoints could not be computed, or when the plan has not been received for
``plan_timeout`` s (the strategic level re-publishes it at 1 Hz: silence means it died or
hangs).
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..domain.types import Waypoint
from ..planning.skills import PlanningError
from .active_plan import ActivePlan, subgoal_key
from .subgoal_progress import anchor_final_waypoint


@dataclass
class TacticalStep:
    """What one :meth:`TacticalCore.tick` decided."""
    waypoints: Optional[List[Waypoint]] = None   # None: publish nothing
    subgoal_id: str = ''
    computed: bool = False        # the waypoints were computed on this tick (a new sub-goal)
    error: str = ''               # why a new sub-goal got no waypoints
    went_stale: bool = False      # the plan timed out on this tick


class TacticalCore:
    """``planner``: a :class:`~hybrid_vla_ros.planning.tactical_planner.TacticalPlanner` (or
    anything with its ``waypoints(subgoal, observation)``); ``kinematics``: the robot's FK;
    ``n_joints``: the arm joints at the front of a state (the gripper closure follows)."""

    def __init__(self, planner, kinematics, n_joints: int, *, plan_timeout: float = 3.0):
        self.planner, self.kin, self.n = planner, kinematics, int(n_joints)
        self.plan_timeout = float(plan_timeout)
        self.plan: Optional[ActivePlan] = None
        self.plan_received: Optional[float] = None
        self.stale = False
        self.state: Optional[np.ndarray] = None
        self.key = None
        self.waypoints: Optional[List[Waypoint]] = None
        self.subgoal_id = ''
        self.errors = 0

    def on_plan(self, plan: ActivePlan, now: float) -> bool:
        """A (validated) plan or its re-publication; True if it makes a new sub-goal active
        (the caller then ticks at once instead of at its next period). Clears a plan timeout."""
        self.plan, self.plan_received = plan, float(now)
        self.stale = False
        key = subgoal_key(plan)
        return key is not None and key != self.key and self.state is not None

    def on_state(self, state) -> None:
        """A validated policy state (arm joints, then the gripper closure)."""
        self.state = np.asarray(state, dtype=float)

    def tick(self, now: float) -> TacticalStep:
        step = TacticalStep()
        plan = self.plan
        if plan is not None and self.plan_timeout > 0 \
                and now - self.plan_received > self.plan_timeout:
            step.went_stale = not self.stale
            self.stale = True
            plan = None
        key = subgoal_key(plan)
        if key is None or self.state is None:
            self.key, self.waypoints, self.subgoal_id = None, None, ''
            return step   # whatever comes next is a newly active sub-goal
        if key != self.key:
            self.key = key
            sg = plan.active
            self.subgoal_id = sg.id
            try:
                self.waypoints = self.compute(plan, sg)
                step.computed = True
            except (PlanningError, ValueError) as e:
                self.errors += 1
                self.waypoints = None
                step.error = str(e)
        step.waypoints, step.subgoal_id = self.waypoints, self.subgoal_id
        return step

    def observation(self, plan: ActivePlan) -> dict:
        """The tactical planner's observation now: tool pose (FK of the measured joints),
        gripper closure and the grounded obstacle."""
        tool_pos, tool_quat = self.kin.fk(self.state[:self.n])
        obs = {'tool_pos': tool_pos, 'tool_quat': tool_quat, 'gripper': float(self.state[self.n])}
        if plan.obstacle is not None:
            obs['obstacle'] = {'pos': np.asarray(plan.obstacle['pos'], float),
                               'yaw': float(plan.obstacle['yaw'])}
        return obs

    def compute(self, plan: ActivePlan, sg) -> List[Waypoint]:
        wps = self.planner.waypoints(sg, self.observation(plan))
        return anchor_final_waypoint(wps, sg.position, sg.orientation)
