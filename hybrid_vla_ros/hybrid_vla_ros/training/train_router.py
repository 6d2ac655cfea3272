"""``hybrid-vla train router``: label situations by the best expert on held-out episodes, fit.

    hybrid-vla train router --episodes 10 --out hybrid_vla_ros/checkpoints/arm7/motor/router
"""
import argparse
import json

from hybrid_vla_ros.cli import add_robot_argument
from hybrid_vla_ros.training.router_fit import ROUTER_SEED, fit_router


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--tasks', default='reach,pick_place,stack,multimodal,detour')
    parser.add_argument('--experts', default='token,flow,diffusion,coarse_to_fine')
    parser.add_argument('--episodes', type=int, default=10,
                        help='held-out episodes per (task, expert) for the labels')
    parser.add_argument('--seed', type=int, default=ROUTER_SEED)
    parser.add_argument('--checkpoints', default=None, help='folder of the motor checkpoints')
    parser.add_argument('--out', required=True)
    add_robot_argument(parser)


def run(args) -> int:
    report = fit_router(args.tasks.split(','), args.experts.split(','), args.episodes, args.out,
                        checkpoints=args.checkpoints, seed=args.seed, robot=args.robot)
    print(json.dumps({'labels': report['labels'], 'train': report['train']}))
    return 0
