"""Final-error distributions of the coarse_to_fine expert: coarse tokens only vs coarse + flow
refinement, in the ROS-free loop (the cores) and through the ROS graph, from instructions.

For each task, four ``hybrid-vla eval`` runs on the same seeds, one after the other (never two
graphs at once), the router fixed to coarse_to_fine:

- no ROS, ``--levels 3 --expert coarse_to_fine --refine-steps 0`` (coarse) and the default K;
- ``--ros --expert coarse_to_fine --ros-set motor_policy:refine_steps=0`` and the default K.

Prints a table (success with its 95% interval, median / p95 final error) and plots each
task's empirical distributions (ECDF of the final error, log scale). ``--from DIR`` re-plots
the JSONs a previous run saved in DIR.

    python hybrid_vla_ros/bench/bench_final_error.py --episodes 20 --out runs/final_error
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
from hybrid_vla_ros.evaluation.stats import format_rate

RUNS = {  # name -> extra eval flags
    'no-ROS coarse': ['--levels', '3', '--refine-steps', '0'],
    'no-ROS refined': ['--levels', '3'],
    'ROS coarse': ['--ros', '--ros-set', 'motor_policy:refine_steps=0'],
    'ROS refined': ['--ros'],
}
STYLE = {'no-ROS coarse': ('tab:purple', '--'), 'no-ROS refined': ('tab:purple', '-'),
         'ROS coarse': ('tab:green', '--'), 'ROS refined': ('tab:green', '-')}


def run_eval(task, episodes, seed, robot, flags):
    cmd = ['hybrid-vla', 'eval', '--task', task, '--episodes', str(episodes), '--seed',
           str(seed), '--expert', 'coarse_to_fine', '--robot', robot, *flags]
    print('$', ' '.join(cmd), flush=True)
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def plot(results, tasks, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name, r in results[task].items():
            e = np.sort([x for x in r['errors_mm'] if x is not None])
            if not len(e):
                continue
            colour, ls = STYLE[name]
            ax.step(np.maximum(e, 1e-3), np.arange(1, len(e) + 1) / len(e), where='post',
                    color=colour, linestyle=ls,
                    label=f"{name}: median {np.median(e):.2f} mm (n={r['episodes']})")
        ax.set_xscale('log')
        ax.set_xlabel('final error (mm, log)')
        ax.set_ylabel('fraction of episodes <= error')
        ax.set_title(task)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8, loc='lower right')
    fig.suptitle('coarse_to_fine final error: coarse tokens vs + flow refinement, '
                 'ROS graph vs no-ROS cores')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f'plot: {path}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tasks', default='reach,pick_place')
    ap.add_argument('--episodes', type=int, default=20)
    ap.add_argument('--seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--robot', default='arm7')
    ap.add_argument('--runs', default=','.join(RUNS), help='a subset of ' + ', '.join(RUNS))
    ap.add_argument('--out', default='runs/final_error', help='folder for the JSONs')
    ap.add_argument('--from', dest='from_dir', default=None,
                    help='re-plot the JSONs saved in this folder; run nothing')
    ap.add_argument('--plot', default='docs/final_error.png')
    a = ap.parse_args()
    tasks, runs = a.tasks.split(','), a.runs.split(',')
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        ap.error(f'unknown runs {unknown}; choose from {list(RUNS)}')
    folder = a.from_dir or a.out
    os.makedirs(folder, exist_ok=True)
    results = {t: {} for t in tasks}
    for task in tasks:
        for name in runs:
            path = os.path.join(folder, f"{task}_{name.replace(' ', '_')}.json")
            if a.from_dir:
                if os.path.isfile(path):
                    with open(path) as f:
                        results[task][name] = json.load(f)
                continue
            results[task][name] = run_eval(task, a.episodes, a.seed, a.robot, RUNS[name])
            with open(path, 'w') as f:
                json.dump(results[task][name], f)
    print('\n| task | run | success (95% CI) | median error | p95 error |')
    print('|---|---|---|---:|---:|')
    for task in tasks:
        for name, r in results[task].items():
            print(f"| {task} | {name} | {format_rate(r)} | {r['median_error_mm']:.2f} mm | "
                  f"{r['p95_error_mm']:.2f} mm |")
    if any(results[t] for t in tasks):
        plot(results, tasks, a.plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
