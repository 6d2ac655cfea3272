"""``hybrid-vla eval``: closed-loop evaluation; the LAST line printed is one JSON object.

    hybrid-vla eval --task reach --expert coarse_to_fine --episodes 50 --seed 1000
    hybrid-vla eval --task pick_place --levels 3 --episodes 20 --seed 1000
"""
import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybrid_vla_ros.models.registry import expert_names
    parser.add_argument('--task', required=True)
    parser.add_argument('--expert', default=None, choices=list(expert_names()) + ['router'],
                        help='default: coarse_to_fine for --levels 1, the router otherwise')
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed', type=int, default=1_000_000,
                        help='seed of episode 0 (training data uses seeds < 1000000; '
                             'default 1000000)')
    parser.add_argument('--bins', type=int, default=None,
                        help='token bins: picks the <expert>_b<bins> checkpoint')
    parser.add_argument('--refine-steps', type=int, default=None,
                        help='K sampler steps (0 = coarse only for coarse_to_fine)')
    parser.add_argument('--exec-steps', type=int, default=1,
                        help='chunk steps executed per inference (default 1: receding horizon)')
    parser.add_argument('--ensemble', type=int, default=1, metavar='M',
                        help='temporal ensemble of the last M chunks (ACT); 1 = latest chunk')
    parser.add_argument('--temperature', type=float, default=None,
                        help='coarse_to_fine: scale of the refiner start noise (0 = start at '
                             'the coarse chunk; default 1)')
    parser.add_argument('--levels', type=int, default=1, choices=[1, 2, 3],
                        help='1: privileged plan + motor; 2: strategic planner + motor; '
                             '3: strategic + tactical + motor')
    parser.add_argument('--instructions', default=None,
                        help='file of task<TAB>phrasing lines to draw instructions from')
    parser.add_argument('--checkpoints', default=None, help='folder of motor checkpoints')
    parser.add_argument('--ros', action='store_true',
                        help='run through the launched ROS 2 node graph')
    parser.add_argument('--ros-set', action='append', default=[], metavar='NODE:PARAM=VALUE',
                        help='with --ros: override a node parameter of the graph, e.g. '
                             'motor_policy:realtime_priority=0 (repeatable)')


def run(args) -> int:
    if args.episodes <= 0:
        raise ValueError('--episodes must be > 0')
    if args.expert is None:
        args.expert = 'coarse_to_fine' if args.levels == 1 and not args.ros else 'router'
    if args.ros_set and not args.ros:
        raise ValueError('--ros-set needs --ros')
    if args.ros:
        from hybrid_vla_ros.bringup.launch_command import parse_overrides
        from hybrid_vla_ros.evaluation.ros_eval import evaluate_ros
        args.ros_overrides = parse_overrides(args.ros_set)
        result = evaluate_ros(args)
    elif args.levels == 1:
        if args.instructions:
            raise ValueError('--instructions needs --levels 2 or 3 (a planner reads them)')
        from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
        result = evaluate_motor(args.task, args.expert, args.episodes, args.seed,
                                bins=args.bins, refine_steps=args.refine_steps,
                                exec_steps=args.exec_steps, checkpoints=args.checkpoints,
                                ensemble=args.ensemble, temperature=args.temperature)
    else:
        from hybrid_vla_ros.evaluation.hierarchy_eval import evaluate_hierarchy
        result = evaluate_hierarchy(args)
    print(json.dumps(result))
    return 0
