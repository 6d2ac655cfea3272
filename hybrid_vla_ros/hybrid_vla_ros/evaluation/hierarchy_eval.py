"""Closed-loop evaluation of the whole hierarchy in the sim (no ROS): ``--levels 2`` or ``3``.

Level 3 (strategic planner) plans once from the instruction and the first camera image (RGB +
depth); sub-goals advance on the measured state (:class:`SubgoalProgress`); a stale sub-goal
triggers one re-plan from a fresh image. ``--levels 3`` asks the tactical planner for the
waypoints of each sub-goal when it starts; ``--levels 2`` hands the sub-goal's target straight
to the motor expert as its only waypoint. Nothing privileged reaches the policy: the planners see
the image, the motor level sees joint state, tool pose (FK) and waypoints.
"""
from typing import List, Optional, Tuple

import numpy as np

from hybrid_vla_ros.hierarchy.subgoal_progress import SubgoalProgress, anchor_final_waypoint
from hybrid_vla_ros.motor.features import WaypointTracker, waypoint_vector


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


def run_episode(sim, task, seed, instruction, strategic, tactical, policy, expert_choice,
                steps=None, levels=3, replans=1):
    """One closed-loop episode; returns a dict of outcome and planning figures."""
    from hybrid_vla_ros.planning.skills import PlanningError
    from hybrid_vla_ros.planning.training import expert_symbolic
    from hybrid_vla_ros.sim.scripted_expert import plan as expert_plan
    from hybrid_vla_ros.sim.scripted_expert import task_state
    from hybrid_vla_ros.sim.tasks import CONTROL_DT

    sim.reset(task, seed)
    ref_steps, _, _ = expert_symbolic(sim.episode, expert_plan(task_state(sim), 0))
    ref = [(s.skill, s.object) for s in ref_steps]
    n_sub = int(round(CONTROL_DT / sim.timestep))

    def make_plan():
        return strategic.plan(instruction, sim.render(), sim.camera_info(),
                              depth=sim.render_depth())
    out = {'planning_error': None, 'exact_match': False, 'replans': 0, 'plan_ms': None}
    try:
        plan = make_plan()
    except PlanningError as e:
        out.update(success=False, error_mm=float(task.error_mm(sim)), steps=0,
                   planning_error=str(e))
        return out
    out['plan_ms'] = plan.timing_ms.get('total')
    out['exact_match'] = plan.symbolic() == ref
    idx, progress, tracker = 0, SubgoalProgress(), WaypointTracker()
    choose = expert_choice

    def start_subgoal(sg):
        if levels == 3:
            p, q = sim.tool_pose()
            obs = {'tool_pos': p, 'tool_quat': q, 'gripper': sim.gripper_state()}
            if 'obstacle' in plan.scene:
                ob = plan.scene['obstacle']
                obs['obstacle'] = {'pos': np.asarray(ob['pos']), 'yaw': ob['yaw']}
            wps = [waypoint_vector(w.pos, w.quat, w.gripper) for w in anchor_final_waypoint(
                tactical.waypoints(sg, obs), sg.position, sg.orientation)]
        else:
            wps = [waypoint_vector(sg.position, sg.orientation, sg.gripper)]
        tracker.set_waypoints(wps)
        progress.reset(sim.time)

    start_subgoal(plan.subgoals[0])
    step = 0
    while step < task.max_steps:
        step += 1
        sg = plan.subgoals[idx]
        p, q = sim.tool_pose()
        status = progress.update(sim.time, sg.skill, sg.position, p, sim.gripper_state())
        if status == 'done' and idx < len(plan.subgoals) - 1:
            idx += 1
            sg = plan.subgoals[idx]
            start_subgoal(sg)
        elif status == 'stale':
            if out['replans'] >= replans:
                break
            out['replans'] += 1
            try:
                plan, idx = make_plan(), 0
            except PlanningError as e:
                out['planning_error'] = str(e)
                break
            start_subgoal(plan.subgoals[0])
            continue
        wp = tracker.update(p)
        name = choose({'subgoal': sg.to_dict(), 'subgoal_index': idx, 'state': sim.state()})
        chunk, _, _ = policy.act(name, sim.state(), wp, p, q, steps=steps)
        sim.set_joint_targets(chunk[0, :7])
        sim.set_gripper(float(np.clip(chunk[0, 7], 0.0, 1.0)))
        sim.step(n_sub)
    out.update(success=bool(task.success(sim)), error_mm=float(task.error_mm(sim)), steps=step)
    return out


def evaluate_hierarchy(args, sim=None, progress: bool = True) -> dict:
    from tqdm import tqdm

    from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint
    from hybrid_vla_ros.planning.strategic_planner import StrategicPlanner
    from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.tasks import get_task

    task = get_task(args.task)
    phrasings: Optional[List[str]] = None
    if args.instructions:
        phrasings = [t for k, t in read_instructions(args.instructions) if k == args.task]
        if not phrasings:
            raise ValueError(f'{args.instructions}: no phrasing for task {args.task!r}')
    strategic = StrategicPlanner.from_checkpoint()
    tactical = TacticalPlanner.from_checkpoint() if args.levels == 3 else None
    if args.expert == 'router':
        from hybrid_vla_ros.evaluation.routing import load_router_policy
        policy, choose = load_router_policy(args.checkpoints, bins=args.bins)
    else:
        policy = MotorPolicy.from_checkpoints(
            {args.expert: motor_checkpoint(args.expert, args.bins, args.checkpoints)})
        choose = (lambda obs: args.expert)  # noqa: E731
    sim = sim or ArmSim()
    rows = []
    bar = tqdm(range(args.episodes), desc=f'eval {args.task} levels={args.levels}', unit='ep',
               disable=not progress)
    for i in bar:
        seed = args.seed + i
        text = phrasings[i % len(phrasings)] if phrasings else task.instruction(seed)
        rows.append(run_episode(sim, task, seed, text, strategic, tactical, policy, choose,
                                steps=args.refine_steps, levels=args.levels))
        bar.set_postfix(success=f"{sum(r['success'] for r in rows)}/{len(rows)}")
    e = np.array([r['error_mm'] for r in rows])
    plan_ms = [r['plan_ms'] for r in rows if r['plan_ms'] is not None]
    return {'task': args.task, 'levels': args.levels, 'expert': args.expert,
            'episodes': args.episodes, 'seed': args.seed,
            'success_rate': float(np.mean([r['success'] for r in rows])),
            'median_error_mm': float(np.median(e)), 'p95_error_mm': float(np.percentile(e, 95)),
            'subgoal_exact_match': float(np.mean([r['exact_match'] for r in rows])),
            'planning_errors': int(sum(r['planning_error'] is not None for r in rows)),
            'replans': int(sum(r['replans'] for r in rows)),
            'plan_ms_p50': float(np.median(plan_ms)) if plan_ms else None,
            'instructions': args.instructions or 'built-in templates'}
