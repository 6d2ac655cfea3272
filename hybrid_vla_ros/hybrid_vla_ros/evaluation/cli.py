"""``hybrid-vla eval``: closed-loop evaluation; the LAST line printed is one JSON object.

    hybrid-vla eval --task reach --expert coarse_to_fine --episodes 50 --seed 1000
    hybrid-vla eval --task pick_place --levels 3 --episodes 20 --seed 1000
    hybrid-vla eval --task reach --expert scripted --robot arm6 --episodes 50
    hybrid-vla eval --ros --task pick_place --robot arm6 --expert flow --checkpoints ckpt/arm6

``--robot NAME|PATH.yaml`` picks the arm (sim, checkpoints checked against its joints);
``--expert scripted`` runs the scripted expert through the same loop and summary (a reference
for a new arm). ``--ros`` applies ``--robot``, ``--expert``, ``--checkpoints``, ``--task``,
``--episodes``, ``--seed``, ``--instructions``, ``--held-out``, ``--ensemble`` and
``--temperature`` (the motor node's parameters of those names), ``--hang-timeout`` and
``--ros-set``, and refuses the sim-only flags. Without ``--ensemble`` / ``--temperature`` each
expert runs with its checkpoint's own settings, with or without ROS.
"""
import argparse
import json

from hybrid_vla_ros.cli import add_robot_argument
from hybrid_vla_ros.domain.seeds import EVAL_SEED_START

# flags of the ROS-free loop that the ROS graph does not apply (its nodes have their own
# parameters: --ros-set NODE:PARAM=VALUE): dest -> the value that means "not given"
NOT_WITH_ROS = {'bins': None, 'refine_steps': None, 'exec_steps': None, 'levels': None}
DEFAULTS = {'exec_steps': 1, 'levels': 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybrid_vla_ros.models.registry import expert_names
    parser.add_argument('--task', required=True)
    parser.add_argument('--expert', default=None,
                        choices=list(expert_names()) + ['router', 'scripted'],
                        help='default: coarse_to_fine for --levels 1, the router otherwise; '
                             'scripted: the scripted expert (--levels 1, no checkpoint)')
    add_robot_argument(parser)
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed', type=int, default=EVAL_SEED_START,
                        help=f'seed of episode 0 (training data uses seeds < {EVAL_SEED_START}; '
                             f'default {EVAL_SEED_START})')
    parser.add_argument('--bins', type=int, default=None,
                        help='token bins: picks the <expert>_b<bins> checkpoint')
    parser.add_argument('--refine-steps', type=int, default=None,
                        help='K sampler steps (0 = coarse only for coarse_to_fine)')
    parser.add_argument('--exec-steps', type=int, default=None,
                        help='chunk steps executed per inference (default 1: receding horizon)')
    parser.add_argument('--ensemble', type=int, default=None, metavar='M',
                        help="ACT's temporal ensemble of the last M chunks for every expert, "
                             'applied by the motor policy (with --ros: its node parameter); '
                             "1 = latest chunk; default: each checkpoint's own")
    parser.add_argument('--temperature', type=float, default=None,
                        help='coarse_to_fine: scale of the refiner start noise (0 = start at '
                             "the coarse chunk; with --ros: the motor node's parameter); "
                             "default: the checkpoint's own")
    parser.add_argument('--levels', type=int, default=None, choices=[1, 2, 3],
                        help='1 (default): privileged plan + motor; 2: strategic planner + '
                             'motor; 3: strategic + tactical + motor')
    parser.add_argument('--instructions', default=None,
                        help='file of task<TAB>phrasing lines to draw instructions from; a '
                             "phrasing may name the task's scene fields ({obj}, {pad}, {a}, "
                             '{b}), filled from each episode')
    parser.add_argument('--held-out', action='store_true',
                        help="instructions from the task's held-out phrasings (never in the "
                             "planner's training data) instead of its training phrasings")
    parser.add_argument('--checkpoints', default=None,
                        help='folder of motor checkpoints (<expert>/, router/); with --ros the '
                             "motor node's checkpoint_dir (default: the shipped ones)")
    parser.add_argument('--ros', action='store_true',
                        help='run through the launched ROS 2 node graph')
    parser.add_argument('--ros-set', action='append', default=[], metavar='NODE:PARAM=VALUE',
                        help='with --ros: override a node parameter of the graph, e.g. '
                             'motor_policy:realtime_priority=0 (repeatable)')
    parser.add_argument('--hang-timeout', type=float, default=None, metavar='S',
                        help='with --ros: a node whose /diagnostics stop for S s is judged '
                             'hung and ends the run (default 10; 0: never judged; a node '
                             'that exits always ends it). Raise it on an overloaded machine, '
                             'where the niced planners can starve for seconds')
    parser.set_defaults(_eval_parser=parser)


