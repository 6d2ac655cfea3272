"""``hybrid-vla train <level>``: dispatch to the trainer of each level."""
import argparse
import importlib

# level -> (module, its add-arguments function, its run function, help)
TARGETS = {
    'motor': ('hybrid_vla_ros.training.train_motor', 'add_arguments', 'run',
              'one action expert on demonstrations'),
    'router': ('hybrid_vla_ros.training.train_router', 'add_arguments', 'run',
               'the expert router from held-out evaluations'),
    'strategic': ('hybrid_vla_ros.training.planner_cli', 'add_strategic_arguments',
                  'run_strategic',
                  'the sub-goal decoder + grounding head (level 3)'),
    'tactical': ('hybrid_vla_ros.training.planner_cli', 'add_tactical_arguments', 'run_tactical',
                 'the tactical waypoint network (level 2)'),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='target', required=True, metavar='LEVEL')
    for name, (module_name, add_fn, run_fn, help_text) in TARGETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        getattr(module, add_fn)(p)
        p.set_defaults(_train_run=getattr(module, run_fn))


def run(args) -> int:
    return args._train_run(args)
