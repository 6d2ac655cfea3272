"""Closed-loop evaluation of the motor experts on the task suite (no ROS).

The sub-goals and their waypoints come from the privileged planner (``--levels 1``): this
measures the motor level alone, driven by :class:`~hybrid_vla_ros.motor.driver.PolicyDriver`
(receding horizon, ``exec_steps`` open loop, or ACT's temporal ensemble: see there).
"""
from typing import Optional, Tuple

import numpy as np

from hybrid_vla_ros.evaluation.stats import episode_errors, success_summary
from hybrid_vla_ros.motor.driver import PolicyDriver
from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint

SCRIPTED = 'scripted'  # ``--expert scripted``: the scripted expert through the same loop


def evaluate_motor(task: str, expert: str, episodes: int, seed: int, *, bins=None,
                   refine_steps=None, exec_steps: int = 1, checkpoints: Optional[str] = None,
                   progress: bool = True, sim=None, ensemble: Optional[int] = None,
                   temperature: Optional[float] = None, robot=None,
                   phase: Optional[Tuple[int, str]] = None) -> dict:
    """Run ``episodes`` seeded episodes; returns the JSON summary of ``hybrid-vla eval``.

    ``robot``: name, YAML or RobotModel (default: the sim's robot, else ``DEFAULT_ROBOT``);
    checkpoints made for another robot are refused. ``expert='scripted'`` runs the scripted
    expert (no checkpoint) through the same episodes and summary. ``ensemble`` /
    ``temperature`` None: each expert's checkpoint settings (:class:`MotorPolicy`).
    ``phase`` = (k, other): sub-goal k of every episode is driven by the expert ``other``, the
    rest by ``expert`` (what one expert does in one phase of the task: the router's labels).
    """
    from tqdm import tqdm

    from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.rollout import rollout

    if robot is None:
        robot = sim.robot if sim is not None else DEFAULT_ROBOT
    robot = load_robot(robot)
    if sim is not None and list(sim.robot.joint_names) != list(robot.joint_names):
        raise ValueError(f'the sim simulates {sim.robot.name}, not {robot.name}')
    joints = robot.joint_names
    policy = None
    if phase is not None and expert in (SCRIPTED, 'router'):
        raise ValueError(f'phase: the rest of the episode needs one expert, not {expert!r}')
    if expert == SCRIPTED:
        for flag, value, unset in (('--bins', bins, None), ('--refine-steps', refine_steps, None),
                                   ('--exec-steps', exec_steps, 1), ('--ensemble', ensemble, None),
                                   ('--temperature', temperature, None),
                                   ('--checkpoints', checkpoints, None)):
            if value != unset:
                raise ValueError(f'{flag} does not apply to the scripted expert')
    elif expert == 'router':
        from hybrid_vla_ros.motor.routing import load_router_policy
        policy, choose = load_router_policy(checkpoints, bins=bins, joint_names=joints,
                                            robot=robot, temperature=temperature)
    else:
        names = [expert] + ([phase[1]] if phase and phase[1] != expert else [])
        policy = MotorPolicy.from_checkpoints(
            {n: motor_checkpoint(n, bins, checkpoints, robot) for n in names},
            joint_names=joints, temperature=temperature)
        if phase is None:
            choose = (lambda obs: expert)  # noqa: E731
        else:
            k, other = int(phase[0]), phase[1]
            choose = (lambda obs: other if obs['subgoal_index'] == k else expert)  # noqa: E731
    sim = sim or ArmSim(robot=robot)
    errors, successes, lat, used = [], [], [], {}
    bar = tqdm(range(episodes), desc=f'eval {task}/{expert}', unit='ep', disable=not progress)
    for i in bar:
        if policy is None:  # the scripted expert (rollout's policy=None)
            res = rollout(sim, task, seed + i, policy=None)
            used[SCRIPTED] = used.get(SCRIPTED, 0) + 1
        else:
            driver = PolicyDriver(policy, choose, steps=refine_steps, exec_steps=exec_steps,
                                  seed=seed + i, ensemble=ensemble)
            res = rollout(sim, task, seed + i, policy=driver)
            lat += driver.latencies_ms
            for k, v in driver.experts_used.items():
                used[k] = used.get(k, 0) + v
        errors.append(res['error_mm'])
        successes.append(bool(res['success']))
        bar.set_postfix(success=f'{sum(successes)}/{len(successes)}')
    e = np.asarray(errors)
    out = {'task': task, 'expert': expert, 'robot': robot.name, 'episodes': episodes,
           'seed': seed, 'levels': 1, **success_summary(successes),
           'median_error_mm': float(np.median(e)), 'p95_error_mm': float(np.percentile(e, 95)),
           'errors_mm': episode_errors(e),
           'mean_error_mm': float(np.mean(e)),
           'inference_ms_p50': float(np.median(lat)) if lat else None,
           'inference_ms_p99': float(np.percentile(lat, 99)) if lat else None,
           'experts_used': used}
    if bins is not None:
        out['bins'] = bins
    if refine_steps is not None:
        out['refine_steps'] = refine_steps
    if policy is not None:
        out['runtime'] = policy.runtime(ensemble)
    if phase is not None:
        out['phase'] = [int(phase[0]), phase[1]]
    return out

