"""Exercise 1 of the lesson: coarse-only tokens vs coarse + flow refinement, precision reach.

Closed loop in the MuJoCo sim on the ``reach`` task (1 mm tolerance): for each bin count, the
coarse_to_fine checkpoint is evaluated with K=0 (coarse tokens only) and K refinement steps.
Also sweeps K for one bin count and plots precision vs refinement steps. ``--ensemble M``
executes ACT's temporal ensemble of the last M chunks (see ``evaluation/motor_eval.py``); the
table is printed for M = 1 (the latest chunk only) and for the given M.

    python hybrid_vla_ros/bench/bench_coarse_to_fine.py \
        --checkpoints hybrid_vla_ros/checkpoints/arm7/motor --episodes 100 --ensemble 8
"""
import argparse
import json
import os

import torch

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
from hybrid_vla_ros.evaluation.stats import format_rate
from hybrid_vla_ros.robot import DEFAULT_ROBOT


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--checkpoints', required=True)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--episodes', type=int, default=30)
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--bins', default='64,128,256')
    ap.add_argument('--refine-steps', type=int, default=5)
    ap.add_argument('--sweep', default='0,1,2,5,10', help='K values for the plot')
    ap.add_argument('--sweep-bins', type=int, default=64)
    ap.add_argument('--plot', default='docs/precision_vs_refine_steps.png')
    ap.add_argument('--ensemble', type=int, default=8,
                    help='temporal ensemble size of the second table and the sweep')
    ap.add_argument('--temperature', type=float, default=None,
                    help='refiner start-noise temperature (default: the expert\'s, 1)')
    ap.add_argument('--out', default=None, help='also write the results as JSON')
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f'reach, {a.episodes} episodes from seed {a.seed}, closed loop, 1 mm tolerance, '
          f'refiner temperature {1.0 if a.temperature is None else a.temperature}')
    print('| bins | refinement | ensemble | median error (mm) | p95 error (mm) | '
          'success@1mm (95% CI) | inference p50 (ms) |')
    print('|---|---|---|---|---|---|---|')
    for m in sorted({1, a.ensemble}):
        for b in [int(x) for x in a.bins.split(',')]:
            for k in (0, a.refine_steps):
                r = evaluate_motor('reach', 'coarse_to_fine', a.episodes, a.seed, bins=b,
                                   refine_steps=k, checkpoints=a.checkpoints, progress=False,
                                   ensemble=m, temperature=a.temperature, robot=a.robot)
                rows.append(r)
                label = 'coarse only' if k == 0 else f'coarse + {k} flow steps'
                print(f"| {b} | {label} | {m} | {r['median_error_mm']:.3f} | "
                      f"{r['p95_error_mm']:.3f} | {format_rate(r)} | "
                      f"{r['inference_ms_p50']:.2f} |", flush=True)
    sweep = []
    for k in [int(x) for x in a.sweep.split(',')]:
        r = evaluate_motor('reach', 'coarse_to_fine', a.episodes, a.seed, bins=a.sweep_bins,
                           refine_steps=k, checkpoints=a.checkpoints, progress=False,
                           ensemble=a.ensemble, temperature=a.temperature, robot=a.robot)
        sweep.append(r)
        print(f"K={k}: median {r['median_error_mm']:.3f} mm, p95 {r['p95_error_mm']:.3f} mm, "
              f"success {format_rate(r)}, {r['inference_ms_p50']:.2f} ms",
              flush=True)
    if a.plot:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        ks = [r['refine_steps'] for r in sweep]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ks, [r['median_error_mm'] for r in sweep], 'o-', label='median')
        ax.plot(ks, [r['p95_error_mm'] for r in sweep], 's--', label='p95')
        ax.axhline(1.0, color='grey', lw=0.8, label='1 mm tolerance')
        ax.set_yscale('log')
        ax.set_xlabel('flow refinement steps K')
        ax.set_ylabel('final tool-point error (mm)')
        ax.set_title(f'reach, coarse_to_fine {a.sweep_bins} bins, ensemble {a.ensemble}, '
                     f'{a.episodes} episodes', fontsize=9)
        ax.legend()
        fig.tight_layout()
        os.makedirs(os.path.dirname(a.plot) or '.', exist_ok=True)
        fig.savefig(a.plot, dpi=120)
        print(f'plot: {a.plot}')
    if a.out:
        with open(a.out, 'w') as f:
            json.dump({'table': rows, 'sweep': sweep}, f, indent=2)


if __name__ == '__main__':
    main()
