"""Router training (exercise 3 of the lesson): label situations by the expert that did best on
held-out episodes (the ROS-free evaluation, ``evaluation/motor_eval.py``), then fit.

Situation features: the MiniLM embedding of the active sub-goal's text plus the joint state.
Labels: on held-out episodes (seeds disjoint from training and from evaluation) every expert is
run on every task; the expert with the highest success rate (ties: lowest median error) is the
label of each situation of that task.
"""
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
    """Highest success rate, then lowest median error."""
    return min(results, key=lambda e: (-results[e]['success_rate'],
                                       results[e]['median_error_mm']))


def situations(task: str, seeds: Sequence[int], robot=DEFAULT_ROBOT):
    """(sub-goal text, joint state) at the start of each sub-goal of the expert's episodes."""
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.scripted_expert import plan, task_state
    sim = ArmSim(robot=robot)
    out = []
    for seed in seeds:
        sim.reset(task, seed)
        for sg in plan(task_state(sim)):
            out.append((subgoal_text(sg.to_dict()), sim.state().astype(np.float32)))
    return out


def fit_router(tasks: List[str], experts: List[str], episodes: int, out: str,
               checkpoints: Optional[str] = None, seed: int = ROUTER_SEED,
               robot=DEFAULT_ROBOT) -> dict:
    """Evaluate every expert on every task (held-out seeds), label, train, save."""
    from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
    robot = load_robot(robot)
    table = {t: {e: evaluate_motor(t, e, episodes, seed, checkpoints=checkpoints,
                                   robot=robot)
                 for e in experts} for t in tasks}
    labels = {t: best_expert(table[t]) for t in tasks}
    texts, states, y = [], [], []
    for t in tasks:
        for text, state in situations(t, range(seed, seed + episodes), robot):
            texts.append(text)
            states.append(state)
            y.append(labels[t])
    router = Router(RouterConfig(experts=tuple(experts), state_dim=robot.state_dim))
    task_emb = torch.from_numpy(np.stack([embed_text(t) for t in texts]))
    stats = train_router(router, task_emb, torch.from_numpy(np.stack(states)), y, steps=400)
    save_checkpoint(out, router, robot={'name': robot.name,
                                        'joint_names': list(robot.joint_names),
                                        'gripper_joint': robot.gripper_joint})
    report = {'robot': robot.name, 'tasks': tasks, 'experts': experts, 'episodes': episodes,
              'seed': seed,
              'labels': labels, 'train': stats,
              'table': {t: {e: {k: r[k] for k in ('success_rate', 'median_error_mm')}
                            for e, r in table[t].items()} for t in tasks}}
    with open(os.path.join(out, 'labels.json'), 'w') as f:
        json.dump(report, f, indent=2)
    return report
