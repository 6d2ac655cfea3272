"""Skill -> TCP target pose rules, written once for the scripted expert (ground truth) and the
strategic planner (grounded image): hover, lift and place heights, top-down grasp yaw.

Positions in the base frame (m), quaternions xyzw.
"""
import numpy as np

from .rotations import down_quat

HOVER = 0.10        # m above an object's top for move_above (TCP height margin)
LIFT_Z = 0.20       # m TCP height after a lift
PLACE_DROP = 0.004  # m gap left under a placed object before release
TCP_TO_FINGERTIP = 0.015  # m, fingertips lie this far beyond tool0 along the tool z axis
STACK_XY_TOL = 0.03  # m: an object this far from where the plan puts it has not been moved yet


def grasp_quat(shape: str, yaw: float = 0.0) -> np.ndarray:
    """Top-down grasp orientation: cubes at their (face-aligned) ``yaw``, anything else 0."""
    return down_quat(yaw if shape == 'cube' else 0.0)


def place_quat() -> np.ndarray:
    """Orientation while carrying, placing, releasing and retreating."""
    return down_quat(0.0)


def touch_position(pos, half: float) -> np.ndarray:
    """TCP position that puts the fingertips on the top-face centre of an object."""
    return np.asarray(pos, float) + np.array([0.0, 0.0, half + TCP_TO_FINGERTIP])


def place_position(xy, surface_z: float, half: float) -> np.ndarray:
    """TCP (= object centre) position placing an object of half height ``half`` at ``xy`` on a
    surface at height ``surface_z``."""
    return np.array([xy[0], xy[1], surface_z + half + PLACE_DROP])


def stack_surface(ref_pos, ref_half: float, planned_xy=None) -> tuple:
    """(xy, surface height) to place on the object at ``ref_pos``: where it is now, or, if the
    plan puts it at ``planned_xy`` and it is not there yet, on top of it there."""
    r = np.asarray(ref_pos, float)
    if planned_xy is not None and np.linalg.norm(r[:2] - planned_xy) >= STACK_XY_TOL:
        return np.asarray(planned_xy, float), ref_half * 2.0
    return r[:2], r[2] + ref_half


def step_target(skill: str, pos=None, half: float = 0.0, shape: str = '', yaw: float = 0.0,
                place=None, before_touch: bool = False) -> tuple:
    """TCP target of one skill step -> (position (3,), quat (4,), gripper, servo).

    ``pos``/``half``/``shape``/``yaw``: the object the step acts on (centre, half height,
    shape, grasp yaw). ``place``: the place pose (``place_position``) for ``place``, the carrying
    ``move_above`` (pass it to select that case) and ``release``/``retreat`` (where the object
    was put, or the object's position). ``before_touch``: a ``move_above`` followed by ``touch``.
    """
    if skill == 'move_to':
        return np.asarray(pos, float), down_quat(yaw), 0.0, True
    if skill in ('place', 'release', 'retreat') or (skill == 'move_above' and place is not None):
        p = np.asarray(place, float)
        if skill == 'move_above':
            return np.array([p[0], p[1], max(LIFT_Z, p[2] + HOVER)]), place_quat(), 1.0, False
        if skill == 'retreat':
            return p + np.array([0.0, 0.0, HOVER]), place_quat(), 0.0, False
        return p, place_quat(), 1.0 if skill == 'place' else 0.0, False
    o = np.asarray(pos, float)
    q = grasp_quat(shape, yaw)
    if skill == 'touch':
        return touch_position(o, half), q, 1.0, True
    if skill == 'move_above':
        if before_touch:
            return touch_position(o, half) + np.array([0.0, 0.0, HOVER]), q, 1.0, False
        return o + np.array([0.0, 0.0, half + HOVER]), q, 0.0, False
    if skill in ('descend', 'grasp'):
        return np.array([o[0], o[1], max(o[2], half)]), q, 1.0 if skill == 'grasp' else 0.0, False
    if skill == 'lift':
        return np.array([o[0], o[1], LIFT_Z]), q, 1.0, False
    raise ValueError(f'no pose rule for skill {skill!r}')
