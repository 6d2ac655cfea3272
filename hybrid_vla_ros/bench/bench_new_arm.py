#!/usr/bin/env python3
"""A new arm from nothing to numbers: collect, train the motor level, evaluate; wall time of each.

    python hybrid_vla_ros/bench/bench_new_arm.py --robot arm6           # the full run
    python hybrid_vla_ros/bench/bench_new_arm.py --robot my_arm.yaml \\
        --episodes 4 --eval-episodes 1 --steps 5 --batch-size 16 --d-model 16   # a smoke test

Stages, each the ``hybrid-vla`` command a user types (run as a subprocess, timed):

1. ``collect`` ``--episodes`` (200) pick_place and as many reach demonstrations, no images,
   with DART noise (``--action-noise``, 0.03 rad on every other episode, as for the shipped
   suites: cloned from noise-free demonstrations only, the policy never sees how to recover
   from its own drift; the README's results compare both) in ``--workers`` processes (2: this
   machine's cores);
2. ``train motor --expert coarse_to_fine`` on both datasets with the trainer's defaults (only
   what is passed here, e.g. ``--steps``, overrides them);
3. ``eval`` of that checkpoint, ``--eval-episodes`` (50) per task, and of the scripted expert
   on the same seeds (the reference: what the arm and its workspace allow).

Prints each stage's wall time and the results; ``OUT/bench.json`` keeps them.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

from hybrid_vla_ros.domain.seeds import EVAL_SEED_START  # noqa: E402

TASKS = ('pick_place', 'reach')


def hybrid_vla(*argv, capture=False):
    """Run ``hybrid-vla ARGV``; returns (wall seconds, stdout or None). Raises on failure."""
    cmd = [sys.executable, '-m', 'hybrid_vla_ros.cli', *map(str, argv)]
    print('$ hybrid-vla ' + ' '.join(map(str, argv)), flush=True)
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f'bench_new_arm: `hybrid-vla {argv[0]}` failed (exit {r.returncode})')
    return wall, r.stdout


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    from hybrid_vla_ros.robot import DEFAULT_ROBOT, load_robot

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml')
    ap.add_argument('--episodes', type=int, default=200, help='demonstrations per task (200)')
    ap.add_argument('--eval-episodes', type=int, default=50, help='per task (50)')
    ap.add_argument('--expert', default='coarse_to_fine', help='expert to train (coarse_to_fine)')
    ap.add_argument('--workers', type=int, default=2, help='collect processes (2)')
    ap.add_argument('--seed', type=int, default=0, help='seed of the first demonstration')
    ap.add_argument('--action-noise', type=float, default=0.03,
                    help='DART noise of the demonstrations (rad, every other episode; 0.03)')
    ap.add_argument('--eval-seed', type=int, default=EVAL_SEED_START)
    ap.add_argument('--out', default=None, help='work folder (default runs/bench_new_arm/<robot>)')
    ap.add_argument('--no-reference', action='store_true',
                    help='skip the scripted-expert evaluation')
    # training overrides (default: the trainer's own defaults)
    ap.add_argument('--steps', type=int, default=None)
    ap.add_argument('--batch-size', type=int, default=None)
    ap.add_argument('--d-model', type=int, default=None)
    args = ap.parse_args(argv)
    if args.episodes <= 0 or args.eval_episodes <= 0:
        ap.error('--episodes and --eval-episodes must be > 0')

    robot = load_robot(args.robot)  # a bad robot YAML fails here, before any work
    out = os.path.abspath(args.out or os.path.join('runs', 'bench_new_arm', robot.name))
    os.makedirs(out, exist_ok=True)
    rflag = ('--robot', robot.config_file)
    print(f'bench_new_arm: robot {robot.name} ({robot.n_joints} joints + gripper, '
          f'{robot.config_file}) -> {out}', flush=True)
    stages, results = {}, {}
    t_all = time.monotonic()

    data = []
    for task in TASKS:
        folder = os.path.join(out, 'data', task)
        data.append(folder)
        stages[f'collect {task}'], _ = hybrid_vla(
            'collect', '--task', task, '--episodes', args.episodes, '--seed', args.seed,
            '--out', folder, '--no-images', '--workers', args.workers,
            '--action-noise', args.action_noise, *rflag)

    ckpts = os.path.join(out, 'checkpoints')
    train = ['train', 'motor', '--expert', args.expert, '--data', ','.join(data),
             '--out', os.path.join(ckpts, args.expert), *rflag]
    for flag, value in (('--steps', args.steps), ('--batch-size', args.batch_size),
                        ('--d-model', args.d_model)):
        if value is not None:
            train += [flag, value]
    if args.steps is not None:
        train += ['--val-every', max(1, args.steps // 4)]
    stages[f'train {args.expert}'], _ = hybrid_vla(*train)

    experts = [args.expert] + ([] if args.no_reference else ['scripted'])
    for task in TASKS:
        for expert in experts:
            ev = ['eval', '--task', task, '--expert', expert, '--episodes', args.eval_episodes,
                  '--seed', args.eval_seed, *rflag]
            if expert != 'scripted':
                ev += ['--checkpoints', ckpts]
            stages[f'eval {task}/{expert}'], stdout = hybrid_vla(*ev, capture=True)
            results[f'{task}/{expert}'] = last_json(stdout)
    total = time.monotonic() - t_all

    print(f'\nbench_new_arm: robot {robot.name}, {args.episodes} demonstrations per task, '
          f'{args.eval_episodes} evaluation episodes per task')
    print(f"{'stage':<34}{'wall':>10}")
    for name, s in stages.items():
        print(f'{name:<34}{s:>9.1f}s')
    print(f"{'total':<34}{total:>9.1f}s\n")
    print(f"{'task/expert':<28}{'success':>9}{'95% CI':>16}{'median mm':>11}{'p95 mm':>9}"
          f"{'infer p50':>11}")
    for name, r in results.items():
        lo, hi = r['success_ci']
        inf = r.get('inference_ms_p50')
        ci = f'[{100 * lo:.0f}, {100 * hi:.0f}]%'
        print(f"{name:<28}{100 * r['success_rate']:>8.0f}%{ci:>16}"
              f"{r['median_error_mm']:>11.2f}{r['p95_error_mm']:>9.2f}"
              + (f'{inf:>9.2f}ms' if inf is not None else f"{'-':>11}"))
    report = {'robot': robot.name, 'config_file': robot.config_file, 'n_joints': robot.n_joints,
              'episodes': args.episodes, 'eval_episodes': args.eval_episodes,
              'action_noise': args.action_noise,
              'expert': args.expert, 'stages_s': {k: round(v, 1) for k, v in stages.items()},
              'total_s': round(total, 1), 'results': results}
    with open(os.path.join(out, 'bench.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(f'\nbench_new_arm: {os.path.join(out, "bench.json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
