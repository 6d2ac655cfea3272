"""Router training (exercise 3 of the lesson): label each phase of each task by the expert that
did best in it on held-out episodes (the ROS-free evaluation, ``evaluation/motor_eval.py``),
then fit.

Situation features: the MiniLM embedding of the active sub-goal's text plus the joint state.
Labels, measured on held-out episodes (seeds disjoint from training and from evaluation):

1. every expert drives every task alone; the best (:func:`best_expert`: most successes, then
   the lowest median final error, then the fastest inference) is the task's *base* expert;
2. for every phase k (sub-goal index of the task's plan) and every other expert E: E drives
   phase k, the base expert the rest of each episode;
3. phase k's label is the best of those (the base expert itself included) by the same rule:
   what E does in that phase, judged by the episode's outcome.

The situations are the states at which the router is asked: the start of each sub-goal, here
from the scripted expert's episodes on the same seeds.
"""
from concurrent.futures import ProcessPoolExecutor
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from hybrid_vla_ros.models.checkpoint import save_checkpoint
from hybrid_vla_ros.models.configuration import RouterConfig
from hybrid_vla_ros.models.router import Router, train_router
from hybrid_vla_ros.motor.routing import embed_text, subgoal_text
from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot

ROUTER_SEED = 5000  # held-out episodes for router labels: seeds 5000..


def best_expert(results: Dict[str, dict]) -> str:
    """Most successes, then the lowest median final error, then the fastest inference."""
    def key(e):
        r = results[e]
        return (-r['successes'], r['median_error_mm'], r.get('inference_ms_p50') or 0.0)
    return min(results, key=key)


def situations(task: str, seeds: Sequence[int], robot=DEFAULT_ROBOT):
    """(sub-goal index, sub-goal text, joint state) at the start of each sub-goal of the
    scripted expert's episodes."""
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.rollout import rollout
    sim = ArmSim(robot=robot)
    out = []
    for seed in seeds:
        res = rollout(sim, task, seed, policy=None, record=True)
        last = None
        for obs, _, _ in res['log']:
            k = obs['subgoal_index']
            if k != last and obs.get('segment', 0) == 0:
                out.append((k, subgoal_text(obs['subgoal']), obs['state'].astype(np.float32)))
                last = k
    return out


def _cell(task, expert, phase, episodes, seed, checkpoints, robot):
    from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
    torch.set_num_threads(1)
    return evaluate_motor(task, expert, episodes, seed, checkpoints=checkpoints,
                          progress=False, robot=robot, phase=phase)


def _run(cells, args, workers: int, log) -> Dict:
    out = {}
    with ProcessPoolExecutor(max(1, workers)) as pool:
        futures = {c: pool.submit(_cell, *c, *args) for c in cells}
        for c, fut in futures.items():
            r = out[c] = fut.result()
            log(f'{c[0]:>11} {c[1]:>15} phase {c[2]}: {r["successes"]}/{r["episodes"]}, '
                f'median {r["median_error_mm"]:.2f} mm')
    return out


def phase_labels(tasks: List[str], experts: List[str], episodes: int, seed: int,
                 checkpoints: Optional[str], robot, phases: Dict[str, int], workers: int = 1,
                 log=print) -> dict:
    """``robot``: a name or YAML path (the worker processes load it). The measured tables
    and labels: ``{'base': {task: expert}, 'labels': {task: [expert
    per phase]}, 'task_table', 'phase_table'}`` (see the module docstring)."""
    args = (episodes, seed, checkpoints, robot)
    whole = _run([(t, e, None) for t in tasks for e in experts], args, workers, log)
    base = {t: best_expert({e: whole[(t, e, None)] for e in experts}) for t in tasks}
    cells = [(t, base[t], (k, e)) for t in tasks for k in range(phases[t])
             for e in experts if e != base[t]]
    parts = _run(cells, args, workers, log)
    labels, phase_table = {}, {}
    for t in tasks:
        labels[t], phase_table[t] = [], []
        for k in range(phases[t]):
            results = {base[t]: whole[(t, base[t], None)]}
            results.update({e: parts[(t, base[t], (k, e))] for e in experts if e != base[t]})
            labels[t].append(best_expert(results))
            phase_table[t].append({e: _brief(r) for e, r in results.items()})
    return {'base': base, 'labels': labels,
            'task_table': {t: {e: _brief(whole[(t, e, None)]) for e in experts} for t in tasks},
            'phase_table': phase_table}


def _brief(r: dict) -> dict:
    return {k: r.get(k) for k in ('successes', 'episodes', 'success_ci', 'median_error_mm',
                                  'inference_ms_p50')}


def fit_router(tasks: List[str], experts: List[str], episodes: int, out: str,
               checkpoints: Optional[str] = None, seed: int = ROUTER_SEED,
               robot=DEFAULT_ROBOT, workers: int = 1, log=print) -> dict:
    """Label every phase of every task (held-out seeds), train, save (``labels.json`` beside
    the router's weights holds every measured figure)."""
    ref = robot if isinstance(robot, str) else load_robot(robot).name
    robot = load_robot(robot)
    seeds = range(seed, seed + episodes)
    found = {t: situations(t, seeds, robot) for t in tasks}
    phases = {t: 1 + max(k for k, _, _ in found[t]) for t in tasks}
    measured = phase_labels(tasks, experts, episodes, seed, checkpoints, ref, phases,
                            workers, log)
    texts, states, y = [], [], []
    for t in tasks:
        for k, text, state in found[t]:
            texts.append(text)
            states.append(state)
            y.append(measured['labels'][t][k])
    router = Router(RouterConfig(experts=tuple(experts), state_dim=robot.state_dim))
    task_emb = torch.from_numpy(np.stack([embed_text(t) for t in texts]))
    stats = train_router(router, task_emb, torch.from_numpy(np.stack(states)), y, steps=400)
    save_checkpoint(out, router, robot={'name': robot.name,
                                        'joint_names': list(robot.joint_names),
                                        'gripper_joint': robot.gripper_joint})
    report = {'robot': robot.name, 'tasks': tasks, 'experts': experts, 'episodes': episodes,
              'seed': seed, 'rule': 'per phase: most successes, then lowest median final '
                                    'error, then fastest inference',
              **measured, 'situations': len(y), 'train': stats}
    with open(os.path.join(out, 'labels.json'), 'w') as f:
        json.dump(report, f, indent=2)
    return report
