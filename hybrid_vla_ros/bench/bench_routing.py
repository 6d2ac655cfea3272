"""Exercise 3 of the lesson: every single expert vs the learned router on the mixed task suite.

Closed loop in the MuJoCo sim, privileged sub-goals (the motor level alone), evaluation seeds
disjoint from the training data and from the router's labelling episodes. Each cell (expert x
task) reports its success with the 95% Wilson interval; the mixed suite pools every task's
episodes (n = tasks x episodes), and the router is compared with the best single expert by
whether the two intervals overlap. ``--workers N`` runs cells in N processes (each
single-threaded, so the figures do not depend on N).

    python hybrid_vla_ros/bench/bench_routing.py --episodes 30 --workers 2 [--out table.json]
"""
import argparse
from concurrent.futures import ProcessPoolExecutor
import json

import torch

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
from hybrid_vla_ros.evaluation.stats import format_rate, intervals_overlap, wilson_interval
from hybrid_vla_ros.robot import DEFAULT_ROBOT

TASKS = ('reach', 'pick_place', 'stack', 'multimodal', 'detour')
EXPERTS = ('token', 'flow', 'diffusion', 'coarse_to_fine', 'router')


def run_cell(expert, task, episodes, seed, checkpoints, robot):
    torch.set_num_threads(1)
    return evaluate_motor(task, expert, episodes, seed, checkpoints=checkpoints,
                          progress=False, robot=robot)


def pooled(cells) -> dict:
    """The mixed suite of one expert: every task's episodes together."""
    k = sum(c['successes'] for c in cells)
    n = sum(c['episodes'] for c in cells)
    return {'successes': k, 'episodes': n, 'success_rate': k / n, 'success_ci':
            wilson_interval(k, n)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=30, help='per expert and task')
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--tasks', default=','.join(TASKS))
    ap.add_argument('--experts', default=','.join(EXPERTS))
    ap.add_argument('--checkpoints', default=None)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--workers', type=int, default=1, help='cells run in this many processes')
    ap.add_argument('--out', default=None, help='also write the table as JSON')
    a = ap.parse_args()
    if a.episodes < 1 or a.workers < 1:
        ap.error('--episodes and --workers must be >= 1')
    tasks, experts = a.tasks.split(','), a.experts.split(',')
    cells = [(e, t) for e in experts for t in tasks]
    table = {}
    with ProcessPoolExecutor(a.workers) as pool:
        futures = {cell: pool.submit(run_cell, *cell, a.episodes, a.seed, a.checkpoints,
                                     a.robot) for cell in cells}
        for (e, t), fut in futures.items():
            r = table[(e, t)] = fut.result()
            print(f"{e:>15} {t:>11}: success {format_rate(r)}  median "
                  f"{r['median_error_mm']:8.2f} mm  used {r['experts_used']}", flush=True)
    print(f'\n{a.episodes} episodes per cell from seed {a.seed}; success (95% CI), '
          'median final error mm')
    print('| expert | ' + ' | '.join(tasks) + ' | mixed suite |')
    print('|---|' + '---|' * (len(tasks) + 1))
    mixed = {}
    for e in experts:
        row = [f"{format_rate(table[(e, t)])} {table[(e, t)]['median_error_mm']:.1f} mm"
               for t in tasks]
        mixed[e] = pooled([table[(e, t)] for t in tasks])
        print(f'| {e} | ' + ' | '.join(row) + f' | {format_rate(mixed[e])} |')
    singles = {e: v for e, v in mixed.items() if e != 'router'}
    if 'router' in mixed and singles:
        best = max(singles, key=lambda e: singles[e]['success_rate'])
        r, b = mixed['router'], singles[best]
        overlap = intervals_overlap(r['success_ci'], b['success_ci'])
        print(f"\nrouter {format_rate(r)} vs best single expert {best} {format_rate(b)}: "
              f"{100 * (r['success_rate'] - b['success_rate']):+.1f} points on the mixed "
              f"suite; the intervals {'overlap' if overlap else 'do not overlap'}")
    if a.out:
        with open(a.out, 'w') as f:
            json.dump({'cells': {f'{e}/{t}': r for (e, t), r in table.items()},
                       'mixed': mixed}, f, indent=2)


if __name__ == '__main__':
    main()
