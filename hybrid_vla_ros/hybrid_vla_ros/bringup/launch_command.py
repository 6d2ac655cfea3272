"""``hybrid-vla launch arm``: pip-only equivalent of ``ros2 launch hybrid_vla_ros arm.launch.py``.
"""
import argparse

import yaml

from hybrid_vla_ros.bringup.graph import DEVICES, HARDWARE, arm_graph, recorder_spec
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('graph', choices=['arm'], help='the graph to bring up')
    parser.add_argument('--robot', default='arm7', help='config/<robot>.yaml (default arm7)')
    parser.add_argument('--hardware', default='sim', choices=HARDWARE)
    parser.add_argument('--device', default='cpu', choices=DEVICES)
    parser.add_argument('--namespace', default='')
    parser.add_argument('--set', action='append', default=[], metavar='NODE:PARAM=VALUE',
                        help='override a node parameter, e.g. sim_arm:task=reach')
    parser.add_argument('--bag', metavar='FILE.mcap',
                        help='also record every topic of the graph into this MCAP bag')


def parse_overrides(items):
    out = {}
    for item in items:
        try:
            node, rest = item.split(':', 1)
            key, value = rest.split('=', 1)
        except ValueError:
            raise SystemExit(f"--set {item!r}: expected NODE:PARAM=VALUE") from None
        out.setdefault(node, {})[key] = yaml.safe_load(value)
    return out


def run(args) -> int:
    specs = arm_graph(robot=args.robot, hardware=args.hardware, device=args.device,
                      namespace=args.namespace)
    if args.bag:
        specs.append(recorder_spec(args.bag, namespace=args.namespace))
    launcher = GraphProcesses(specs, overrides=parse_overrides(args.set))
    if not launcher.specs:
        print('[launch] nothing to start without a ROS 2 install')
        return 1
    launcher.start()
    return launcher.spin()
