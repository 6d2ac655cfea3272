"""``hybrid-vla train <level>``: dispatch to the trainer of each level."""
import argparse
import importlib

TARGETS = {
    'motor': 'hybrid_vla_ros.training.train_motor',
    'router': 'hybrid_vla_ros.training.train_router',
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='target', required=True, metavar='LEVEL')
    for name, module_name in TARGETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or '').strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_train=module)


def run(args) -> int:
    return args._train.run(args)