def _flag(dest: str) -> str:
    return '--' + dest.replace('_', '-')


def check_args(args) -> None:
    """Refuse flag combinations that would be silently ignored (argparse error, exit 2)."""
    parser = getattr(args, '_eval_parser', None)

    def error(msg):
        if parser is not None:
            parser.error(msg)  # exits 2
        raise SystemExit(2)
    if args.ros:
        given = [_flag(k) for k, unset in NOT_WITH_ROS.items() if getattr(args, k) != unset]
        if given:
            error(f"{', '.join(given)} not applied by --ros (the graph's nodes take their "
                  'parameters: --ros-set NODE:PARAM=VALUE)')
        if args.expert == 'scripted':
            error('--expert scripted runs in the ROS-free loop, not with --ros')
    elif args.ros_set:
        error('--ros-set needs --ros')
    if args.instructions and args.held_out:
        error('--instructions and --held-out: give one of them')
    if args.ensemble is not None and args.ensemble < 1:
        error('--ensemble must be >= 1 (1 = the latest chunk)')
    if args.temperature is not None and not 0.0 <= args.temperature <= 10.0:
        error('--temperature must be in [0, 10]')
    if args.hang_timeout is not None and not args.ros:
        error('--hang-timeout needs --ros')
    if args.hang_timeout is not None and args.hang_timeout < 0:
        error('--hang-timeout must be >= 0')
    levels = args.levels or 1
    if args.expert == 'scripted' and levels != 1:
        error('--expert scripted follows the privileged plan: --levels 1 only')


def run(args) -> int:
    if args.episodes <= 0:
        raise ValueError('--episodes must be > 0')
    check_args(args)
    for k, v in DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.expert is None:
        args.expert = 'coarse_to_fine' if args.levels == 1 and not args.ros else 'router'
    if args.ros:
        from hybrid_vla_ros.bringup.launch_command import parse_overrides
        from hybrid_vla_ros.evaluation.ros_eval import evaluate_ros
        args.ros_overrides = parse_overrides(args.ros_set)
        for key in ('ensemble', 'temperature'):
            if getattr(args, key) is not None:
                args.ros_overrides.setdefault('motor_policy', {})[key] = getattr(args, key)
        result = evaluate_ros(args)
    elif args.levels == 1:
        if args.instructions or args.held_out:
            raise ValueError('--instructions and --held-out need --levels 2 or 3 or --ros '
                             '(a planner reads them)')
        from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
        result = evaluate_motor(args.task, args.expert, args.episodes, args.seed,
                                bins=args.bins, refine_steps=args.refine_steps,
                                exec_steps=args.exec_steps, checkpoints=args.checkpoints,
                                ensemble=args.ensemble, temperature=args.temperature,
                                robot=args.robot)
    else:
        from hybrid_vla_ros.evaluation.hierarchy_eval import evaluate_hierarchy
        result = evaluate_hierarchy(args)
    print(json.dumps(result))
    return 0
