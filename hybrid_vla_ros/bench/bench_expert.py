#!/usr/bin/env python3
"""Scripted-expert success rate and final error per task over N seeded episodes.

    python bench/bench_expert.py [--episodes 200] [--tasks reach pick_place ...] [--seed0 0]
"""
import argparse
import os
import sys
import time

os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('OMP_NUM_THREADS', '1')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from hybrid_vla_ros.robot import DEFAULT_ROBOT  # noqa: E402
from hybrid_vla_ros.sim.arm_sim import ArmSim  # noqa: E402
from hybrid_vla_ros.sim.rollout import rollout  # noqa: E402
from hybrid_vla_ros.sim.tasks import task_names  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--episodes', type=int, default=200)
    ap.add_argument('--seed0', type=int, default=0)
    ap.add_argument('--tasks', nargs='*', default=task_names())
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    args = ap.parse_args(argv)
    sim = ArmSim(robot=args.robot)
    rows = []
    failures = {}
    for task in args.tasks:
        res = []
        t0 = time.perf_counter()
        for seed in tqdm(range(args.seed0, args.seed0 + args.episodes), desc=task, leave=False):
            r = rollout(sim, task, seed)
            res.append(r)
            if not r['success']:
                failures.setdefault(task, []).append((seed, round(r['error_mm'], 3)))
        wall = time.perf_counter() - t0
        err = np.array([r['error_mm'] for r in res])
        steps = np.array([r['steps'] for r in res])
        rows.append((task, len(res), np.mean([r['success'] for r in res]), err.mean(),
                     np.median(err), err.max(), steps.mean(), wall / len(res)))
    print(f'scripted expert, {args.episodes} episodes per task (seeds {args.seed0}..'
          f'{args.seed0 + args.episodes - 1}), control 20 Hz, physics {1 / sim.timestep:.0f} Hz')
    print(f"{'task':<12}{'n':>5}{'success':>9}{'mean mm':>11}{'median mm':>11}{'max mm':>10}"
          f"{'steps':>8}{'s/episode':>11}")
    for t, n, sr, me, md, mx, st, w in rows:
        print(f'{t:<12}{n:>5}{100 * sr:>8.1f}%{me:>11.4f}{md:>11.4f}{mx:>10.4f}'
              f'{st:>8.1f}{w:>11.3f}')
    for t, f in failures.items():
        print(f'failures {t}: {f[:20]}')
    sim.close()


if __name__ == '__main__':
    main()
