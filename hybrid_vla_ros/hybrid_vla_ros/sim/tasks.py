"""Table-top task suite: seeded scenes, language instructions, success checks.

Every task is deterministic given its seed: ``Task.sample(seed)`` returns the same ``Episode``
(object poses/colours, pads, target marker, obstacle, start pose) and ``Task.instruction(seed)``
the same phrase. Phrasings come in two disjoint lists: ``train_phrases`` (for demonstrations and
training) and ``held_out_phrases`` (evaluation only: training must never use them).

Units: metres, radians; ``error_mm`` in millimetres. ``max_steps`` counts control steps at
``CONTROL_DT`` (20 Hz).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..domain.rotations import down_quat
from ..domain.skill_rules import touch_position
from ..domain.vocabulary import (
    OBJECT_COLORS,
    OBJECT_HALF_HEIGHT,
    OBJECT_SHAPE,
    OBJECT_SLOTS,
    OBSTACLE_HALF,
    PAD_SLOTS,
)

CONTROL_DT = 0.05  # s, 20 Hz control period of the motor level

# objects on the table stay this far apart (m); positions are drawn in the robot's workspace
MIN_SEPARATION = 0.10

# Seed split convention (``domain.seeds``): demonstrations/training use seeds below
# EVAL_SEED_START, evaluation uses seeds from EVAL_SEED_START on (scenes never seen in training)
# together with held_out phrasings.


@dataclass
class Episode:
    task: str
    seed: int
    objects: dict = field(default_factory=dict)   # slot -> {pos, yaw, color}
    pads: dict = field(default_factory=dict)      # slot -> {pos, color}
    target: tuple | None = None                   # marker position (reach, detour)
    obstacle: dict | None = None                  # {pos, yaw}
    start_q: np.ndarray | None = None             # None = home pose
    start_gripper: float = 0.0
    info: dict = field(default_factory=dict)      # task-specific references (slots, colours)


def object_name(ep: Episode, slot: str) -> str:
    return f"{ep.objects[slot]['color']} {OBJECT_SHAPE[slot]}"


def _sample_points(rng, n, ws, existing=(), min_sep=MIN_SEPARATION, exclude=(), max_tries=5000):
    """n xy points in the workspace ``ws``, pairwise >= min_sep and away from existing/exclude
    points."""
    x_range, y_range = ws.x_range, ws.y_range
    pts = [np.asarray(p, float)[:2] for p in existing]
    excl = [(np.asarray(c, float)[:2], r) for c, r in exclude]
    out = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        p = np.array([rng.uniform(*x_range), rng.uniform(*y_range)])
        if any(np.linalg.norm(p - q) < min_sep for q in pts):
            continue
        if any(np.linalg.norm(p - c) < r for c, r in excl):
            continue
        pts.append(p)
        out.append(p)
    if len(out) < n:
        raise RuntimeError('could not place objects')
    return out


class Task:
    """A task's scenes, language and success test, laid out in one robot's workspace
    (:func:`get_task` binds a task to a robot)."""
    name = 'base'
    max_steps = 400
    skills: tuple = ()
    train_phrases: tuple = ()
    held_out_phrases: tuple = ()

    def __init__(self, robot=None):
        self._robot = robot

    @property
    def robot(self):
        from ..robot import load_robot
        if self._robot is None:
            self._robot = load_robot()
        return self._robot

    @property
    def ws(self):
        from .workspace import workspace_of
        return workspace_of(self.robot)

    # -------------------------------------------------------------- scene
    def sample(self, seed: int) -> Episode:
        raise NotImplementedError

    def _rng(self, seed, salt=0):
        return np.random.default_rng([int(seed), salt, sum(map(ord, self.name))])

    def _place_objects(self, rng, ep, colors: dict, exclude=(), extra_existing=()):
        """Put every object slot on the table with the given colours (slot -> colour)."""
        pts = _sample_points(rng, len(OBJECT_SLOTS), self.ws, existing=extra_existing,
                             exclude=exclude)
        for slot, p in zip(OBJECT_SLOTS, pts):
            h = OBJECT_HALF_HEIGHT[OBJECT_SHAPE[slot]]
            ep.objects[slot] = {'pos': (float(p[0]), float(p[1]), h),
                                'yaw': float(rng.uniform(-np.pi / 4, np.pi / 4)),
                                'color': colors[slot]}

    # -------------------------------------------------------------- language
    def phrase_fields(self, ep: Episode) -> dict:
        return {}

    def instruction(self, seed: int, held_out: bool = False) -> str:
        ep = self.sample(seed)
        phrases = self.held_out_phrases if held_out else self.train_phrases
        rng = self._rng(seed, salt=7)
        return phrases[int(rng.integers(len(phrases)))].format(**self.phrase_fields(ep))

    def all_instructions(self, seed: int, held_out: bool = False) -> list:
        ep = self.sample(seed)
        phrases = self.held_out_phrases if held_out else self.train_phrases
        return [p.format(**self.phrase_fields(ep)) for p in phrases]

    # -------------------------------------------------------------- evaluation
    def success(self, sim) -> bool:
        raise NotImplementedError

    def error_mm(self, sim) -> float:
        raise NotImplementedError


# ============================================================================ reach
class ReachTask(Task):
    name = 'reach'
    max_steps = 200
    tolerance_mm = 1.0
    skills = ('move_to',)
    train_phrases = (
        'move the gripper to the green marker',
        'reach the green target',
        'bring the tool to the green ball',
        'go to the marked target',
        'put the gripper at the green sphere',
        'move the end effector onto the target marker',
    )
    held_out_phrases = (
        'navigate the fingertips to the little green dot',
        'position your hand exactly at the green marker',
    )

    def sample(self, seed):
        rng = self._rng(seed)
        ep = Episode(task=self.name, seed=int(seed))
        ws = self.ws
        target = (ws.x(rng.uniform(0.35, 0.62)), ws.y(rng.uniform(-0.25, 0.25)),
                  rng.uniform(0.10, 0.30))
        colors = {s: OBJECT_COLORS[i % len(OBJECT_COLORS)] for i, s in
                  enumerate(rng.permutation(OBJECT_SLOTS))}
        colors = {s: (c if c != 'green' else 'orange') for s, c in colors.items()}
        self._place_objects(rng, ep, colors)
        ep.target = tuple(float(v) for v in target)
        ep.info = {'target': ep.target, 'yaw': 0.0}
        return ep

    def target_pose(self, sim):
        return np.asarray(sim.episode.target), down_quat(sim.episode.info.get('yaw', 0.0))

    def error_mm(self, sim):
        p, _ = sim.tool_pose()
        return float(np.linalg.norm(p - np.asarray(sim.episode.target)) * 1000.0)

    def success(self, sim):
        return self.error_mm(sim) <= self.tolerance_mm


# ============================================================================ pick & place
def _resting_on(sim, slot, surface_z, xy_ref=None, xy_tol=0.025, z_tol=0.006):
    o = sim.object_poses()[slot]
    h = o['half_height']
    z_ok = abs(o['pos'][2] - (surface_z + h)) <= z_tol
    # upright: object z axis close to vertical
    from .kinematics import quat_to_mat
    up = quat_to_mat(o['quat'])[:, 2]
    upright = abs(up[2]) > np.cos(np.deg2rad(12))
    xy = 0.0 if xy_ref is None else float(np.linalg.norm(o['pos'][:2] - np.asarray(xy_ref)[:2]))
    return (z_ok and upright and xy <= xy_tol), xy


def _released(sim, slot):
    return sim.gripper_command() < 0.5 and sim.finger_contacts(slot) == 0


class PickPlaceTask(Task):
    name = 'pick_place'
    max_steps = 500
    xy_tolerance = 0.025
    skills = ('move_above', 'descend', 'grasp', 'lift', 'place', 'release', 'retreat')
    train_phrases = (
        'put the {obj} on the {pad} pad',
        'place the {obj} onto the {pad} pad',
        'pick up the {obj} and put it on the {pad} pad',
        'move the {obj} to the {pad} pad',
        'transfer the {obj} onto the {pad} pad',
        'set the {obj} on the {pad} pad',
    )
    held_out_phrases = (
        'could you drop the {obj} off at the {pad} pad',
        'grab the {obj} and leave it on top of the {pad} pad',
    )

    def sample(self, seed):
        rng = self._rng(seed)
        ep = Episode(task=self.name, seed=int(seed))
        cols = list(rng.permutation(OBJECT_COLORS))
        slots = list(OBJECT_SLOTS)
        # target object: a cube most of the time, sometimes the cylinder
        obj = 'cyl_0' if rng.uniform() < 0.2 else str(rng.choice(slots[:4]))
        colors = {}
        obj_color = cols[0]
        others = [c for c in OBJECT_COLORS if c != obj_color]
        for s in slots:
            colors[s] = obj_color if s == obj else str(rng.choice(others))
        # the target must be unique by colour+shape: distractor cubes never share its colour
        pad_cols = list(rng.permutation(OBJECT_COLORS))[:2]
        pad_pts = _sample_points(rng, 2, self.ws)
        for slot, c, p in zip(PAD_SLOTS, pad_cols, pad_pts):
            ep.pads[slot] = {'pos': (float(p[0]), float(p[1]), 0.0), 'color': str(c)}
        self._place_objects(rng, ep, colors, extra_existing=pad_pts)
        ep.info = {'object': obj, 'pad': 'pad_0', 'object_color': obj_color,
                   'pad_color': str(pad_cols[0])}
        return ep

    def phrase_fields(self, ep):
        return {'obj': object_name(ep, ep.info['object']), 'pad': ep.info['pad_color']}

    def error_mm(self, sim):
        info = sim.episode.info
        o = sim.object_poses()[info['object']]['pos']
        pad = sim.object_poses()[info['pad']]['pos']
        return float(np.linalg.norm(o[:2] - pad[:2]) * 1000.0)

    def success(self, sim):
        info = sim.episode.info
        pad = sim.object_poses()[info['pad']]['pos']
        ok, _ = _resting_on(sim, info['object'], 0.0, pad, self.xy_tolerance)
        return bool(ok and _released(sim, info['object']))


# ============================================================================ stack
class StackTask(Task):
    name = 'stack'
    max_steps = 900
    skills = PickPlaceTask.skills
    train_phrases = (
        'put the {a} on the {pad} pad, then stack the {b} on the {a}',
        'stack the {b} on top of the {a} after placing the {a} on the {pad} pad',
        'build a tower on the {pad} pad: first the {a}, then the {b}',
        'place the {a} onto the {pad} pad and put the {b} on it',
        'first move the {a} to the {pad} pad, then put the {b} on top',
    )
    held_out_phrases = (
        'make a two-block stack on the {pad} pad with the {a} at the bottom and the {b} above',
        'set the {a} down on the {pad} pad and crown it with the {b}',
    )

    def sample(self, seed):
        rng = self._rng(seed)
        ep = Episode(task=self.name, seed=int(seed))
        cubes = list(rng.permutation(OBJECT_SLOTS[:4]))
        cols = list(rng.permutation(OBJECT_COLORS))
        colors = {s: str(c) for s, c in zip(cubes, cols)}
        colors['cyl_0'] = str(cols[4])
        pad_cols = list(rng.permutation(OBJECT_COLORS))[:2]  # two distinct pad colours
        pad_pts = _sample_points(rng, 2, self.ws)
        for slot, c, p in zip(PAD_SLOTS, pad_cols, pad_pts):
            ep.pads[slot] = {'pos': (float(p[0]), float(p[1]), 0.0), 'color': str(c)}
        self._place_objects(rng, ep, colors, extra_existing=pad_pts)
        ep.info = {'a': str(cubes[0]), 'b': str(cubes[1]), 'pad': 'pad_0',
                   'pad_color': str(pad_cols[0])}
        return ep

    def phrase_fields(self, ep):
        return {'a': object_name(ep, ep.info['a']), 'b': object_name(ep, ep.info['b']),
                'pad': ep.info['pad_color']}

    def _errors(self, sim):
        info = sim.episode.info
        poses = sim.object_poses()
        pad = poses[info['pad']]['pos']
        a, b = poses[info['a']]['pos'], poses[info['b']]['pos']
        return float(np.linalg.norm(a[:2] - pad[:2])), float(np.linalg.norm(b[:2] - a[:2])), a, b

    def error_mm(self, sim):
        ea, eb, _, _ = self._errors(sim)
        return 1000.0 * max(ea, eb)

    def success(self, sim):
        info = sim.episode.info
        poses = sim.object_poses()
        ok_a, _ = _resting_on(sim, info['a'], 0.0, poses[info['pad']]['pos'], 0.025)
        a = poses[info['a']]['pos']
        ok_b, _ = _resting_on(sim, info['b'], a[2] + OBJECT_HALF_HEIGHT['cube'], a, 0.015)
        return bool(ok_a and ok_b and _released(sim, info['b']) and _released(sim, info['a']))


# ============================================================================ multimodal
class MultimodalTask(Task):
    """Two red blocks: touching either one succeeds (a bimodal demonstration distribution)."""
    name = 'multimodal'
    max_steps = 300
    touch_tolerance_mm = 10.0
    skills = ('move_above', 'touch', 'retreat')
    train_phrases = (
        'touch a red block',
        'touch one of the red blocks',
        'tap any red cube',
        'put your fingertips on a red block',
        'touch whichever red cube you like',
    )
    held_out_phrases = (
        'make contact with either of the red cubes',
        'poke a red block',
    )

    def sample(self, seed):
        rng = self._rng(seed)
        ep = Episode(task=self.name, seed=int(seed))
        reds = list(rng.choice(OBJECT_SLOTS[:4], size=2, replace=False))
        non_red = [c for c in OBJECT_COLORS if c != 'red']
        colors = {s: ('red' if s in reds else str(rng.choice(non_red))) for s in OBJECT_SLOTS}
        # keep the two red blocks well apart so the two modes are distinct
        for _ in range(100):
            self._place_objects(rng, ep, colors)
            p0, p1 = (np.asarray(ep.objects[s]['pos']) for s in reds)
            if np.linalg.norm(p0 - p1) > self.ws.d(0.18):
                break
        ep.info = {'reds': [str(s) for s in sorted(reds)],
                   'start': {s: tuple(ep.objects[s]['pos']) for s in OBJECT_SLOTS}}
        return ep

    @staticmethod
    def touch_point(pos, half=OBJECT_HALF_HEIGHT['cube']):
        """TCP position that puts the fingertips on the top-face centre of a block."""
        return touch_position(pos, half)

    def _per_red(self, sim):
        p, _ = sim.tool_pose()
        poses = sim.object_poses()
        out = {}
        for s in sim.episode.info['reds']:
            out[s] = float(np.linalg.norm(p - self.touch_point(poses[s]['pos'])) * 1000.0)
        return out

    def error_mm(self, sim):
        return min(self._per_red(sim).values())

    def success(self, sim):
        poses = sim.object_poses()
        start = sim.episode.info['start']
        for s in sim.episode.info['reds']:
            if np.linalg.norm(poses[s]['pos'] - np.asarray(start[s])) > 0.01:
                return False  # pushed a red block away instead of touching it
        return self.error_mm(sim) <= self.touch_tolerance_mm


# ============================================================================ detour
@lru_cache(maxsize=8)
def _kinematics(robot):
    return robot.kinematics()


class DetourTask(Task):
    """Reach a goal on the far side of a wall that blocks the straight line from the start."""
    name = 'detour'
    max_steps = 400
    tolerance_mm = 5.0
    skills = ('move_to',)
    train_phrases = (
        'move the gripper to the green marker without hitting the wall',
        'go around the obstacle to the green target',
        'reach the green marker behind the wall',
        'get to the green target while avoiding the grey block',
        'avoid the wall and bring the tool to the green ball',
    )
    held_out_phrases = (
        'find a way past the barrier to the green dot',
        'steer clear of the grey wall on your way to the green marker',
    )

    def sample(self, seed):
        rng = self._rng(seed)
        ep = Episode(task=self.name, seed=int(seed))
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        ws = self.ws
        start = np.array([ws.x(rng.uniform(0.40, 0.55)), ws.y(-side * rng.uniform(0.17, 0.23)),
                          rng.uniform(0.07, 0.13)])
        goal = np.array([ws.x(rng.uniform(0.40, 0.55)), ws.y(side * rng.uniform(0.17, 0.23)),
                         rng.uniform(0.07, 0.13)])
        mid = 0.5 * (start + goal)
        d = goal[:2] - start[:2]
        yaw = float(np.arctan2(d[1], d[0]))  # wall thickness axis along the start->goal line
        ep.obstacle = {'pos': (float(mid[0]), float(mid[1]), OBSTACLE_HALF[2]), 'yaw': yaw}
        ep.target = tuple(float(v) for v in goal)
        kin = _kinematics(self.robot)
        home = self.robot.home_q
        q, ok, _, _ = kin.ik(start, down_quat(0.0), q0=home, q_rest=home)
        ep.start_q = q
        cols = {s: OBJECT_COLORS[i] for i, s in enumerate(rng.permutation(OBJECT_SLOTS))}
        cols = {s: (c if c != 'green' else 'orange') for s, c in cols.items()}
        # keep the objects away from the wall, the start and the goal
        exclude = [(mid, 0.16), (start, 0.09), (goal, 0.09)]
        self._place_objects(rng, ep, cols, exclude=exclude)
        ep.info = {'start': tuple(float(v) for v in start), 'target': ep.target,
                   'wall_top': 2 * OBSTACLE_HALF[2], 'yaw': 0.0}
        return ep

    def target_pose(self, sim):
        return np.asarray(sim.episode.target), down_quat(0.0)

    def error_mm(self, sim):
        p, _ = sim.tool_pose()
        return float(np.linalg.norm(p - np.asarray(sim.episode.target)) * 1000.0)

    def success(self, sim):
        return sim.obstacle_contacts == 0 and self.error_mm(sim) <= self.tolerance_mm


TASK_TYPES = {t.name: t for t in (ReachTask, PickPlaceTask, StackTask, MultimodalTask,
                                   DetourTask)}


@lru_cache(maxsize=64)
def _bound(name: str, robot) -> Task:
    return TASK_TYPES[name](robot)


def get_task(task, robot=None) -> Task:
    """The task ``task`` (a name or a Task) in ``robot``'s workspace (a robot model, name or
    YAML; None = the default robot). A Task bound to another robot is re-bound."""
    from ..robot import load_robot
    robot = load_robot() if robot is None else load_robot(robot)
    name = task.name if isinstance(task, Task) else str(task)
    if name not in TASK_TYPES:
        raise KeyError(f'unknown task {task!r}; known: {sorted(TASK_TYPES)}')
    if isinstance(task, Task) and task._robot is robot:
        return task
    return _bound(name, robot)


def task_names():
    return list(TASK_TYPES)


def instruction(task, seed: int, held_out: bool = False) -> str:
    return get_task(task).instruction(seed, held_out=held_out)
