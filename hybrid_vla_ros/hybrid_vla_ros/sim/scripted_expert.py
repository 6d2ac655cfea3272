"""Privileged scripted expert: plans sub-goals from ground truth, turns them into tool-pose
waypoints, then into joint-space trajectories (IK + minimum-jerk time scaling within the joint
velocity limits), and drives the sim closed loop at the control rate (20 Hz).

Layers (mirroring the ROS graph):
- ``plan(task_state)``                -> [SubGoal]       (strategic level)
- ``waypoints(subgoal, state)``       -> [Waypoint]      (tactical level)
- ``joint_trajectory(wps, q0, kin)``  -> (N,n), (N,)     (motor level)
- ``ScriptedExpert.act(sim)``         -> (q, gripper)    (closed-loop driver, one control step)
"""
from __future__ import annotations

import numpy as np

from ..domain.skill_rules import (  # noqa: F401 (HOVER, LIFT_Z, PLACE_DROP re-exported)
    HOVER,
    LIFT_Z,
    PLACE_DROP,
    TCP_TO_FINGERTIP,
    place_position,
    stack_surface,
    step_target,
)
from ..domain.types import SubGoal, Waypoint  # noqa: F401 (re-exported for the expert's users)
from ..domain.vocabulary import OBJECT_HALF_HEIGHT
from .kinematics import quat_to_mat, rotation_error, slerp
from .tasks import CONTROL_DT, get_task

V_LIN = 0.25        # m/s   average-speed budget for Cartesian segments
W_ANG = 1.0         # rad/s average angular speed budget
VEL_MARGIN = 0.8    # fraction of the URDF joint velocity limits the trajectories may use
GRIP_TIME = 0.6     # s to close/open the gripper


def task_state(sim) -> dict:
    """Privileged state snapshot used by the planner."""
    p, q = sim.tool_pose()
    return {'task': sim.task.name if sim.task else None, 'episode': sim.episode,
            'objects': sim.object_poses(), 'tool_pos': p, 'tool_quat': q,
            'q': sim.joint_positions(), 'gripper': sim.gripper_state(),
            'gripper_command': sim.gripper_command()}


def _grasp_yaw(obj):
    """Yaw of a top-down grasp aligned with the object's faces, wrapped into [-pi/4, pi/4]."""
    if obj['shape'] == 'cylinder':
        return 0.0
    R = quat_to_mat(obj['quat'])
    yaw = np.arctan2(R[1, 0], R[0, 0])
    return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


# ============================================================================ planning
def _pick_place_goals(prefix, objects, obj, place_xy, place_surface_z):
    o = objects[obj]
    h = o['half_height']
    grasp = {'pos': np.asarray(o['pos'], float), 'half': h, 'shape': o['shape'],
             'yaw': _grasp_yaw(o)}
    place = place_position(place_xy, place_surface_z, h)
    name = f"{o['color']} {o['shape']}"
    steps = [('move_above', 'move_above', f'move above the {name}', grasp),
             ('descend', 'descend', f'descend to the {name}', grasp),
             ('grasp', 'grasp', f'grasp the {name}', grasp),
             ('lift', 'lift', f'lift the {name}', grasp),
             ('move_above_place', 'move_above', f'carry the {name} above the goal',
              {'place': place}),
             ('place', 'place', f'lower the {name} onto the goal', {'place': place}),
             ('release', 'release', f'release the {name}', {'place': place}),
             ('retreat', 'retreat', 'move the gripper up and away', {'place': place})]
    out = []
    for sid, skill, desc, kw in steps:
        p, q, g, servo = step_target(skill, **kw)
        out.append(SubGoal(f'{prefix}{sid}', skill, obj, desc, p, q, g, servo=servo))
    return out


def plan(state: dict, choice: int = 0) -> list:
    """Ordered sub-goals for the episode in ``state`` (from ``task_state``), from ground truth.

    ``choice`` selects the mode of multimodal tasks (index into the candidate objects).
    """
    ep = state['episode']
    objs = state['objects']
    task = ep.task
    info = ep.info
    if task in ('reach',):
        p, q, g, servo = step_target('move_to', ep.target, yaw=info.get('yaw', 0.0))
        return [SubGoal('reach', 'move_to', 'target', 'move the gripper to the target marker',
                        p, q, g, servo=servo)]
    if task == 'detour':
        p, q, g, servo = step_target('move_to', ep.target)
        return [SubGoal('detour', 'move_to', 'target',
                        'move to the target around the obstacle', p, q, g, servo=servo)]
    if task == 'pick_place':
        pad = objs[info['pad']]['pos']
        return _pick_place_goals('', objs, info['object'], pad[:2], 0.0)
    if task == 'stack':
        pad = objs[info['pad']]['pos']
        first = _pick_place_goals('a_', objs, info['a'], pad[:2], 0.0)
        # second stage: on top of the first block (position known after stage 1; re-planned
        # at run time from the then current ground truth)
        xy, surface = stack_surface(objs[info['a']]['pos'], OBJECT_HALF_HEIGHT['cube'], pad[:2])
        second = _pick_place_goals('b_', objs, info['b'], xy, surface)
        return first + second
    if task == 'multimodal':
        reds = info['reds']
        obj = reds[choice % len(reds)]
        o = objs[obj]
        kw = {'pos': o['pos'], 'half': o['half_height'], 'shape': o['shape'],
              'yaw': _grasp_yaw(o)}
        name = f"{o['color']} {o['shape']}"
        p, q, g, servo = step_target('move_above', before_touch=True, **kw)
        above = SubGoal('move_above', 'move_above', obj, f'move above the {name}', p, q, g,
                        servo=servo)
        p, q, g, servo = step_target('touch', **kw)
        return [above, SubGoal('touch', 'touch', obj, f'touch the top of the {name}', p, q, g,
                               servo=servo)]
    raise ValueError(f'no plan for task {task!r}')


