"""``hybrid-vla train strategic|tactical`` and the planner evaluation entry points.

The top-level CLI wires these in (``add_arguments(parser)`` / ``run(args) -> int`` per
sub-command); ``python -m hybrid_vla_ros.training.planner_cli eval`` runs the held-out planner
evaluation. Heavy imports happen inside ``run`` so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..robot import DEFAULT_ROBOT


def _default_out() -> Path:
    try:
        from ..shipped_checkpoints import checkpoint_root
        return Path(checkpoint_root()) / 'planner'
    except ImportError:
        return Path(__file__).resolve().parents[2] / 'checkpoints' / 'planner'


DEFAULT_OUT = _default_out()
DEFAULT_PARAPHRASES = 12   # keep in step with training/train_planner.py train_strategic


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument('--out', type=Path, default=DEFAULT_OUT,
                   help='checkpoint directory (resumes if it holds a partial run)')
    p.add_argument('--episodes', type=int, default=60, help='sim scenes per task')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--robot', default=DEFAULT_ROBOT,
                   help=f'robot config name or YAML path (default {DEFAULT_ROBOT})')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--tasks', default='reach,pick_place,stack,multimodal,detour')
    p.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    p.add_argument('--cache-dir', type=Path, default=None,
                   help='where generated datasets + frozen embeddings are cached '
                        '(default ~/.cache/hybrid_vla_ros/planner_data)')


def add_strategic_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hybrid-vla train strategic``."""
    _common(parser)
    parser.add_argument('--epochs-decoder', type=int, default=12)
    parser.add_argument('--epochs-grounding', type=int, default=35)
    parser.add_argument('--token-dropout', type=float, default=0.3,
                        help='share of instruction tokens hidden from the decoder in training')
    parser.add_argument('--paraphrases', type=int, default=DEFAULT_PARAPHRASES,
                        help='programmatic paraphrases per scene added to the decoder data '
                             '(planning/paraphrase.py; never held-out phrasings or words)')


def run_strategic(args) -> int:
    import torch

    from ..training.train_planner import train_strategic
    torch.set_num_threads(args.threads)
    res = train_strategic(args.out, episodes=args.episodes, seed=args.seed,
                          epochs_decoder=args.epochs_decoder,
                          epochs_grounding=args.epochs_grounding,
                          token_dropout=args.token_dropout, paraphrases=args.paraphrases,
                          tasks=tuple(args.tasks.split(',')), progress=not args.no_progress,
                          cache_dir=args.cache_dir, robot=args.robot)
    print(json.dumps({'out': res['out'], 'seconds': round(res['seconds'], 1),
                      'decoder': res['decoder'][-1], 'grounding': res['grounding'][-1]}))
    return 0


def add_tactical_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hybrid-vla train tactical``."""
    _common(parser)
    parser.set_defaults(episodes=100)
    parser.add_argument('--epochs', type=int, default=150)
    parser.add_argument('--samples-per-subgoal', type=int, default=8)


def run_tactical(args) -> int:
    import torch

    from ..training.train_planner import train_tactical
    torch.set_num_threads(args.threads)
    res = train_tactical(args.out, episodes=args.episodes, seed=args.seed, epochs=args.epochs,
                         samples_per_subgoal=args.samples_per_subgoal,
                         tasks=tuple(args.tasks.split(',')), progress=not args.no_progress,
                         cache_dir=args.cache_dir, robot=args.robot)
    print(json.dumps({'out': res['out'], 'seconds': round(res['seconds'], 1),
                      'tactical': res['tactical'][-1]}))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``hybrid-vla train {strategic,tactical}`` (a parser with its own sub-commands)."""
    sub = parser.add_subparsers(dest='level', required=True, metavar='LEVEL')
    s = sub.add_parser('strategic', help='train the sub-goal decoder + grounding head')
    add_strategic_arguments(s)
    s.set_defaults(_run=run_strategic)
    t = sub.add_parser('tactical', help='train the tactical waypoint network')
    add_tactical_arguments(t)
    t.set_defaults(_run=run_tactical)


def run(args) -> int:
    return int(args._run(args) or 0)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the planner's held-out evaluation."""
    parser.add_argument('--checkpoint', type=Path, default=DEFAULT_OUT)
    parser.add_argument('--episodes', type=int, default=20, help='new scenes per task')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--robot', default=DEFAULT_ROBOT,
                        help=f'robot config name or YAML path (default {DEFAULT_ROBOT})')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--tasks', default='reach,pick_place,stack,multimodal,detour')
    parser.add_argument('--train-phrasings', action='store_true',
                        help='use training phrasings instead of the held-out ones')
    parser.add_argument('--no-progress', action='store_true')


def run_eval(args) -> int:
    import torch

    from ..evaluation.planner_eval import evaluate_planner
    torch.set_num_threads(args.threads)
    res = evaluate_planner(args.checkpoint, episodes=args.episodes, seed=args.seed,
                           tasks=tuple(args.tasks.split(',')),
                           held_out=not args.train_phrasings, progress=not args.no_progress,
                           robot=args.robot)
    print(json.dumps(res))
    return 0


def main(argv=None) -> int:
    """Stand-alone use:
    ``python -m hybrid_vla_ros.training.planner_cli {strategic,tactical,eval}``."""
    parser = argparse.ArgumentParser(prog='python -m hybrid_vla_ros.training.planner_cli')
    sub = parser.add_subparsers(dest='cmd', required=True)
    for name, add, fn in (('strategic', add_strategic_arguments, run_strategic),
                          ('tactical', add_tactical_arguments, run_tactical),
                          ('eval', add_eval_arguments, run_eval)):
        p = sub.add_parser(name)
        add(p)
        p.set_defaults(_run=fn)
    args = parser.parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == '__main__':
    raise SystemExit(main())
