"""What the motor node runs per chunk: ``MotorPolicy.act`` on the shipped checkpoints, per expert.

One call = features from (joint state, waypoint, tool pose) + the expert's public ``sample()``
(validation, fresh noise, NaN check) + the chunk as numpy: the node's inference part of the
joint state -> action chunk latency. Captured paths (``set_capture('whole')``: at batch 1 the
numpy/BLAS kernel of every expert, ``HostCoarseToFine`` for token and coarse_to_fine,
``HostLoopExpert`` for flow and diffusion) against the traced TorchScript graph without the CPU
kernel and against the same experts run eagerly, in alternating blocks in one process, so a
load change hits all alike. Prints a markdown table (p50 / p99 ms over ``--iters`` calls after
a warm-up; the path the captured policy runs, ``no kernel`` if it fell back to the traced
graph), the load average over the run, and a JSON line.

    python hybrid_vla_ros/bench/bench_motor_act.py [--iters 400] [--threads 1] [--bins 256]

``--bins N`` times coarse_to_fine from its ``coarse_to_fine_bN`` checkpoint (the exercise-1
precision models) instead of the default one.
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint
from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot

EXPERTS = ('token', 'flow', 'diffusion', 'coarse_to_fine')
BLOCK = 25


def observations(n: int, seed: int = 0, robot=DEFAULT_ROBOT):
    """Plausible inputs: joint states near the arm's home pose, waypoints around the tool."""
    rng = np.random.default_rng(seed)
    robot = load_robot(robot)
    kin = robot.kinematics()
    out = []
    for _ in range(n):
        q = np.clip(robot.home_q + rng.normal(0.0, 0.3, robot.n_joints), robot.lower,
                    robot.upper)
        pos, quat = kin.fk(q)
        wp = np.concatenate([pos + rng.normal(0.0, 0.05, 3), quat, [rng.uniform()]])
        out.append((np.concatenate([q, [rng.uniform()]]).astype(np.float32),
                    wp.astype(np.float32), pos, quat))
    return out


def captured_path(expert) -> str:
    """The batch-1 path ``set_capture('whole')`` built (after the warm-up): the CPU kernel's
    class, or ``no kernel`` for the traced graph."""
    runner = next(iter(expert._whole.values()))[1]
    runner = getattr(runner, 'kernel', runner)  # token: the kernel inside its wrapper
    name = type(runner).__name__
    return name if name.startswith('Host') else 'no kernel'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--iters', type=int, default=400)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--checkpoints', default=None,
                    help='motor checkpoints of that robot (default: the shipped ones)')
    ap.add_argument('--bins', type=int, default=None,
                    help='coarse_to_fine from coarse_to_fine_b<BINS> (e.g. 256)')
    args = ap.parse_args(argv)
    joints = load_robot(args.robot).joint_names
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    paths = {e: motor_checkpoint(e, bins=args.bins if e == 'coarse_to_fine' else None,
                                 root=args.checkpoints, robot=args.robot) for e in EXPERTS}
    policies = {mode: MotorPolicy.from_checkpoints(paths, joint_names=joints, capture=capture)
                for mode, capture in (('captured', 'whole'), ('traced', 'whole'),
                                      ('eager', None))}
    for expert in policies['traced'].experts.values():
        expert.host_kernel = False  # the traced TorchScript graph even where a kernel exists
    obs = observations(64, robot=args.robot)
    for p in policies.values():
        p.warmup()
    times = {(e, m): [] for e in EXPERTS for m in policies}
    load_start = os.getloadavg()
    for e in EXPERTS:
        for start in range(0, args.iters, BLOCK):
            for mode, policy in policies.items():  # alternating blocks
                for i in range(start, min(start + BLOCK, args.iters)):
                    s, wp, pos, quat = obs[i % len(obs)]
                    t0 = time.perf_counter()
                    policy.act(e, s, wp, pos, quat)
                    times[e, mode].append((time.perf_counter() - t0) * 1e3)
    load_end = os.getloadavg()
    suffix = f'; coarse_to_fine: {paths["coarse_to_fine"]}' if args.bins else ''
    print(f'torch {torch.__version__}, {args.threads} thread(s), {args.iters} calls per cell, '
          f'MotorPolicy.act on the shipped checkpoints (ms){suffix}')
    print(f'load average (1/5/15 min) at start {load_start[0]:.2f} / {load_start[1]:.2f} / '
          f'{load_start[2]:.2f}, at end {load_end[0]:.2f} / {load_end[1]:.2f} / '
          f'{load_end[2]:.2f} on {os.cpu_count()} CPUs')
    print('| expert | captured path | captured p50 / p99 | traced graph only p50 / p99 | '
          'eager p50 / p99 | traced / captured | eager / captured (p50) |')
    print('|---|---|---:|---:|---:|---:|---:|')
    result = {}
    for e in EXPERTS:
        row = {'captured_path': captured_path(policies['captured'].experts[e])}
        for mode in policies:
            t = np.asarray(times[e, mode])
            row[f'{mode}_p50'] = float(np.median(t))
            row[f'{mode}_p99'] = float(np.percentile(t, 99))
        row['traced_over_captured'] = row['traced_p50'] / row['captured_p50']
        row['eager_over_captured'] = row['eager_p50'] / row['captured_p50']
        result[e] = row
        cells = [f"{row[m + '_p50']:.3f} / {row[m + '_p99']:.3f}" for m in policies]
        print(f"| {e} | {row['captured_path']} | " + ' | '.join(cells)
              + f" | {row['traced_over_captured']:.2f}x | {row['eager_over_captured']:.2f}x |")
    print(json.dumps({'iters': args.iters, 'threads': args.threads,
                      'loadavg': {'start': load_start, 'end': load_end}, 'experts': result}))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