# ============================================================================ waypoints
def _segment_time(p0, q0, p1, q1):
    dist = float(np.linalg.norm(np.asarray(p1) - np.asarray(p0)))
    ang = float(np.linalg.norm(rotation_error(quat_to_mat(q1), quat_to_mat(q0))))
    return max(0.4, 1.875 * dist / V_LIN, 1.875 * ang / W_ANG)


def _segment_hits_box(p0, p1, center, yaw, half, margin):
    """True if the segment p0->p1 passes through the (yaw-rotated) box inflated by margin."""
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    a = R.T @ (np.asarray(p0) - center)
    b = R.T @ (np.asarray(p1) - center)
    h = np.asarray(half) + margin
    for t in np.linspace(0, 1, 60):
        x = a + t * (b - a)
        if np.all(np.abs(x) <= h):
            return True
    return False


def waypoints(subgoal: SubGoal, state: dict) -> list:
    """Tool-pose waypoints (with gripper and time_from_start) that achieve ``subgoal`` from the
    current state, including via-points over the detour obstacle."""
    p0 = np.asarray(state['tool_pos'], float)
    q0 = np.asarray(state['tool_quat'], float)
    target_p, target_q = np.asarray(subgoal.target_pos, float), np.asarray(subgoal.target_quat)
    wps = []
    t = 0.0
    if subgoal.skill in ('grasp', 'release'):
        # hold the pose, change the gripper
        t += GRIP_TIME
        wps.append(Waypoint(target_p, target_q, subgoal.gripper, t))
        return wps
    pts = [target_p]
    obstacle = state['objects'].get('obstacle')
    if obstacle is not None and subgoal.skill == 'move_to':
        half = np.asarray(obstacle['half_size'])
        ob = np.asarray(obstacle['pos'])
        R = quat_to_mat(obstacle['quat'])
        yaw = float(np.arctan2(R[1, 0], R[0, 0]))
        margin = 0.06 + TCP_TO_FINGERTIP
        if _segment_hits_box(p0, target_p, ob, yaw, half, margin):
            clear_z = ob[2] + half[2] + 0.09
            pts = [np.array([p0[0], p0[1], clear_z]),
                   np.array([target_p[0], target_p[1], clear_z]), target_p]
    prev_p, prev_q = p0, q0
    for i, p in enumerate(pts):
        last = i == len(pts) - 1
        q = target_q if last else slerp(q0, target_q, (i + 1) / len(pts))
        t += _segment_time(prev_p, prev_q, p, q)
        wps.append(Waypoint(p, q, subgoal.gripper, t))
        prev_p, prev_q = p, q
    return wps


# ============================================================================ trajectories
def _min_jerk(s):
    return 10 * s ** 3 - 15 * s ** 4 + 6 * s ** 5


def joint_trajectory(wps: list, q_start, kin, p_start, quat_start, g_start, dt=CONTROL_DT,
                     vel_limits=None, q_rest=None):
    """Sample the waypoint path every ``dt``: minimum-jerk Cartesian interpolation per segment,
    IK per sample (warm-started), segment durations stretched until every joint stays within
    ``VEL_MARGIN`` x its velocity limit. Returns (Q (N,n), G (N,), T (N,)) — targets at t+dt.."""
    q = np.asarray(q_start, float).copy()
    Q, G, T = [], [], []
    p_prev, quat_prev, g_prev, t_prev = np.asarray(p_start), np.asarray(quat_start), g_start, 0.0
    t_offset = 0.0
    for wp in wps:
        dur = max(dt, wp.time_from_start - t_prev)
        t_prev = wp.time_from_start
        for _ in range(6):
            n = max(1, int(np.ceil(dur / dt - 1e-9)))
            qs, qq = [], q.copy()
            for k in range(1, n + 1):
                s = _min_jerk(k / n)
                p = p_prev + s * (wp.pos - p_prev)
                quat = slerp(quat_prev, wp.quat, s)
                qq, _, _, _ = kin.ik(p, quat, q0=qq, q_rest=q_rest, max_iters=100)
                qs.append(qq)
            qs = np.array(qs)
            if vel_limits is None:
                break
            dq = np.abs(np.diff(np.vstack([q, qs]), axis=0)) / dt
            ratio = float(np.max(dq / (VEL_MARGIN * np.asarray(vel_limits))))
            if ratio <= 1.0:
                break
            dur *= ratio * 1.05
        for k, qq in enumerate(qs, start=1):
            Q.append(qq)
            # the gripper moves linearly over the segment when it changes
            G.append(g_prev + (wp.gripper - g_prev) * min(1.0, 2.0 * k / n))
            T.append(t_offset + k * dt)
        t_offset += n * dt
        q = qs[-1]
        p_prev, quat_prev, g_prev = np.asarray(wp.pos), np.asarray(wp.quat), wp.gripper
    return np.array(Q), np.array(G), np.array(T)


