"""Exercise 2 of the lesson: 2 levels (planner -> motor) vs 3 levels (planner -> tactical ->
motor), closed loop in the sim, over tasks ordered by complexity. Each cell's success rate
carries its 95% Wilson interval, and the table says whether the two intervals overlap (a
difference they do not support).

    python hybrid_vla_ros/bench/bench_hierarchy.py --episodes 30
"""
import argparse
from types import SimpleNamespace

import numpy as np
import torch

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.evaluation.hierarchy_eval import evaluate_hierarchy
from hybrid_vla_ros.evaluation.stats import format_rate, intervals_overlap
from hybrid_vla_ros.robot import DEFAULT_ROBOT

TASKS = ('reach', 'pick_place', 'detour', 'stack')  # by complexity


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=30)
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--expert', default='flow')
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--checkpoints', default=None, help='motor checkpoints of that robot')
    ap.add_argument('--tasks', default=','.join(TASKS))
    ap.add_argument('--plot', default='docs/hierarchy_depth.png')
    a = ap.parse_args()
    torch.set_num_threads(1)
    tasks = a.tasks.split(',')
    rows = {}
    for t in tasks:
        for levels in (2, 3):
            args = SimpleNamespace(task=t, levels=levels, expert=a.expert, episodes=a.episodes,
                                   seed=a.seed, instructions=None, checkpoints=a.checkpoints,
                                   bins=None, refine_steps=None, robot=a.robot, ensemble=1)
            rows[(t, levels)] = r = evaluate_hierarchy(args, progress=False)
            print(f"{t:>10} levels={levels}: success {format_rate(r)}, median "
                  f"{r['median_error_mm']:.1f} mm, exact-match {r['subgoal_exact_match']:.2f}",
                  flush=True)
    print(f'\n{a.episodes} episodes per cell from seed {a.seed}, motor expert {a.expert}')
    print('| task | 2 levels success | 2 levels median mm | 3 levels success | '
          '3 levels median mm | intervals overlap |')
    print('|---|---|---|---|---|---|')
    for t in tasks:
        r2, r3 = rows[(t, 2)], rows[(t, 3)]
        overlap = intervals_overlap(r2['success_ci'], r3['success_ci'])
        print(f"| {t} | {format_rate(r2)} | {r2['median_error_mm']:.1f} | "
              f"{format_rate(r3)} | {r3['median_error_mm']:.1f} | "
              f"{'yes' if overlap else 'no'} |")
    if a.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        x = np.arange(len(tasks))
        for levels, style, dx in ((2, 'o--', -0.06), (3, 's-', 0.06)):
            rate = np.array([100 * rows[(t, levels)]['success_rate'] for t in tasks])
            ci = np.array([[100 * v for v in rows[(t, levels)]['success_ci']] for t in tasks])
            ax.errorbar(x + dx, rate, yerr=[rate - ci[:, 0], ci[:, 1] - rate], fmt=style,
                        capsize=3, label=f'{levels} levels')
        ax.set_xticks(x, tasks)
        ax.set_ylabel('success rate (%)')
        ax.set_xlabel('task (increasing complexity)')
        ax.set_ylim(-5, 105)
        ax.set_title(f'hierarchy depth, {a.episodes} episodes per point (95% CI)')
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f'plot: {a.plot}')


if __name__ == '__main__':
    main()
