"""The router at run time: which action expert drives the arm for a sub-goal and state.

Situation features: the MiniLM embedding of the active sub-goal's text plus the joint state
(:mod:`hybrid_vla_ros.training.router_fit` trains the router on them). Used by the
``expert_router`` node and the ROS-free evaluations alike.
"""
import os
from typing import Dict, Optional

import numpy as np
import torch

from hybrid_vla_ros.models.checkpoint import load_checkpoint
from hybrid_vla_ros.models.router import Router
from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint, shipped_motor_dir


def subgoal_text(subgoal: dict) -> str:
    """The text of a sub-goal the router embeds."""
    return f"{subgoal['skill']} {subgoal['object']}: {subgoal['description']}"


def embed_text(text: str) -> np.ndarray:
    """(384,) MiniLM sentence embedding (the router's task feature)."""
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
        task = torch.from_numpy(embed_text(subgoal_text(subgoal)))[None]
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


def load_router_policy(checkpoints: Optional[str] = None, bins: Optional[int] = None,
                       joint_names=None, robot=None, temperature: Optional[float] = None):
    """(MotorPolicy with every expert the router knows, RouterChooser); with ``joint_names``
    (the robot's arm joints) a router or expert made for another robot is refused.
    ``checkpoints`` None = ``robot``'s shipped suite; ``temperature``: :class:`MotorPolicy`'s."""
    root = checkpoints or shipped_motor_dir(robot)
    router = load_checkpoint(os.path.join(root, 'router'), joint_names=joint_names)
    policy = MotorPolicy.from_checkpoints(
        {name: motor_checkpoint(name, bins if name in ('token', 'coarse_to_fine') else None, root)
         for name in router.config.experts}, joint_names=joint_names, temperature=temperature)
    return policy, RouterChooser(router)
