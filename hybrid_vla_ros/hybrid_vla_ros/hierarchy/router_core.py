"""ROS-free logic of the ``expert_router`` node: which action expert drives the active sub-goal.

One selection per active sub-goal (:func:`~.active_plan.subgoal_key`: a new plan, the same
sentence planned again, or the next sub-goal). With ``fixed`` set it is that expert with
probability 1; otherwise the learned router (a
:class:`~hybrid_vla_ros.motor.routing.RouterChooser`) scores the sub-goal's text and the arm's
state. The learned router needs the state: until a valid one has arrived the selection waits
(never a made-up state), and it is made on the first state that arrives.
"""
from dataclasses import dataclass, field
from typing import List, Optional

from .active_plan import ActivePlan, subgoal_key


@dataclass
class Selection:
    expert: str
    subgoal_id: str
    candidates: List[str] = field(default_factory=list)
    probabilities: List[float] = field(default_factory=list)


class RouterCore:
    def __init__(self, chooser=None, fixed: str = ''):
        if not fixed and chooser is None:
            raise ValueError('RouterCore needs a chooser or a fixed expert')
        self.chooser, self.fixed = chooser, fixed
        self.state = None
        self.key = None
        self.pending: Optional[ActivePlan] = None   # a plan whose selection waits for a state
        self.selected: Optional[Selection] = None

    def on_state(self, state) -> Optional[Selection]:
        """A validated policy state; the selection of a plan that waited for it, if any."""
        self.state = [float(v) for v in state]
        if self.pending is not None:
            plan, self.pending = self.pending, None
            return self.on_plan(plan)
        return None

    def on_plan(self, plan: ActivePlan) -> Optional[Selection]:
        """A (validated) plan or its re-publication: a new :class:`Selection` when it makes a
        new sub-goal active, else None (see :attr:`waiting`)."""
        key = subgoal_key(plan)
        if key is None or key == self.key:
            return None
        if not self.fixed and self.state is None:
            self.pending = plan
            return None
        self.key = key
        sg = plan.active
        if self.fixed:
            out = Selection(self.fixed, sg.id, [self.fixed], [1.0])
        else:
            probs = self.chooser.probabilities(
                {'skill': sg.skill, 'object': sg.object, 'description': sg.description},
                self.state)
            out = Selection(max(probs, key=probs.get), sg.id, list(probs),
                            [float(v) for v in probs.values()])
        self.selected = out
        return out

    @property
    def waiting(self) -> bool:
        """A sub-goal waits for a valid state before its expert is chosen."""
        return self.pending is not None