# ============================================================================ closed loop
class ScriptedExpert:
    """Closed-loop privileged driver. Call ``reset(sim)`` after ``sim.reset``, then ``act(sim)``
    once per control period; it returns (joint targets (n,), gripper command in [0, 1]).

    Each sub-goal is (re-)planned from the ground truth at the moment it becomes active.
    Sub-goals flagged ``servo`` end with an IK-servo phase on the measured TCP pose.
    """

    def __init__(self, control_dt: float = CONTROL_DT, seed: int | None = None,
                 servo_tol_mm: float = 0.02, settle_time: float = 0.25, max_servo_steps: int = 40):
        self.control_dt = control_dt
        self.seed = seed
        self.servo_tol = servo_tol_mm / 1000.0
        self.settle_steps = int(round(settle_time / control_dt))
        self.max_servo_steps = max_servo_steps

    def reset(self, sim):
        seed = sim.seed if self.seed is None else self.seed
        self.rng = np.random.default_rng([seed, 99])
        self.choice = int(self.rng.integers(2))  # mode for multimodal tasks
        self.task = get_task(sim.task)
        self.subgoals = plan(task_state(sim), self.choice)
        self.index = 0
        self.done = False
        self._queue = None
        self._k = 0
        self._phase = 'traj'
        self._servo_steps = 0
        self._hold_q = sim.joint_targets()
        self._hold_g = sim.gripper_command()
        self.current_waypoints = []
        self.servo_cmd_pos = None
        return self.subgoals

    @property
    def active_subgoal(self):
        return self.subgoals[min(self.index, len(self.subgoals) - 1)]

    def _start_subgoal(self, sim):
        state = task_state(sim)
        fresh = plan(state, self.choice)
        if len(fresh) == len(self.subgoals):
            # keep what is already done, take the fresh target for the new active sub-goal
            self.subgoals[self.index] = fresh[self.index]
        sg = self.subgoals[self.index]
        # start from the commanded pose (not the measured one) for a continuous reference
        p_cmd, quat_cmd = sim.kin.fk(self._hold_q)
        state['tool_pos'], state['tool_quat'] = p_cmd, quat_cmd
        self.current_waypoints = waypoints(sg, state)
        Q, G, T = joint_trajectory(self.current_waypoints, self._hold_q, sim.kin, p_cmd, quat_cmd,
                                   self._hold_g, self.control_dt, sim.vel_limits,
                                   q_rest=sim.home_q)
        self._queue = (Q, G)
        self._k = 0
        self._phase = 'traj'
        self._servo_steps = 0
        self.servo_cmd_pos = np.asarray(sg.target_pos, float).copy()

    def act(self, sim):
        if self.done:
            return self._hold_q.copy(), self._hold_g
        if self._queue is None:
            self._start_subgoal(sim)
        Q, G = self._queue
        sg = self.subgoals[self.index]
        if self._phase == 'traj':
            if self._k < len(Q):
                self._hold_q, self._hold_g = Q[self._k].copy(), float(G[self._k])
                self._k += 1
                return self._hold_q.copy(), self._hold_g
            self._phase = 'settle'
            self._settle = 0
        if self._phase == 'settle':
            if self._settle < self.settle_steps:
                self._settle += 1
                return self._hold_q.copy(), self._hold_g
            self._phase = 'servo' if sg.servo else 'next'
        if self._phase == 'servo':
            p, _ = sim.tool_pose()
            err = np.asarray(sg.target_pos) - p
            if np.linalg.norm(err) > self.servo_tol and self._servo_steps < self.max_servo_steps:
                self._servo_steps += 1
                self.servo_cmd_pos = self.servo_cmd_pos + err
                q, _, _, _ = sim.kin.ik(self.servo_cmd_pos, sg.target_quat, q0=self._hold_q,
                                        q_rest=None, tol_pos=1e-7, tol_rot=1e-6)
                self._hold_q = q
                return self._hold_q.copy(), self._hold_g
            self._phase = 'next'
        # advance
        self.index += 1
        self._queue = None
        if self.index >= len(self.subgoals):
            self.done = True
            self.index = len(self.subgoals) - 1
            return self._hold_q.copy(), self._hold_g
        return self.act(sim)
