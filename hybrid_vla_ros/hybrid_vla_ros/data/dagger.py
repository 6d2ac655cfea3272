"""DAgger for the final approach: the learner drives, the scripted expert labels.

Demonstrations only show the expert's own path into the target. A learned policy that is a
millimetre off at the end visits states the expert never showed, and with nothing to tell it how
to come back it drifts (measured: 1-2 mm at best, then 5-15 mm by the end of an episode). DAgger
(Ross et al., 2011) fixes the distribution: roll out the *learner*, and at every visited state
within ``radius`` of a precise (servo) sub-goal's target ask the expert what it would command
there. The expert's answer near the target is its settle/servo rule, a pure function of the
state: the IK solution of the target warm-started at the measured joints (the nearest one in
the redundant 7-DoF null space), held for the whole chunk. Those (state, chunk) pairs are
stored with an ``action_chunk`` feature, which the motor training uses instead of building chunks
from the following steps.

    hybrid-vla collect --task reach --episodes 150 --seed 20000 --out runs/dagger/b64_r1 \\
        --dagger hybrid_vla_ros/checkpoints/arm7/motor/coarse_to_fine_b64 --dagger-radius 0.02 \\
        --no-images
"""
from typing import Optional

import numpy as np

from hybrid_vla_ros.data.demonstration import episode_arrays


def settle_label(kin, q, target_pos, target_quat) -> np.ndarray:
    """The expert's joint command at a state near the target: IK warm-started at ``q``."""
    q_ik, _, _, _ = kin.ik(np.asarray(target_pos, float), np.asarray(target_quat, float),
                           q0=np.asarray(q, float), q_rest=None, tol_pos=1e-7, tol_rot=1e-6)
    return np.asarray(q_ik, float)


def dagger_episode(sim, spec, task: str, seed: int, policy, expert_name: str, horizon: int,
                   radius: float, refine_steps: Optional[int] = None):
    """Roll out the learner on (task, seed); return (arrays, meta) of its labelled steps.

    ``arrays`` is None when the learner never came within ``radius`` of a servo target.
    """
    from hybrid_vla_ros.motor.driver import PolicyDriver
    from hybrid_vla_ros.sim.rollout import rollout

    driver = PolicyDriver(policy, lambda obs: expert_name, steps=refine_steps, seed=seed)
    log, chunks = [], []

    def learner(obs):
        q_cmd, g_cmd = driver(obs)
        sg = obs['subgoal']
        last = obs['waypoints'][-1]
        if sg.get('servo') and np.linalg.norm(np.asarray(last['pos']) - obs['tool_pos']) \
                < radius:
            q_label = settle_label(sim.kin, obs['q'], sg['target_pos'], sg['target_quat'])
            g_label = float(sg['gripper'])
            step = np.concatenate([q_label, [g_label]])
            log.append((dict(obs, segment=0), q_label, g_label))
            chunks.append(np.repeat(step[None], horizon, axis=0))
        return q_cmd, g_cmd

    res = rollout(sim, task, seed, policy=learner)
    meta = {'task': task, 'seed': int(seed), 'instruction': res['instruction'],
            # labels are the expert's, valid whatever the learner did: keep every episode
            'success': True, 'labels': 'dagger', 'learner': expert_name,
            'learner_success': bool(res['success']), 'learner_error_mm': res['error_mm'],
            'radius': float(radius)}
    if not log:
        return None, meta
    arrays = episode_arrays(log, spec)
    arrays['action_chunk'] = np.stack(chunks).astype(np.float32)
    return arrays, meta
