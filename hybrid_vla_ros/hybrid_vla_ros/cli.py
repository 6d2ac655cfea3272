"""The ``hybrid-vla`` command line: one entry point, sub-commands registered by module.

Each sub-command lives next to the code it drives and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them up, importing heavy modules lazily so
``hybrid-vla --help`` stays fast.
"""
import argparse
import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS = {
    'demo': ('hybrid_vla_ros.demo', 'run the demo (see README)'),
    'collect': ('hybrid_vla_ros.data.collect',
                'record scripted-expert demonstrations into a LeRobot v3 dataset'),
    'dataset': ('hybrid_vla_ros.data.dataset_cli',
                'LeRobot v3 datasets: from-bag (MCAP bags -> dataset), info'),
    'view': ('hybrid_vla_ros.viewer.view_command',
             'show a bag or a dataset in rerun (native, --web, or --save FILE.rrd)'),
    'train': ('hybrid_vla_ros.training.cli', 'train a level (motor, strategic, tactical, router)'),
    'eval': ('hybrid_vla_ros.evaluation.cli', 'closed-loop evaluation (JSON on the last line)'),
    'launch': ('hybrid_vla_ros.bringup.launch_command',
               'bring up a node graph as OS processes (pip-only ros2 launch)'),
}


def add_robot_argument(parser: argparse.ArgumentParser) -> None:
    """``--robot NAME|PATH.yaml``: the robot every sub-command works on (see
    :func:`hybrid_vla_ros.robot.load_robot`); its default is the one ``DEFAULT_ROBOT``."""
    from hybrid_vla_ros.robot.model import DEFAULT_ROBOT
    parser.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH.yaml',
                        help='robot: a config name in config/ or a robot YAML '
                             f'(default {DEFAULT_ROBOT})')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hybrid-vla', description='Hierarchical hybrid VLA control for robot arms.')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except (KeyError, ValueError, FileNotFoundError) as e:
        # Bad input (unknown task, malformed config, missing checkpoint): one clear line.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f'hybrid-vla {args.command}: error: {msg}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
