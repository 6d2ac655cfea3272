"""Closed-loop rollouts of a policy (or the scripted expert) in ``ArmSim``.

Observation dict passed to ``policy(obs)`` every control step (20 Hz by default):
- ``state``: (n+1,) float32 — the robot's n arm joint positions [rad] + gripper state
  [0 open .. 1 closed]
- ``q``, ``dq``: (n,) joint positions [rad] / velocities [rad/s]
- ``gripper``: measured gripper state [0..1]
- ``tool_pos`` (3,) [m], ``tool_quat`` (4,) xyzw — TCP in the base frame
- ``subgoal``: dict of the active sub-goal (id, skill, object, description, target_pos,
  target_quat (xyzw), gripper, confidence); ``subgoal_index``, ``num_subgoals``
- ``waypoints``: list of waypoint dicts for the active sub-goal (pos, quat, gripper,
  time_from_start [s]); ``waypoint``: (8,) float32 = final waypoint pos (3) + quat (4) + gripper
- ``instruction``: natural-language instruction (training phrasing unless held_out=True)
- ``task``, ``seed``, ``t`` [s], ``step``
- ``image``: (H, W, 3) uint8 scene-camera frame, only when ``image=True``

The policy returns either (q_targets (n,), gripper) or a dict {'q': ..., 'gripper': ...};
joint targets in rad (clamped to the URDF limits by the sim), gripper in [0, 1].

The sub-goal/waypoint information comes from the privileged scripted planner (``plan`` +
``waypoints``): in rollouts of a learned policy it advances when the measured state reaches the
active sub-goal (TCP within ``advance_tol`` and gripper settled), like the tactical level does.
"""
from __future__ import annotations

import time as _time

import numpy as np

from .scripted_expert import ScriptedExpert, plan, task_state, waypoints
from .tasks import CONTROL_DT, get_task


def _obs(sim, expert, task, seed, instruction, step, image):
    p, quat = sim.tool_pose()
    sg = expert.active_subgoal
    wps = expert.current_waypoints or waypoints(sg, task_state(sim))
    last = wps[-1]
    obs = {
        'state': sim.state().astype(np.float32),
        'q': sim.joint_positions(), 'dq': sim.joint_velocities(),
        'gripper': sim.gripper_state(),
        'tool_pos': p, 'tool_quat': quat,
        'subgoal': sg.to_dict(), 'subgoal_index': expert.index,
        'num_subgoals': len(expert.subgoals),
        'waypoints': [w.to_dict() for w in wps],
        'waypoint': np.concatenate([last.pos, last.quat, [last.gripper]]).astype(np.float32),
        'instruction': instruction, 'task': task.name, 'seed': seed,
        't': sim.time, 'step': step,
    }
    if image:
        obs['image'] = sim.render()
    return obs


class _SubgoalTracker:
    """Advances the expert's sub-goal index from the measured state (for learned policies)."""

    def __init__(self, expert, advance_tol=0.01, gripper_settle=0.02):
        self.expert = expert
        self.tol = advance_tol
        self.gtol = gripper_settle
        self._prev_g = None
        self._still = 0

    def update(self, sim):
        e = self.expert
        if e.index >= len(e.subgoals):
            return
        sg = e.subgoals[e.index]
        p, _ = sim.tool_pose()
        g = sim.gripper_state()
        g_settled = self._prev_g is not None and abs(g - self._prev_g) < self.gtol
        self._prev_g = g
        reached = np.linalg.norm(p - sg.target_pos) < self.tol
        if sg.skill in ('grasp', 'release'):
            wants_closed = sg.gripper > 0.5
            ok = reached and g_settled and ((g > 0.3) if wants_closed else (g < 0.2))
        else:
            ok = reached
        self._still = self._still + 1 if ok else 0
        if self._still >= 2 and e.index < len(e.subgoals) - 1:
            e.index += 1
            self._still = 0
            new = plan(task_state(sim), e.choice)  # re-plan the new sub-goal from ground truth
            if len(new) == len(e.subgoals):
                e.subgoals[e.index] = new[e.index]
            e.current_waypoints = waypoints(e.subgoals[e.index], task_state(sim))


