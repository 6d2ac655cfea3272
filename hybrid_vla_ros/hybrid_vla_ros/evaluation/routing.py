"""The learned router in closed loop, and how it is trained (exercise 3 of the lesson).

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

from hybrid_vla_ros.models.checkpoint import load_checkpoint, save_checkpoint
from hybrid_vla_ros.models.configuration import RouterConfig
from hybrid_vla_ros.models.router import Router, train_router
from hybrid_vla_ros.motor.policy import MotorPolicy, default_checkpoint_dir

ROUTER_SEED = 5000  # held-out episodes for router labels: seeds 5000..


def subgoal_text(subgoal: dict) -> str:
    return f"{subgoal['skill']} {subgoal['object']}: {subgoal['description']}"


def _embed(text: str) -> np.ndarray:
    from hybrid_vla_ros.planning.backbones import shared_text
    return shared_text().encode(text).sentence.numpy().astype(np.float32)


class RouterChooser:
    """``choose(obs)`` for :class:`PolicyDriver`: asks the router once per sub-goal."""

    def __init__(self, router: Router):
        self.router = router
        self.key = None
        self.choice = None
        self.last_probabilities = None

    def probabilities(self, subgoal: dict, state) -> Dict[str, float]:
        task = torch.from_numpy(_embed(subgoal_text(subgoal)))[None]
        s = torch.as_tensor(np.asarray(state, np.float32))[None]
        p = self.router.probabilities(task, s)[0].tolist()
        return dict(zip(self.router.config.experts, p))

    def __call__(self, obs: dict) -> str:
        key = (obs['subgoal_index'], obs['subgoal']['id'])
        if key != self.key:
            self.last_probabilities = self.probabilities(obs['subgoal'], obs['state'])
            self.choice = max(self.last_probabilities, key=self.last_probabilities.get)
            self.key = key
        return self.choice


def load_router_policy(checkpoints: Optional[str] = None, bins: Optional[int] = None):
    """(MotorPolicy with every expert the router knows, RouterChooser)."""
    from hybrid_vla_ros.motor.policy import motor_checkpoint
    root = checkpoints or os.path.join(default_checkpoint_dir(), 'motor')
    router = load_checkpoint(os.path.join(root, 'router'))
    policy = MotorPolicy.from_checkpoints(
        {name: motor_checkpoint(name, bins if name in ('token', 'coarse_to_fine') else None, root)
         for name in router.config.experts})
    return policy, RouterChooser(router)


def best_expert(results: Dict[str, dict]) -> str:
    """Highest success rate, then lowest median error."""
    return min(results, key=lambda e: (-results[e]['success_rate'],
                                       results[e]['median_error_mm']))


def situations(task: str, seeds: Sequence[int]):
    """(sub-goal text, joint state) at the start of each sub-goal of the expert's episodes."""
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.scripted_expert import plan, task_state
    sim = ArmSim()
    out = []
    for seed in seeds:
        sim.reset(task, seed)
        for sg in plan(task_state(sim)):
            out.append((subgoal_text(sg.to_dict()), sim.state().astype(np.float32)))
    return out


def fit_router(tasks: List[str], experts: List[str], episodes: int, out: str,
               checkpoints: Optional[str] = None, seed: int = ROUTER_SEED) -> dict:
    """Evaluate every expert on every task (held-out seeds), label, train, save."""
    from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
    table = {t: {e: evaluate_motor(t, e, episodes, seed, checkpoints=checkpoints)
                 for e in experts} for t in tasks}
    labels = {t: best_expert(table[t]) for t in tasks}
    texts, states, y = [], [], []
    for t in tasks:
        for text, state in situations(t, range(seed, seed + episodes)):
            texts.append(text)
            states.append(state)
            y.append(labels[t])
    router = Router(RouterConfig(experts=tuple(experts)))
    task_emb = torch.from_numpy(np.stack([_embed(t) for t in texts]))
    stats = train_router(router, task_emb, torch.from_numpy(np.stack(states)), y, steps=400)
    save_checkpoint(out, router)
    report = {'tasks': tasks, 'experts': experts, 'episodes': episodes, 'seed': seed,
              'labels': labels, 'train': stats,
              'table': {t: {e: {k: r[k] for k in ('success_rate', 'median_error_mm')}
                            for e, r in table[t].items()} for t in tasks}}
    with open(os.path.join(out, 'labels.json'), 'w') as f:
        json.dump(report, f, indent=2)
    return report
