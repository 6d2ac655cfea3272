"""Skill allow-list, object vocabulary, plan data types and plan validation.

Every planner backend (trained heads, LLM, VLM) produces *symbolic steps* (skill, object,
optional place reference) that are checked here against the allow-list and the scene's objects,
then grounded into a ``Plan`` whose sub-goals carry base-frame target poses. Nothing a backend
emits is ever executed: an unknown skill/object or a malformed entry raises ``PlanningError``.

Object names are descriptive, as a user says them: ``"<colour> cube"``, ``"<colour> cylinder"``,
``"<colour> pad"``, ``"target"`` (the reach/detour marker) and ``"obstacle"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import re

import numpy as np

# the vocabulary and the sub-goal type live in ``domain`` (re-exported here)
from ..domain.types import SubGoal  # noqa: F401
from ..domain.vocabulary import (  # noqa: F401
    OBJECT_COLORS,
    OBJECT_SHAPE,
    OBJECT_SKILLS,
    PLACING_SKILLS,
    SHAPES,
    SKILL_ALLOW_LIST,
    SPECIAL_OBJECTS,
    object_kind,
    object_vocabulary,
)

COLORS: tuple = OBJECT_COLORS
MAX_SUBGOALS = 32


def plan_bounds(reach: float):
    """Generous bounds (base frame, m) for any sub-goal target of an arm whose tool stays within
    ``reach`` of the base (``Kinematics.reach()``): the table top and the air above it."""
    r = float(reach)
    return np.array([-r, -r, -0.01]), np.array([r, r, r])


_SHAPE_ALIASES = {'cube': 'cube', 'block': 'cube', 'box': 'cube', 'cubes': 'cube',
                  'blocks': 'cube', 'cylinder': 'cylinder', 'can': 'cylinder',
                  'cylinders': 'cylinder', 'pad': 'pad', 'pads': 'pad'}
_TARGET_ALIASES = ('target', 'marker', 'green marker', 'green target', 'green ball',
                   'green sphere', 'target marker', 'green dot', 'goal')
_OBSTACLE_ALIASES = ('obstacle', 'wall', 'grey wall', 'gray wall', 'barrier', 'grey block')


class PlanningError(ValueError):
    """A plan (from any backend) is malformed or names an unknown skill/object."""


def normalize_object_name(name) -> str:
    """Canonical object name ("the Red block" -> "red cube"); raises PlanningError."""
    if not isinstance(name, str) or not name.strip():
        raise PlanningError(f'object must be a non-empty string, got {name!r}')
    s = re.sub(r'[^a-z ]', ' ', name.lower())
    s = ' '.join(w for w in s.split() if w not in ('the', 'a', 'an'))
    if s in _TARGET_ALIASES:
        return 'target'
    if s in _OBSTACLE_ALIASES:
        return 'obstacle'
    words = s.split()
    if len(words) == 2 and words[0] in COLORS and words[1] in _SHAPE_ALIASES:
        return f'{words[0]} {_SHAPE_ALIASES[words[1]]}'
    raise PlanningError(f'unknown object {name!r}; expected one of "<colour> cube|cylinder|pad", '
                        f'"target", "obstacle" with colour in {list(COLORS)}')


def scene_objects_from_episode(episode) -> set:
    """Names of the objects present in a sim episode (``sim.tasks.Episode``)."""
    names = {f"{o['color']} {OBJECT_SHAPE[slot]}" for slot, o in episode.objects.items()}
    names |= {f"{p['color']} pad" for p in episode.pads.values()}
    if episode.target is not None:
        names.add('target')
    if episode.obstacle is not None:
        names.add('obstacle')
    return names


@dataclass
class SymbolicStep:
    """One ungrounded step: allow-listed ``skill`` on ``object``; ``reference`` is the place
    reference of a ``place`` / carrying ``move_above`` step (a pad or the object to stack on)."""
    skill: str
    object: str
    reference: str = ''
    description: str = ''

    def key(self) -> tuple:
        return (self.skill, self.object)


@dataclass
class Plan:
    """Ordered sub-goals for one instruction, plus what the planner grounded in the image."""
    instruction: str
    subgoals: list
    backend: str = 'heads'
    frame_id: str = 'base_link'
    scene: dict = field(default_factory=dict)    # object name -> grounding dict
    timing_ms: dict = field(default_factory=dict)

    def symbolic(self) -> list:
        return [(s.skill, s.object) for s in self.subgoals]

    def to_dict(self) -> dict:
        return {'instruction': self.instruction, 'backend': self.backend,
                'frame_id': self.frame_id, 'subgoals': [s.to_dict() for s in self.subgoals]}


def _finite_vector(value, n, what) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PlanningError(f'{what} must be {n} numbers, got {value!r}') from exc
    if a.shape[0] != n or not np.all(np.isfinite(a)):
        raise PlanningError(f'{what} must be {n} finite numbers, got {value!r}')
    return a


def validate_steps(steps, scene_objects=None) -> list:
    """Check symbolic steps; return them with canonical object names. Raises PlanningError."""
    if not isinstance(steps, (list, tuple)) or not steps:
        raise PlanningError('a plan must be a non-empty list of steps')
    if len(steps) > MAX_SUBGOALS:
        raise PlanningError(f'plan has {len(steps)} steps, more than {MAX_SUBGOALS}')
    allowed = set(object_vocabulary()) if scene_objects is None else set(scene_objects)
    out = []
    for i, st in enumerate(steps):
        if not isinstance(st, SymbolicStep):
            raise PlanningError(f'step {i}: expected SymbolicStep, got {type(st).__name__}')
        if st.skill not in SKILL_ALLOW_LIST:
            raise PlanningError(f'step {i}: skill {st.skill!r} is not allow-listed '
                                f'{list(SKILL_ALLOW_LIST)}')
        obj = normalize_object_name(st.object)
        if obj not in allowed:
            raise PlanningError(f'step {i}: object {obj!r} is not in the scene '
                                f'{sorted(allowed)}')
        ref = ''
        if st.reference:
            ref = normalize_object_name(st.reference)
            if ref not in allowed:
                raise PlanningError(f'step {i}: reference {ref!r} is not in the scene '
                                    f'{sorted(allowed)}')
        if ref and ref == obj:
            raise PlanningError(f'step {i}: cannot {st.skill} the {obj} relative to itself')
        if st.skill in PLACING_SKILLS and not ref:
            raise PlanningError(f'step {i}: {st.skill!r} needs a reference (where to place)')
        if st.skill in OBJECT_SKILLS and object_kind(obj) != 'object':
            raise PlanningError(f'step {i}: cannot {st.skill} {obj!r} (not a graspable object)')
        if st.skill == 'move_to' and object_kind(obj) != 'target':
            # the TCP would be driven into the object: approach objects with move_above
            raise PlanningError(f'step {i}: move_to only takes the target marker, not {obj!r}')
        if not isinstance(st.description, str):
            raise PlanningError(f'step {i}: description must be a string')
        out.append(SymbolicStep(st.skill, obj, ref, st.description))
    return out


def validate_plan(plan, scene_objects=None, workspace=None) -> Plan:
    """Validate a grounded ``Plan`` (or list of ``SubGoal``) against the skill allow-list, the
    scene's object names (``scene_objects``; None = the whole vocabulary) and the workspace
    (``(lower, upper)`` bounds, e.g. :func:`plan_bounds`; None = any finite position).

    Returns the plan; raises ``PlanningError`` naming the sub-goal index and field.
    """
    subgoals = plan.subgoals if isinstance(plan, Plan) else plan
    if not isinstance(subgoals, (list, tuple)) or not subgoals:
        raise PlanningError('a plan must have at least one sub-goal')
    if len(subgoals) > MAX_SUBGOALS:
        raise PlanningError(f'plan has {len(subgoals)} sub-goals, more than {MAX_SUBGOALS}')
    allowed = set(object_vocabulary()) if scene_objects is None else set(scene_objects)
    seen = set()
    for i, sg in enumerate(subgoals):
        if not isinstance(sg, SubGoal):
            raise PlanningError(f'sub-goal {i}: expected SubGoal, got {type(sg).__name__}')
        if not isinstance(sg.id, str) or not sg.id or sg.id in seen:
            raise PlanningError(f'sub-goal {i}: id {sg.id!r} must be a unique non-empty string')
        seen.add(sg.id)
        if sg.skill not in SKILL_ALLOW_LIST:
            raise PlanningError(f'sub-goal {i}: skill {sg.skill!r} is not allow-listed '
                                f'{list(SKILL_ALLOW_LIST)}')
        if sg.object not in allowed:
            raise PlanningError(f'sub-goal {i}: object {sg.object!r} is not in the scene '
                                f'{sorted(allowed)}')
        if sg.reference and sg.reference not in allowed:
            raise PlanningError(f'sub-goal {i}: reference {sg.reference!r} is not in the scene')
        if not isinstance(sg.description, str):
            raise PlanningError(f'sub-goal {i}: description must be a string')
        p = _finite_vector(sg.position, 3, f'sub-goal {i}: target position')
        q = _finite_vector(sg.orientation, 4, f'sub-goal {i}: target quaternion')
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise PlanningError(f'sub-goal {i}: target quaternion not unit length ({q})')
        if workspace is not None and (np.any(p < workspace[0]) or np.any(p > workspace[1])):
            raise PlanningError(f'sub-goal {i}: target position {p.round(3).tolist()} outside '
                                f'the workspace {workspace[0].tolist()}..{workspace[1].tolist()}')
        for name, v in (('confidence', sg.confidence), ('gripper', sg.gripper)):
            if not isinstance(v, (int, float, np.floating)) or not math.isfinite(float(v)) \
                    or not 0.0 <= float(v) <= 1.0:
                raise PlanningError(f'sub-goal {i}: {name} must be in [0, 1], got {v!r}')
    return plan