def rollout(sim, task, seed: int, policy=None, max_steps: int | None = None, image: bool = False,
            held_out: bool = False, record: bool = False, control_dt: float = CONTROL_DT,
            stop_on_success: bool = False, action_noise: float = 0.0,
            recovery_segments: int = 0):
    """Run ``policy`` (None = scripted expert) closed loop on (task, seed).

    ``action_noise`` (rad, expert only): DART-style noise injection for data collection. The
    executed joint targets get smooth (Ornstein-Uhlenbeck, 0.3 s correlation) noise of this
    standard deviation while the expert follows a trajectory segment (not in its settle/servo
    phases); the log records the expert's clean targets, so demonstrations show how to return
    to the plan from perturbed states.

    ``recovery_segments`` (expert only, with ``record``): after a successful episode whose last
    sub-goal is a precise (servo) one, that many times: displace the arm by a random joint offset
    (0.5 mrad .. 40 mrad, log-uniform), let it settle there, then record the expert's IK servo
    bringing the tool back onto the target. Each recorded step carries ``segment`` (0 = the
    episode, k = k-th recovery) so training never chunks across a displacement.

    Returns {'success', 'error_mm', 'steps', 'sim_time', 'wall_time', 'clamped', 'rejected',
    'instruction', 'task', 'seed', 'subgoals' (list of dicts), 'expert_choice' (mode index of
    multimodal tasks, pass it to ``plan(state, choice)`` to reproduce the expert's plan)}
    plus 'log' (list of (obs without image, q_cmd, g_cmd)) when ``record`` and 'frames' when
    ``record and image``.
    """
    task = get_task(task)
    sim.reset(task, seed)
    expert = ScriptedExpert(control_dt=control_dt)
    expert.reset(sim)
    tracker = None if policy is None else _SubgoalTracker(expert)
    if policy is not None:  # waypoints of the first sub-goal, frozen until it is reached
        expert.current_waypoints = waypoints(expert.active_subgoal, task_state(sim))
    instruction = task.instruction(seed, held_out=held_out)
    max_steps = task.max_steps if max_steps is None else int(max_steps)
    n_sub = int(round(control_dt / sim.timestep))
    log, frames = [], []
    clamped = rejected = 0
    t0 = _time.perf_counter()
    steps = 0
    noise_rng = np.random.default_rng([int(seed), 7919])
    noise = np.zeros(sim.robot.n_joints)
    decay = np.exp(-control_dt / 0.3)
    for steps in range(1, max_steps + 1):
        q_exec = None
        if policy is None:
            q_cmd, g_cmd = expert.act(sim)
            obs = _obs(sim, expert, task, seed, instruction, steps - 1, image) \
                if (record or image) else None
            if action_noise > 0:
                noise = decay * noise + action_noise * np.sqrt(1 - decay ** 2) * \
                    noise_rng.standard_normal(sim.robot.n_joints)
                queue = expert._queue[0] if expert._queue is not None else ()
                if expert._phase == 'traj' and expert._k < len(queue) - 5:
                    q_exec = np.asarray(q_cmd, float) + noise
        else:
            tracker.update(sim)
            obs = _obs(sim, expert, task, seed, instruction, steps - 1, image)
            out = policy(obs)
            if isinstance(out, dict):
                q_cmd, g_cmd = out['q'], out.get('gripper', 0.0)
            else:
                q_cmd, g_cmd = out
        if record:
            o = {k: v for k, v in obs.items() if k != 'image'}
            log.append((o, np.asarray(q_cmd, float).copy(), float(g_cmd)))
            if image:
                frames.append(obs['image'])
        try:
            clamped += int(sim.set_joint_targets(q_cmd if q_exec is None else q_exec))
            sim.set_gripper(g_cmd)
        except ValueError:  # malformed action (NaN, wrong length): hold the previous targets
            rejected += 1
        sim.step(n_sub)
        if policy is None and expert.done:
            break
        if stop_on_success and task.success(sim):
            break
    success, error_mm = bool(task.success(sim)), float(task.error_mm(sim))
    if record and policy is None and recovery_segments and success \
            and expert.active_subgoal.servo:
        _record_recoveries(sim, expert, task, seed, instruction, image, n_sub,
                           recovery_segments, log, frames, steps)
    res = {'success': success, 'error_mm': error_mm,
           'steps': steps, 'sim_time': sim.time, 'wall_time': _time.perf_counter() - t0,
           'clamped': clamped, 'rejected': rejected, 'instruction': instruction,
           'task': task.name, 'seed': int(seed),
           # the plan as executed (sub-goals re-planned from ground truth when they started)
           'subgoals': [sg.to_dict() for sg in expert.subgoals], 'expert_choice': expert.choice}
    if record:
        res['log'] = log
        if image:
            res['frames'] = frames
    return res


def _record_recoveries(sim, expert, task, seed, instruction, image, n_sub, n_segments, log,
                       frames, step0, max_servo_steps=25):
    rng = np.random.default_rng([int(seed), 104729])
    sg = expert.active_subgoal
    q_home, g = expert._hold_q.copy(), expert._hold_g
    step = step0
    for k in range(1, n_segments + 1):
        scale = float(np.exp(rng.uniform(np.log(5e-4), np.log(4e-2))))
        q = sim.kin.clamp(q_home + rng.normal(0.0, scale, sim.robot.n_joints))
        sim.set_joint_targets(q)
        sim.step(6 * n_sub)  # settle at the displaced pose (0.3 s)
        cmd_pos = np.asarray(sg.target_pos, float).copy()
        converged = 0
        for _ in range(max_servo_steps):
            p, _ = sim.tool_pose()
            err = np.asarray(sg.target_pos) - p
            if np.linalg.norm(err) <= expert.servo_tol:
                converged += 1
                if converged > 3:
                    break
            else:
                cmd_pos = cmd_pos + err
                q, _, _, _ = sim.kin.ik(cmd_pos, sg.target_quat, q0=q, q_rest=None,
                                        tol_pos=1e-7, tol_rot=1e-6)
            obs = _obs(sim, expert, task, seed, instruction, step, image)
            obs['segment'] = k
            o = {kk: v for kk, v in obs.items() if kk != 'image'}
            log.append((o, np.asarray(q, float).copy(), float(g)))
            if image:
                frames.append(obs['image'])
            sim.set_joint_targets(q)
            sim.set_gripper(g)
            sim.step(n_sub)
            step += 1


def expert_policy(sim, expert: ScriptedExpert | None = None):
    """The scripted expert as an ``obs -> (q, gripper)`` callable bound to ``sim`` (it reads the
    privileged state from ``sim``); it resets itself on the first step (``obs['step'] == 0``)."""
    expert = expert or ScriptedExpert()

    def _policy(obs):
        if obs.get('step', 1) == 0:
            expert.reset(sim)
        return expert.act(sim)
    _policy.expert = expert
    return _policy
