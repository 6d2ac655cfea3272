"""Closed-loop evaluation of the whole hierarchy in the sim (no ROS): ``--levels 2`` or ``3``.

It drives the cores the nodes adapt, in one deterministic loop at the motor's control period:
:class:`~hybrid_vla_ros.hierarchy.strategic_core.StrategicCore` (planning in the loop's thread:
:class:`~hybrid_vla_ros.hierarchy.strategic_core.InlineWorker`; sub-goals advance on the
measured state; a stale sub-goal is re-planned from a fresh image),
:class:`~hybrid_vla_ros.hierarchy.tactical_core.TacticalCore` (``--levels 3``: the tactical
planner's waypoints; ``--levels 2``: the sub-goal's target as its only waypoint),
:class:`~hybrid_vla_ros.hierarchy.router_core.RouterCore`,
:class:`~hybrid_vla_ros.motor.driver.MotorCore` and the chunk executor's
:class:`~hybrid_vla_ros.execution.chunk_stream.ChunkStream` (with the ``chunk_executor`` node's
default settings: it streams each chunk at 100 Hz between two motor steps, blended, within the
position and velocity limits, into the sim as ``sim_arm`` takes the controller commands). The
plan reaches the levels below as the same
:class:`~hybrid_vla_ros.hierarchy.active_plan.ActivePlan` the nodes build from ``SubGoalList``.
Once every sub-goal is done the motor acts on the last waypoints for its ``waypoint_timeout`` (as
the node), then the executor runs out the last chunk and holds, and the episode ends ``settle`` s
after completion (or at the task's ``max_steps``). Differences from the graph are transport and
timing. Nothing privileged reaches the policy: the planners see the image, the levels below
joint state (tool pose by FK) and the plan.
"""
from typing import List, Optional, Tuple

import numpy as np


