"""Exercise 3 of the lesson: every single expert vs the learned router on the mixed task suite.

Closed loop in the MuJoCo sim, privileged sub-goals (the motor level alone), evaluation seeds
disjoint from the training data and from the router's labelling episodes.

    python hybrid_vla_ros/bench/bench_routing.py --episodes 10
"""
import argparse
import json

import numpy as np
import torch

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
from hybrid_vla_ros.robot import DEFAULT_ROBOT

TASKS = ('reach', 'pick_place', 'stack', 'multimodal', 'detour')
EXPERTS = ('token', 'flow', 'diffusion', 'coarse_to_fine', 'router')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=10)
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--tasks', default=','.join(TASKS))
    ap.add_argument('--experts', default=','.join(EXPERTS))
    ap.add_argument('--checkpoints', default=None)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--out', default=None, help='also write the table as JSON')
    a = ap.parse_args()
    torch.set_num_threads(1)
    tasks, experts = a.tasks.split(','), a.experts.split(',')
    table = {}
    for e in experts:
        for t in tasks:
            table[(e, t)] = evaluate_motor(t, e, a.episodes, a.seed, checkpoints=a.checkpoints,
                                           progress=False, robot=a.robot)
            r = table[(e, t)]
            print(f"{e:>15} {t:>11}: success {100 * r['success_rate']:5.1f}%  median "
                  f"{r['median_error_mm']:8.2f} mm  used {r['experts_used']}", flush=True)
    print(f'\n{a.episodes} episodes per cell from seed {a.seed}; success % (median error mm)')
    print('| expert | ' + ' | '.join(tasks) + ' | mixed suite success |')
    print('|---|' + '---|' * (len(tasks) + 1))
    mixed = {}
    for e in experts:
        cells = [f"{100 * table[(e, t)]['success_rate']:.0f}% "
                 f"({table[(e, t)]['median_error_mm']:.1f})" for t in tasks]
        mixed[e] = float(np.mean([table[(e, t)]['success_rate'] for t in tasks]))
        print(f'| {e} | ' + ' | '.join(cells) + f' | {100 * mixed[e]:.1f}% |')
    singles = {e: v for e, v in mixed.items() if e != 'router'}
    if 'router' in mixed and singles:
        best = max(singles, key=singles.get)
        print(f"\nrouter {100 * mixed['router']:.1f}% vs best single expert {best} "
              f"{100 * singles[best]:.1f}%: {100 * (mixed['router'] - singles[best]):+.1f} "
              'points on the mixed suite')
    if a.out:
        with open(a.out, 'w') as f:
            json.dump({f'{e}/{t}': r for (e, t), r in table.items()}, f, indent=2)


if __name__ == '__main__':
    main()
