"""Closed-loop evaluation of the motor experts on the task suite (no ROS).

The sub-goals and their waypoints come from the privileged planner (``--levels 1``): this
measures the motor level alone. The policy re-plans every control step (receding horizon) unless
``exec_steps`` > 1, in which case it executes that many steps of each chunk open loop.
``ensemble`` = m > 1 executes ACT's temporal ensemble instead: the command for this step is the
weighted mean of what the last m chunks predicted for it (weights exp(-0.1 i), oldest first, as
in ACT), which averages out step-to-step jitter of the policy near a precise target.
"""
from typing import Callable, Dict, Optional

import numpy as np

from hybrid_vla_ros.motor.features import WaypointTracker, waypoint_vector
from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint


class PolicyDriver:
    """Adapts :class:`MotorPolicy` to the sim rollout's ``policy(obs)`` callable.

    ``choose(obs)`` picks the expert per step (a fixed name, or the router).
    """

    def __init__(self, policy: MotorPolicy, choose: Callable[[dict], str], *,
                 steps: Optional[int] = None, exec_steps: int = 1, seed: int = 0,
                 ensemble: int = 1):
        import torch
        self.policy, self.choose, self.steps = policy, choose, steps
        self.exec_steps = max(1, int(exec_steps))
        self.ensemble = max(1, min(int(ensemble), policy.horizon))
        if self.ensemble > 1 and self.exec_steps > 1:
            raise ValueError('ensemble and exec_steps > 1 exclude each other')
        self.history = []  # the last chunks, newest last (temporal ensemble)
        self.tracker = WaypointTracker()
        self.key = None
        self.queue = []
        self.latencies_ms = []
        self.experts_used: Dict[str, int] = {}
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, obs: dict):
        key = (obs['subgoal_index'], tuple(tuple(w['pos']) for w in obs['waypoints']))
        if key != self.key:
            self.tracker.set_waypoints([waypoint_vector(w['pos'], w['quat'], w['gripper'])
                                        for w in obs['waypoints']])
            self.key, self.queue, self.history = key, [], []
        wp = self.tracker.update(obs['tool_pos'])
        if not self.queue:
            name = self.choose(obs)
            chunk, _, ms = self.policy.act(name, obs['state'], wp, obs['tool_pos'],
                                           obs['tool_quat'], steps=self.steps,
                                           generator=self.generator)
            self.latencies_ms.append(ms)
            self.experts_used[name] = self.experts_used.get(name, 0) + 1
            self.queue = list(chunk[:self.exec_steps])
            if self.ensemble > 1:
                self.history = (self.history + [chunk])[-self.ensemble:]
                # chunk i steps old predicted this step at its index i; oldest weighs most
                preds = np.stack([c[len(self.history) - 1 - i]
                                  for i, c in enumerate(self.history)])
                w = np.exp(-0.1 * np.arange(len(preds)))
                self.queue = [(preds * w[:, None]).sum(0) / w.sum()]
        a = self.queue.pop(0)
        return a[:7], float(np.clip(a[7], 0.0, 1.0))


def evaluate_motor(task: str, expert: str, episodes: int, seed: int, *, bins=None,
                   refine_steps=None, exec_steps: int = 1, checkpoints: Optional[str] = None,
                   progress: bool = True, sim=None, ensemble: int = 1,
                   temperature: Optional[float] = None) -> dict:
    """Run ``episodes`` seeded episodes; returns the JSON summary of ``hybrid-vla eval``."""
    from tqdm import tqdm

    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.rollout import rollout

    if expert == 'router':
        from hybrid_vla_ros.evaluation.routing import load_router_policy
        policy, choose = load_router_policy(checkpoints, bins=bins)
    else:
        policy = MotorPolicy.from_checkpoints(
            {expert: motor_checkpoint(expert, bins, checkpoints)})
        choose = (lambda obs: expert)  # noqa: E731
    if temperature is not None:
        if expert != 'coarse_to_fine':
            raise ValueError('--temperature applies to the coarse_to_fine expert')
        if temperature < 0:
            raise ValueError(f'--temperature must be >= 0, got {temperature}')
        policy.experts[expert].temperature = float(temperature)
    sim = sim or ArmSim()
    errors, successes, lat, used = [], [], [], {}
    bar = tqdm(range(episodes), desc=f'eval {task}/{expert}', unit='ep', disable=not progress)
    for i in bar:
        driver = PolicyDriver(policy, choose, steps=refine_steps, exec_steps=exec_steps,
                              seed=seed + i, ensemble=ensemble)
        res = rollout(sim, task, seed + i, policy=driver)
        errors.append(res['error_mm'])
        successes.append(bool(res['success']))
        lat += driver.latencies_ms
        for k, v in driver.experts_used.items():
            used[k] = used.get(k, 0) + v
        bar.set_postfix(success=f'{sum(successes)}/{len(successes)}')
    e = np.asarray(errors)
    out = {'task': task, 'expert': expert, 'episodes': episodes, 'seed': seed,
           'levels': 1, 'success_rate': float(np.mean(successes)),
           'median_error_mm': float(np.median(e)), 'p95_error_mm': float(np.percentile(e, 95)),
           'mean_error_mm': float(np.mean(e)),
           'inference_ms_p50': float(np.median(lat)) if lat else None,
           'inference_ms_p99': float(np.percentile(lat, 99)) if lat else None,
           'experts_used': used}
    if bins is not None:
        out['bins'] = bins
    if refine_steps is not None:
        out['refine_steps'] = refine_steps
    if ensemble > 1:
        out['ensemble'] = ensemble
    if temperature is not None:
        out['temperature'] = temperature
    return out