def read_instructions(path: str) -> List[Tuple[str, str]]:
    """``task<TAB>phrasing`` lines (blank lines and # comments skipped)."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if not line.strip() or line.lstrip().startswith('#'):
                continue
            if '\t' not in line:
                raise ValueError(f'{path}:{n}: expected task<TAB>phrasing, got {line!r}')
            task, text = line.split('\t', 1)
            out.append((task.strip(), text.strip()))
    return out


def instruction_templates(path: str, task) -> List[str]:
    """The phrasings for ``task`` in ``path`` (:func:`read_instructions`), as templates: a field
    such as ``{obj}``, ``{pad}``, ``{a}`` or ``{b}`` (the task's phrasing fields) is filled from
    each episode's scene by :func:`fill_instruction`. ValueError naming the file for a task
    without phrasings or a field the task does not have."""
    import string
    known = set(task.phrase_fields(task.sample(0)))
    out = []
    for name, text in read_instructions(path):
        if name != task.name:
            continue
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as e:   # an unmatched brace
            raise ValueError(f'{path}: {text!r}: {e}') from None
        unknown = sorted(fields - known)
        if unknown:
            raise ValueError(f'{path}: {text!r}: unknown field(s) {unknown}; task '
                             f'{task.name!r} fills {sorted(known) or "none"}')
        out.append(text)
    if not out:
        raise ValueError(f'{path}: no phrasing for task {task.name!r}')
    return out


def fill_instruction(template: str, task, seed: int) -> str:
    """``template`` with the fields of episode ``seed``'s scene (e.g. ``{obj}`` -> 'red cube')."""
    return template.format(**task.phrase_fields(task.sample(seed)))


# the motor node's default ``waypoint_timeout`` (s): it acts on the last waypoints that long
# after the tactical level stops publishing them (e.g. once the plan is complete)
MOTOR_WAYPOINT_TIMEOUT = 0.5


class TargetAsWaypoint:
    """``--levels 2``: the tactical planner's interface, handing the sub-goal's target to the
    motor level as its only waypoint."""

    def waypoints(self, subgoal, observation) -> list:
        from hybrid_vla_ros.domain.types import Waypoint
        return [Waypoint(np.asarray(subgoal.position, float),
                         np.asarray(subgoal.orientation, float), float(subgoal.gripper), 0.0)]


def run_episode(sim, task, seed, instruction, strategic, tactical, motor, router, stream, *,
                settle: float = 1.0, subgoal_timeout: float = 20.0,
                executor_rate: float = 100.0):
    """One closed-loop episode through the cores (module docstring); ``tactical`` is a
    TacticalCore, ``motor`` a MotorCore, ``router`` a RouterCore, ``stream`` the executor's
    ChunkStream (ticking at ``executor_rate`` Hz), all fresh for the episode. Returns a dict of
    outcome and planning figures."""
    import torch

    from hybrid_vla_ros.hierarchy.active_plan import active_plan_of
    from hybrid_vla_ros.hierarchy.strategic_core import InlineWorker, StrategicCore
    from hybrid_vla_ros.motor.features import waypoint_vector
    from hybrid_vla_ros.planning.labels import expert_symbolic
    from hybrid_vla_ros.sim.scripted_expert import plan as expert_plan
    from hybrid_vla_ros.sim.scripted_expert import task_state
    from hybrid_vla_ros.sim.tasks import CONTROL_DT

    sim.reset(task, seed)
    ref_steps, _, _ = expert_symbolic(sim.episode, expert_plan(task_state(sim), 0))
    ref = [(s.skill, s.object) for s in ref_steps]
    ticks = max(1, int(round(CONTROL_DT * executor_rate)))   # executor ticks per motor step
    n_sub = max(1, int(round(CONTROL_DT / ticks / sim.timestep)))   # physics steps per tick
    joints = list(sim.robot.joint_names)
    core = StrategicCore(worker=InlineWorker(
        lambda req: strategic.plan(req.instruction, req.image, req.camera, depth=req.depth)),
        subgoal_timeout=subgoal_timeout)
    core.set_camera(sim.camera_info())
    generator = torch.Generator().manual_seed(int(seed))
    out = {'planning_error': None, 'exact_match': False, 'replans': 0, 'plan_ms': None}
    core.request(instruction, sim.time, fresh=True)
    done_at, step = None, 0
    while step < task.max_steps:
        now = sim.time
        if core.waiting_for_image():   # depth first, as the camera publishes them
            core.observe_depth(sim.render_depth(), now, now)
            core.observe_image(sim.render(), now, now)
        for kind, r in core.collect(now):
            if kind == 'error' and out['plan_ms'] is None:
                out['planning_error'] = r.error
            elif kind == 'plan' and out['plan_ms'] is None:
                out['plan_ms'] = r.ms
                out['exact_match'] = r.plan.symbolic() == ref
        if core.plan is None and not core.planning:
            break   # planning failed: nothing will move
        state = sim.state()
        if core.running:
            tool, _ = motor.kin.fk(state[:-1])
            if core.update_progress(now, tool, float(state[-1])) == 'replan':
                out['replans'] += 1
        if core.complete:
            done_at = now if done_at is None else done_at
            if now - done_at >= settle:
                break
        plan = active_plan_of(core.plan, core.stamp, core.active) if core.running else None
        tactical.on_state(state)
        if plan is not None:   # what the levels get from each (re-)publication of the plan
            tactical.on_plan(plan, now)
            for sel in (router.on_plan(plan), router.on_state(state)):
                if sel is not None:
                    motor.on_expert(sel.expert)
        tstep = tactical.tick(now) if plan is not None else None
        if tstep is not None and tstep.waypoints is not None:
            motor.on_waypoints(tstep.subgoal_id, [waypoint_vector(w.pos, w.quat, w.gripper)
                                                  for w in tstep.waypoints], now)
        if motor.has_task(now):   # as the node: on waypoints received within waypoint_timeout
            chunk, _, _ = motor.act(state, generator=generator, now=now)
            # the arm joints, then the gripper closure: the ActionChunk's fields
            stream.add_chunk(joint_names=joints, positions=chunk[:, :-1].ravel(),
                             gripper=np.clip(chunk[:, -1], 0.0, 1.0), horizon=len(chunk),
                             t0=now, step=CONTROL_DT, now=now)
        # else: no waypoints for waypoint_timeout: the executor runs out its chunk and holds
        for _ in range(ticks):   # chunk_executor on sim_arm until the next motor step
            t = sim.time
            q, finger = stream.tick(t, sim.joint_positions(), float(sim.finger_positions()[0]),
                                    t)
            if q is not None:
                sim.set_joint_targets(q)
            if finger is not None:
                sim.set_finger_position(finger)
            sim.step(n_sub)
        step += 1
    out.update(success=bool(task.success(sim)), error_mm=float(task.error_mm(sim)), steps=step,
               subgoals=len(core.plan.subgoals) if core.plan is not None else 0,
               subgoals_done=core.active if core.plan is not None else 0)
    return out


def evaluate_hierarchy(args, sim=None, progress: bool = True) -> dict:
    from tqdm import tqdm

    from hybrid_vla_ros.evaluation.stats import episode_errors, success_summary
    from hybrid_vla_ros.execution.chunk_stream import EXECUTOR_DEFAULTS, executor_stream
    from hybrid_vla_ros.hierarchy.router_core import RouterCore
    from hybrid_vla_ros.hierarchy.tactical_core import TacticalCore
    from hybrid_vla_ros.motor.driver import MotorCore
    from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint
    from hybrid_vla_ros.planning.skills import plan_bounds
    from hybrid_vla_ros.planning.strategic_planner import StrategicPlanner
    from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner
    from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.tasks import CONTROL_DT, get_task

    task = get_task(args.task)
    robot = load_robot(sim.robot if sim is not None
                       else (getattr(args, 'robot', None) or DEFAULT_ROBOT))
    joints = robot.joint_names
    phrasings: Optional[List[str]] = None
    if args.instructions:
        phrasings = instruction_templates(args.instructions, task)
    kin = robot.kinematics()
    strategic = StrategicPlanner.from_checkpoint()
    strategic.bounds = plan_bounds(kin.reach())  # as the planner node does
    tactical_planner = TacticalPlanner.from_checkpoint(robot=robot) if args.levels == 3 \
        else TargetAsWaypoint()
    chooser = None
    if args.expert == 'router':
        from hybrid_vla_ros.motor.routing import load_router_policy
        policy, chooser = load_router_policy(args.checkpoints, bins=args.bins,
                                             joint_names=joints, robot=robot,
                                             temperature=getattr(args, 'temperature', None))
    else:
        policy = MotorPolicy.from_checkpoints(
            {args.expert: motor_checkpoint(args.expert, args.bins, args.checkpoints, robot)},
            joint_names=joints, temperature=getattr(args, 'temperature', None))
    default = args.expert if args.expert != 'router' else \
        ('coarse_to_fine' if 'coarse_to_fine' in policy.experts else next(iter(policy.experts)))
    sim = sim or ArmSim(robot=robot)
    rows = []
    bar = tqdm(range(args.episodes), desc=f'eval {args.task} levels={args.levels}', unit='ep',
               disable=not progress)
    for i in bar:
        seed = args.seed + i
        text = fill_instruction(phrasings[i % len(phrasings)], task, seed) if phrasings \
            else task.instruction(seed, held_out=getattr(args, 'held_out', False))
        # fresh cores per episode, as a fresh graph's nodes (the graph's are reset between
        # episodes by a new plan stamp)
        tactical = TacticalCore(tactical_planner, kin, robot.n_joints, plan_timeout=0.0)
        router = RouterCore(chooser) if chooser is not None else RouterCore(fixed=args.expert)
        motor = MotorCore(policy, default, kinematics=kin, steps=args.refine_steps,
                          waypoint_timeout=MOTOR_WAYPOINT_TIMEOUT, reach=kin.reach(),
                          ensemble=getattr(args, 'ensemble', None), step_s=CONTROL_DT)
        stream = executor_stream(robot)   # the chunk_executor node's defaults
        rows.append(run_episode(sim, task, seed, text, strategic, tactical, motor, router, stream,
                                executor_rate=EXECUTOR_DEFAULTS['rate']))
        bar.set_postfix(success=f"{sum(r['success'] for r in rows)}/{len(rows)}")
    e = np.array([r['error_mm'] for r in rows])
    plan_ms = [r['plan_ms'] for r in rows if r['plan_ms'] is not None]
    return {'task': args.task, 'levels': args.levels, 'expert': args.expert,
            'robot': robot.name,
            'seed': args.seed, **success_summary([r['success'] for r in rows]),
            'median_error_mm': float(np.median(e)), 'p95_error_mm': float(np.percentile(e, 95)),
            'errors_mm': episode_errors(e),
            'subgoal_exact_match': float(np.mean([r['exact_match'] for r in rows])),
            'planning_errors': int(sum(r['planning_error'] is not None for r in rows)),
            'replans': int(sum(r['replans'] for r in rows)),
            'plan_ms_p50': float(np.median(plan_ms)) if plan_ms else None,
            'runtime': policy.runtime(getattr(args, 'ensemble', None)),
            'instructions': args.instructions or ('held-out phrasings'
                                                  if getattr(args, 'held_out', False)
                                                  else 'built-in templates')}
