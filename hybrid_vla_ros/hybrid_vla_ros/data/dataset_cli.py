"""``hybrid-vla dataset``: LeRobot v3 datasets from other sources, and what a dataset holds.

    hybrid-vla dataset from-bag run1.mcap run2.mcap --robot arm7 --out runs/data/from_bags
    hybrid-vla dataset info runs/data/from_bags [--robot arm7]
"""
import argparse
import dataclasses

from hybrid_vla_ros.cli import add_robot_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='dataset_command', required=True, metavar='ACTION')
    p = sub.add_parser('from-bag', help='ROS 2 MCAP bags -> a LeRobot v3 dataset',
                       description='Resample MCAP bags on a fixed-rate grid (hold-last on '
                       'header stamps) into episodes of a LeRobot v3 dataset; topics and '
                       "feature names come from the robot config's dataset section.")
    p.add_argument('bags', nargs='+', metavar='BAG', help='MCAP files')
    add_robot_argument(p)
    p.add_argument('--out', required=True, help='dataset folder (created, or appended to)')
    p.add_argument('--no-images', action='store_true', help='leave the camera out')
    p.add_argument('--action-source', default='auto', choices=('auto', 'chunk', 'command'),
                   help='actions from the action chunks (auto: when the bag has them) or '
                        'from the controller commands')
    p.add_argument('--namespace', default='', help='namespace the relative topics were under')
    p.add_argument('--task', default=None,
                   help='task string for bags without instruction messages')
    p.add_argument('--episode-gap', type=float, default=None, metavar='SECONDS',
                   help="a joint-state gap that ends an episode (default: the robot config's "
                        'dataset.episode_gap, 1 s)')
    p.set_defaults(_run=_from_bag)
    q = sub.add_parser('info', help='episodes, frames, features and tasks of a dataset')
    q.add_argument('dataset', help='dataset folder')
    add_robot_argument(q)  # its joints are checked against the dataset's state/action names
    q.set_defaults(_run=_info)


def _from_bag(args) -> int:
    from hybrid_vla_ros.data.bag_dataset import bags_to_dataset
    from hybrid_vla_ros.data.dataset import Dataset
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    from hybrid_vla_ros.robot import load_robot
    robot = load_robot(args.robot)
    spec = load_dataset_spec(robot)
    if args.episode_gap is not None:
        if args.episode_gap <= 0:
            raise ValueError(f'--episode-gap must be > 0, got {args.episode_gap}')
        spec = dataclasses.replace(spec, episode_gap=args.episode_gap)
    n = bags_to_dataset(args.bags, args.out, spec, robot=robot, images=not args.no_images,
                        action_source=args.action_source, namespace=args.namespace,
                        task=args.task)
    ds = Dataset(args.out)
    print(f'dataset from-bag: {n} episodes written; {args.out} holds {len(ds)} episodes, '
          f"{ds.info['total_frames']} frames at {ds.fps} fps")
    return 0


def _info(args) -> int:
    from hybrid_vla_ros.data.dataset import Dataset

    ds = Dataset(args.dataset)
    info = ds.info
    print(f"{args.dataset}: LeRobotDataset {info['codebase_version']}, robot "
          f"{info.get('robot_type')}, {len(ds)} episodes, {info['total_frames']} frames at "
          f'{ds.fps} fps, {info.get("total_tasks")} tasks')
    for k, f in ds.features.items():
        names = f.get('names')
        print(f"  {k:32s} {f['dtype']:8s} {tuple(f['shape'])}"
              + (f'  {names}' if isinstance(names, list) and len(names) <= 9 else ''))
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec
    spec = load_dataset_spec(args.robot)
    for key in (spec.state_feature, spec.action_feature):
        names = (ds.features.get(key) or {}).get('names')
        if isinstance(names, dict):
            names = next(iter(names.values()), None)
        missing = [n for n in spec.state_names if n not in (names or [])]
        print(f"  {key}: {'matches' if not missing else 'does NOT match'} robot {spec.robot}"
              + (f' (missing {missing})' if missing else f' ({spec.dim} values)'))
    return 0


def run(args) -> int:
    return args._run(args)  # a DatasetError is a ValueError: the CLI prints it as one line
