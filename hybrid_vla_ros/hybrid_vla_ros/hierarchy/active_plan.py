"""The plan in effect as the levels below the strategic planner see it, and the one definition of
"is this a new sub-goal?".

A plan's identity is its ``stamp``: the strategic level sets it when it applies a plan (or drops
one on a reset) and keeps it when it re-publishes the plan (``SubGoalList.header.stamp``). A
re-plan or the next episode's plan for the same sentence, with the same sub-goal ids, has a new
stamp. The active sub-goal's identity is (plan stamp, active index): :func:`subgoal_key`. The
tactical core, the router core and the ROS-free evaluation all use it. The strategic level's
state becomes an :class:`ActivePlan` through :func:`active_plan_of`; the nodes build the same
from the ``SubGoalList`` message (``nodes/conversions.py``).
"""
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..domain.types import SubGoal


@dataclass(frozen=True)
class ActivePlan:
    stamp_ns: int                  # the plan's identity (see the module docstring)
    instruction: str
    active_index: int
    subgoals: Tuple[SubGoal, ...]
    frame_id: str = 'base_link'
    # what the strategic level grounded that the tactical level routes around:
    # {'pos': (3,), 'yaw': rad}, or None
    obstacle: Optional[dict] = field(default=None, compare=False)

    @property
    def active(self) -> Optional[SubGoal]:
        """The active sub-goal, or None once every sub-goal is done (or the plan is empty)."""
        if 0 <= self.active_index < len(self.subgoals):
            return self.subgoals[self.active_index]
        return None


def active_plan_of(plan, stamp_s: float, active_index: int, frame_id: str = 'base_link'
                   ) -> ActivePlan:
    """The :class:`ActivePlan` of a strategic planner's ``Plan`` applied at ``stamp_s`` (the
    :class:`~.strategic_core.StrategicCore`'s ``stamp``) with ``active_index`` sub-goals done:
    what the levels below receive (the obstacle's grounded position and yaw included)."""
    ob = plan.scene.get('obstacle') if plan is not None else None
    obstacle = None if ob is None else {'pos': np.asarray(ob['pos'], float),
                                        'yaw': float(ob.get('yaw') or 0.0)}
    return ActivePlan(stamp_ns=int(round(stamp_s * 1e9)),
                      instruction=plan.instruction if plan is not None else '',
                      active_index=int(active_index),
                      subgoals=tuple(plan.subgoals) if plan is not None else (),
                      frame_id=frame_id, obstacle=obstacle)


def subgoal_key(plan: Optional[ActivePlan]) -> Optional[tuple]:
    """Identity of the active sub-goal of ``plan``: (plan stamp, active index); None if there is
    none (no plan, an empty plan, every sub-goal done)."""
    if plan is None or plan.active is None:
        return None
    return plan.stamp_ns, plan.active_index
