"""Held-out evaluation of the strategic and tactical planners (``python -m
hybrid_vla_ros.training.planner_cli eval``): new sim scenes and held-out phrasings scored
against the scripted expert (sub-goal exact match, sub-goal pose error, grounding error and
tactical waypoint error).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..planning.strategic_planner import StrategicPlanner
from ..planning.tactical_planner import TacticalPlanner, obstacle_from_objects
from ..robot import DEFAULT_ROBOT
from ..sim.arm_sim import ArmSim
from ..sim.scripted_expert import plan as expert_plan
from ..sim.scripted_expert import task_state
from ..sim.scripted_expert import waypoints as expert_waypoints
from ..sim.tasks import get_task

EVAL_SEED_OFFSET = 100_000   # evaluation scenes never overlap the training seeds


def evaluate_planner(checkpoint_dir, episodes: int = 20, seed: int = 0, tasks=None,
                     held_out: bool = True, progress: bool = True,
                     robot=DEFAULT_ROBOT) -> dict:
    """Held-out evaluation on new scenes (unseen seeds: new positions, colour combinations) and
    held-out phrasings: sub-goal sequence exact-match, grounding error (3-D, mm) of the objects
    the expert's plan names (table objects; the floating target separately, from RGB alone and
    with the depth image) and tactical waypoint error (mm, at the start of each expert
    sub-goal, when the waypoint count matches; the count accuracy is reported too).
    ``tasks``: None = ``planning.labels.STRATEGIC_TASKS`` (the tasks trained on)."""
    from ..planning.labels import STRATEGIC_TASKS, expert_symbolic, scene_entities, tool_state
    from ..planning.skills import PlanningError
    tasks = STRATEGIC_TASKS if tasks is None else tasks
    ckpt = Path(checkpoint_dir)
    planner = StrategicPlanner.from_checkpoint(ckpt)
    tactical = TacticalPlanner.from_checkpoint(ckpt) \
        if (ckpt / 'tactical.safetensors').is_file() else None
    sim = ArmSim(robot)
    per_task: dict = {}
    seeds = [EVAL_SEED_OFFSET + seed * 1000 + i for i in range(episodes)]
    jobs = [(t, s) for t in tasks for s in seeds]
    for task_name, ep_seed in tqdm(jobs, desc='eval', disable=not progress):
        r = per_task.setdefault(task_name, {'n': 0, 'exact': 0, 'errors': 0, 'ground_mm': [],
                                            'target_mm': [], 'target_depth_mm': [],
                                            'pose_mm': [], 'rot_deg': [],
                                            'tactical_mm': [], 'tactical_count_ok': 0,
                                            'tactical_n': 0, 'plan_ms': []})
        task = get_task(task_name, sim.robot)
        sim.reset(task, ep_seed)
        img, cam = sim.render(), sim.camera_info()
        state = task_state(sim)
        sgs = expert_plan(state, 0)
        steps, _, _ = expert_symbolic(sim.episode, sgs)
        text = task.instruction(ep_seed, held_out=held_out)
        r['n'] += 1
        try:
            p = planner.plan(text, img, cam)
        except PlanningError:
            r['errors'] += 1
            p = None
        if p is not None:
            r['plan_ms'].append(p.timing_ms['total'])
            if p.symbolic() == [(s.skill, s.object) for s in steps]:
                r['exact'] += 1
                ref_sgs = sgs
                if task_name == 'multimodal':   # either red block is right: nearest mode
                    ref_sgs = min((expert_plan(state, c) for c in (0, 1)), key=lambda g: float(
                        np.linalg.norm(g[0].target_pos - p.subgoals[0].position)))
                for a, b in zip(p.subgoals, ref_sgs):   # target poses vs the expert's
                    if a.object == 'target':
                        continue   # floating marker: reported separately (needs depth)
                    r['pose_mm'].append(1000.0 * float(np.linalg.norm(a.position
                                                                      - b.target_pos)))
                    dot = abs(float(np.dot(a.orientation, b.target_quat)))
                    r['rot_deg'].append(float(np.degrees(2 * np.arccos(min(1.0, dot)))))
        # grounding error for the referents of the expert plan (ground truth names)
        names = {s.object for s in steps} | {s.reference for s in steps if s.reference}
        truth = {}
        for name, pos, _ in scene_entities(sim):
            truth.setdefault(name, []).append(pos)
        scene = planner.ground(sorted(names), img, cam)
        for n in names:
            err = min(np.linalg.norm(scene[n]['pos'] - t) for t in truth[n])
            r['target_mm' if n == 'target' else 'ground_mm'].append(1000.0 * float(err))
        if 'target' in names:   # the marker floats: its height needs depth (monocular RGB)
            sd = planner.ground(['target'], img, cam, depth=sim.render_depth())
            r['target_depth_mm'].append(1000.0 * float(np.linalg.norm(
                sd['target']['pos'] - truth['target'][0])))
        if tactical is not None:
            p_prev, q_prev, g_prev = state['tool_pos'], state['tool_quat'], 0.0
            for sg in sgs:
                st = tool_state(state, p_prev, q_prev, g_prev)
                ref = expert_waypoints(sg, st)
                obs = {'tool_pos': p_prev, 'tool_quat': q_prev, 'gripper_command': g_prev,
                       'obstacle': obstacle_from_objects(state['objects'])}
                pred = tactical.waypoints(sg, obs)
                r['tactical_n'] += 1
                if len(pred) == len(ref):
                    r['tactical_count_ok'] += 1
                    r['tactical_mm'] += [1000.0 * float(np.linalg.norm(a.pos - b.pos))
                                         for a, b in zip(pred, ref)]
                p_prev, q_prev, g_prev = sg.target_pos, sg.target_quat, sg.gripper
    sim.close()
    summary = {}
    all_g, all_t, n_all, ex_all = [], [], 0, 0

    def med(v, q=50):
        return float(np.percentile(v, q)) if v else None

    for t, r in per_task.items():
        summary[t] = {
            'episodes': r['n'], 'subgoal_exact_match': r['exact'] / r['n'],
            'planning_errors': r['errors'],
            'grounding_mm_median': med(r['ground_mm']),
            'grounding_mm_p90': med(r['ground_mm'], 90),
            'subgoal_pose_mm_median': med(r['pose_mm']),
            'subgoal_pose_mm_p90': med(r['pose_mm'], 90),
            'subgoal_rot_deg_median': med(r['rot_deg']),
            'subgoal_rot_deg_p90': med(r['rot_deg'], 90),
            'target_rgb_mm_median': med(r['target_mm']),
            'target_depth_mm_median': med(r['target_depth_mm']),
            'target_depth_mm_p90': med(r['target_depth_mm'], 90),
            'tactical_mm_median': float(np.median(r['tactical_mm'])) if r['tactical_mm']
            else None,
            'tactical_mm_p90': float(np.percentile(r['tactical_mm'], 90)) if r['tactical_mm']
            else None,
            'tactical_count_acc': r['tactical_count_ok'] / max(1, r['tactical_n']),
            'plan_ms_median': float(np.median(r['plan_ms'])) if r['plan_ms'] else None}
        all_g += r['ground_mm']
        all_t += r['tactical_mm']
        n_all += r['n']
        ex_all += r['exact']
    summary['all'] = {'episodes': n_all, 'subgoal_exact_match': ex_all / max(1, n_all),
                      'grounding_mm_median': med(all_g), 'grounding_mm_p90': med(all_g, 90),
                      'tactical_mm_median': float(np.median(all_t)) if all_t else None,
                      'tactical_mm_p90': float(np.percentile(all_t, 90)) if all_t else None,
                      'held_out_phrasings': held_out, 'seed': seed}
    return summary
