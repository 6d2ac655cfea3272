"""``hybrid-vla train router``: label every phase of every task by the expert that did best in
it on held-out episodes, fit (:mod:`hybrid_vla_ros.training.router_fit`).

    hybrid-vla train router --episodes 10 --workers 2 \
        --out hybrid_vla_ros/checkpoints/arm7/motor/router
"""
import argparse
import json

from hybrid_vla_ros.cli import add_robot_argument
from hybrid_vla_ros.training.router_fit import ROUTER_SEED, fit_router


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--tasks', default='reach,pick_place,stack,multimodal,detour')
    parser.add_argument('--experts', default='token,flow,diffusion,coarse_to_fine')
    parser.add_argument('--episodes', type=int, default=10,
                        help='held-out episodes per (task, expert) and per (task, phase, '
                             'expert) for the labels')
    parser.add_argument('--workers', type=int, default=1,
                        help='evaluations run in this many processes (single-threaded each)')
    parser.add_argument('--seed', type=int, default=ROUTER_SEED)
    parser.add_argument('--checkpoints', default=None, help='folder of the motor checkpoints')
    parser.add_argument('--out', required=True)
    add_robot_argument(parser)


def run(args) -> int:
    report = fit_router(args.tasks.split(','), args.experts.split(','), args.episodes, args.out,
                        checkpoints=args.checkpoints, seed=args.seed, robot=args.robot,
                        workers=args.workers)
    print(json.dumps({'base': report['base'], 'labels': report['labels'],
                      'train': report['train']}))
    return 0
