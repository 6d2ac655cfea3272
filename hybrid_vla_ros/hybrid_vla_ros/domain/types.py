"""The sub-goal and waypoint types every level exchanges (one definition each).

A ``SubGoal`` is a TCP target pose in the base frame (xyz m, quat xyzw) with the gripper
closure at its end (0 open .. 1 closed); a ``Waypoint`` a timed TCP pose on the way to one.
Dict forms: ``SubGoal.to_dict`` / ``from_dict`` and ``Waypoint.to_dict`` / ``from_dict``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(init=False)
class SubGoal:
    """A grounded sub-goal. ``position`` / ``orientation`` are aliases of ``target_pos`` /
    ``target_quat`` (the planners' names); ``reference`` is the place reference of a
    ``place`` / carrying ``move_above`` step (a pad or the object to stack on), '' otherwise;
    ``servo``: precise target, the motor level may finish with a closed-loop servo phase."""
    id: str
    skill: str
    object: str
    description: str
    target_pos: np.ndarray
    target_quat: np.ndarray
    gripper: float = 0.0
    confidence: float = 1.0
    servo: bool = False
    reference: str = ''

    def __init__(self, id, skill, object, description, target_pos=None, target_quat=None,
                 gripper=0.0, confidence=1.0, servo=False, reference='', *, position=None,
                 orientation=None):
        if (target_pos is None) == (position is None) \
                or (target_quat is None) == (orientation is None):
            raise TypeError('SubGoal needs exactly one of target_pos/position and one of '
                            'target_quat/orientation')
        self.id, self.skill, self.object, self.description = id, skill, object, description
        self.target_pos = target_pos if position is None else position
        self.target_quat = target_quat if orientation is None else orientation
        self.gripper, self.confidence, self.servo = gripper, confidence, servo
        self.reference = reference

    @property
    def position(self):
        return self.target_pos

    @position.setter
    def position(self, value):
        self.target_pos = value

    @property
    def orientation(self):
        return self.target_quat

    @orientation.setter
    def orientation(self, value):
        self.target_quat = value

    def to_dict(self) -> dict:
        """JSON-ready dict; 'reference' only when set."""
        d = {'id': self.id, 'skill': self.skill, 'object': self.object,
             'description': self.description,
             'target_pos': [float(v) for v in self.target_pos],
             'target_quat': [float(v) for v in self.target_quat],
             'gripper': self.gripper, 'confidence': self.confidence, 'servo': self.servo}
        if self.reference:
            d['reference'] = self.reference
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SubGoal:
        return cls(str(d.get('id', '')), d['skill'], str(d.get('object', '')),
                   str(d.get('description', '')), np.asarray(d['target_pos'], float),
                   np.asarray(d['target_quat'], float), float(d.get('gripper', 0.0)),
                   float(d.get('confidence', 1.0)), bool(d.get('servo', False)),
                   str(d.get('reference', '')))

    def to_expert(self) -> SubGoal:
        """A copy without the place reference, poses as float arrays (what the tactical/motor
        levels were trained on)."""
        return SubGoal(self.id, self.skill, self.object, self.description,
                       np.asarray(self.target_pos, float), np.asarray(self.target_quat, float),
                       float(self.gripper), float(self.confidence), bool(self.servo))


def subgoal_target(sg) -> tuple:
    """(skill, target position, target quaternion, gripper) of a ``SubGoal``, a sub-goal dict
    (skill, target_pos, target_quat, optional gripper) or any object with ``skill``,
    ``target_pos``/``position``, ``target_quat``/``orientation`` and ``gripper``."""
    if isinstance(sg, dict):
        return sg['skill'], sg['target_pos'], sg['target_quat'], sg.get('gripper', 0.0)
    if hasattr(sg, 'target_pos'):
        return sg.skill, sg.target_pos, sg.target_quat, sg.gripper
    return sg.skill, sg.position, sg.orientation, sg.gripper


@dataclass
class Waypoint:
    """TCP pose (base frame) + gripper, reached ``time_from_start`` s after the sub-goal
    started."""
    pos: np.ndarray
    quat: np.ndarray
    gripper: float
    time_from_start: float

    def to_dict(self):
        return {'pos': [float(v) for v in self.pos], 'quat': [float(v) for v in self.quat],
                'gripper': float(self.gripper), 'time_from_start': float(self.time_from_start)}

    @classmethod
    def from_dict(cls, d: dict) -> Waypoint:
        return cls(np.asarray(d['pos'], float), np.asarray(d['quat'], float),
                   float(d['gripper']), float(d['time_from_start']))
