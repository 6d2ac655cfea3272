"""``hybrid-vla launch arm``: pip-only equivalent of ``ros2 launch hybrid_vla_ros arm.launch.py``.

Logs each child's start and exit, each ``~/ready`` status of the nodes that must be ready before
the plant moves (motor_policy, chunk_executor) and ``[launch] graph ready (...)`` once all are.
"""
import argparse
import os

import yaml

from hybrid_vla_ros.bringup.graph import DEVICES, HARDWARE, NodeSpec, arm_graph, recorder_spec
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses, ReadinessMonitor
from hybrid_vla_ros.nodes.ready import READY_NODES
from hybrid_vla_ros.robot.model import DEFAULT_ROBOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('graph', choices=['arm'], help='the graph to bring up')
    parser.add_argument('--robot', default=DEFAULT_ROBOT, metavar='NAME|PATH',
                        help=f'a robot of config/ (default {DEFAULT_ROBOT}) or a robot YAML path')
    parser.add_argument('--hardware', default='sim', choices=HARDWARE)
    parser.add_argument('--device', default='cpu', choices=DEVICES)
    parser.add_argument('--namespace', default='')
    parser.add_argument('--rviz', action='store_true',
                        help='as rviz:=true (rviz2 needs a ROS 2 install: skipped here)')
    parser.add_argument('--set', action='append', default=[], metavar='NODE:PARAM=VALUE',
                        help='override a node parameter, e.g. sim_arm:task=reach')
    parser.add_argument('--bag', metavar='FILE.mcap',
                        help='also record every topic of the graph into this MCAP bag')
    parser.add_argument('--view', nargs='?', const='auto', metavar='web|FILE.rrd',
                        help='stream the graph into rerun: the native viewer (with a display; '
                             'else the web viewer on http://127.0.0.1:9090), `web`, or a '
                             '.rrd file')


def viewer_spec(view: str, *, robot: str, namespace: str = '') -> NodeSpec:
    """The rerun streaming node (``hybrid_vla_ros.viewer.live_viewer``) for ``--view``."""
    if view == 'auto':
        extra = ()
    elif view == 'web':
        extra = ('--web',)
    elif view.endswith('.rrd'):
        extra = ('--save', os.path.abspath(view))
    else:
        raise SystemExit(f'--view {view!r}: expected nothing, web, or a FILE.rrd')
    return NodeSpec(package='hybrid_vla_ros', executable='rerun_viewer', name='rerun_viewer',
                    namespace=namespace, module='hybrid_vla_ros.viewer.live_viewer',
                    arguments=('--robot', robot) + extra)


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
                      namespace=args.namespace, rviz=args.rviz)
    if args.bag:
        specs.append(recorder_spec(args.bag, namespace=args.namespace))
    if args.view:
        specs.append(viewer_spec(args.view, robot=args.robot, namespace=args.namespace))
    launcher = GraphProcesses(specs, overrides=parse_overrides(args.set))
    if not launcher.specs:
        print('[launch] nothing to start without a ROS 2 install')
        return 1
    # start-up by state: say when the nodes that must be ready before the plant moves are
    waited_for = [n for n in READY_NODES if n in {s.name for s in launcher.specs}]
    monitor = ReadinessMonitor(waited_for, args.namespace) if waited_for else None
    try:
        # the children are stopped when it returns: signals stay ignored from there on (a late
        # Ctrl-C must not turn this clean exit into -2, also while the interpreter finalizes)
        return launcher.run(watch=monitor.poll if monitor else None, restore_signals=False)
    finally:
        if monitor is not None:
            monitor.close()
