"""``hybrid-vla view BAG_OR_DATASET``: a recorded run or a dataset in rerun.

    hybrid-vla view runs/demo/demo.mcap                  # native viewer (needs a display)
    hybrid-vla view runs/demo/demo.mcap --save run.rrd   # headless: a file for `rerun run.rrd`
    hybrid-vla view runs/data/reach --web                # web viewer on http://127.0.0.1:9090

An MCAP bag is shown on its ``ros_time`` timeline (see :mod:`hybrid_vla_ros.viewer.run_logger`
for what is drawn); a LeRobot v3 dataset frame by frame, per episode (``--episodes``).
``--web`` serves the viewer with rerun's own binary, bound to 127.0.0.1.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Optional


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('source', help='an MCAP bag, or a LeRobot v3 dataset folder')
    from hybrid_vla_ros.cli import add_robot_argument
    add_robot_argument(parser)
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument('--save', metavar='FILE.rrd', help='write a rerun recording, no viewer')
    sink.add_argument('--web', action='store_true',
                      help='serve the web viewer on localhost (no display needed)')
    parser.add_argument('--web-port', type=int, default=9090, help='web viewer port (9090)')
    parser.add_argument('--grpc-port', type=int, default=9876,
                        help='port the web viewer reads the recording from (9876)')
    parser.add_argument('--episodes', default=None,
                        help='dataset episodes to show, e.g. 0,2,5 (default: all)')
    parser.add_argument('--since', type=float, default=0.0, metavar='SECONDS',
                        help='bag: skip its first SECONDS')
    parser.add_argument('--until', type=float, default=None, metavar='SECONDS',
                        help='bag: stop SECONDS after its start')


def log_bag(logger, path: str, since: float = 0.0, until: Optional[float] = None) -> int:
    """Every message of ``path`` the logger shows (from ``since`` to ``until`` s after the
    bag's start); returns how many were logged."""
    from hybrid_vla_ros.data.bag_reader import read_bag
    n, first = 0, None
    for m in read_bag(path):
        first = m.stamp_ns if first is None else first
        t = (m.stamp_ns - first) * 1e-9
        if until is not None and t > until:
            break
        if t >= since:
            n += bool(logger.message(m.topic, m.msg, m.stamp_ns))
    return n


def log_dataset(logger, root: str, episodes=None) -> int:
    """Episodes of a v3 dataset, frame by frame; returns the number of frames logged."""
    import numpy as np

    from hybrid_vla_ros.data.dataset import Dataset
    from hybrid_vla_ros.data.dataset_spec import load_dataset_spec

    rr = logger.rr
    ds = Dataset(root)
    spec = load_dataset_spec(logger.robot_model)
    keys = [spec.state_feature, spec.action_feature]
    names = {k: (ds.features.get(k, {}).get('names') or []) for k in keys}
    state_names = names[spec.state_feature]
    missing = [j for j in spec.joint_names if j not in state_names]
    if state_names and missing:  # a dataset of another robot: say so instead of a still arm
        raise ValueError(f"{root}: a dataset of robot {ds.info.get('robot_type')!r} (joints "
                         f'{list(state_names)}), lacking {missing} of --robot {spec.robot}')
    wanted = range(len(ds)) if episodes is None else episodes
    frames = 0
    for i in wanted:
        if not 0 <= i < len(ds):
            raise ValueError(f'episode {i}: the dataset has episodes 0..{len(ds) - 1}')
        ep = ds.load(i, images=True)
        state = ep.arrays.get(spec.state_feature)
        logger.frame(i, 0, ds.fps)
        logger.instruction(f"episode {ep.meta['episode_index']}: "
                           f"{', '.join(ep.meta.get('tasks', []))}")
        if state is not None and names[spec.state_feature]:
            idx = [list(names[spec.state_feature]).index(j) for j in logger.cfg.joint_names
                   if j in names[spec.state_feature]]
            if len(idx) == len(logger.cfg.joint_names):
                path = logger.tcp_path(state[:, idx])
                logger.rec.log('world/episode/tcp_path', rr.LineStrips3D(
                    [path], radii=0.003, colors=(120, 255, 120)))
        n = int(ep.meta['length'])
        for k in range(n):
            logger.frame(i, k, ds.fps)
            if state is not None:
                logger.state_vector(state[k], names[spec.state_feature])
            for key in keys:
                if key in ep.arrays:
                    row = np.asarray(ep.arrays[key][k]).reshape(-1)
                    labels = names[key] or [str(j) for j in range(len(row))]
                    for lab, v in zip(labels, row):
                        logger.rec.log(f'plots/{key}/{lab}', rr.Scalars(float(v)))
            cam = ep.arrays.get(spec.camera_feature)
            if cam is not None:
                logger.image(cam[k])
        frames += n
    return frames


def _episodes(text):
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise ValueError(f'--episodes {text!r}: expected comma-separated numbers') from None


def record(source: str, robot, out_rrd: str, episodes=None, since: float = 0.0,
           until: Optional[float] = None) -> str:
    """Log ``source`` (bag or dataset) into the rerun file ``out_rrd``; returns a summary."""
    from hybrid_vla_ros.viewer.run_logger import RunLogger
    is_dataset = os.path.isdir(source)
    if not is_dataset and not os.path.isfile(source):
        raise FileNotFoundError(f'{source}: no such bag or dataset folder')
    logger = RunLogger(robot, recording_id=os.path.basename(os.path.abspath(source)))
    logger.rec.save(out_rrd)
    if is_dataset:
        n = log_dataset(logger, source, _episodes(episodes))
        what = f'{n} dataset frames'
    else:
        n = log_bag(logger, source, since, until)
        what = f'{n} messages'
    logger.rec.flush()
    logger.rec.disconnect()
    return what


def rerun_binary() -> str:
    """The ``rerun`` executable that rerun-sdk installs beside this interpreter."""
    here = os.path.join(os.path.dirname(sys.executable), 'rerun')
    found = here if os.path.isfile(here) else shutil.which('rerun')
    if not found:
        raise FileNotFoundError('the rerun viewer binary is missing (pip install rerun-sdk)')
    return found


def viewer_env() -> dict:
    """Environment for the rerun binary: its usage analytics off, in a config folder of ours
    (the user's own rerun settings stay untouched)."""
    home = os.path.join(os.path.expanduser('~'), '.cache', 'hybrid_vla_ros', 'rerun_config')
    env = dict(os.environ, XDG_CONFIG_HOME=home)
    if not os.path.isfile(os.path.join(home, 'rerun', 'analytics.json')):
        os.makedirs(home, exist_ok=True)
        subprocess.run([rerun_binary(), 'analytics', 'disable'], env=env,
                       capture_output=True, check=True)
    return env


def serve_web_command(rrd: str, web_port: int, grpc_port: int):
    """The command that serves ``rrd`` in rerun's web viewer on 127.0.0.1."""
    return [rerun_binary(), '--serve-web', '--bind', '127.0.0.1', '--web-viewer-port',
            str(web_port), '--port', str(grpc_port), rrd]


def run(args) -> int:
    if args.save:
        what = record(args.source, args.robot, args.save, args.episodes, args.since,
                      args.until)
        print(f'view: {what} from {args.source} -> {args.save} (open it with: rerun '
              f'{args.save})')
        return 0
    tmp = tempfile.mkdtemp(prefix='hybrid_vla_view_')
    rrd = os.path.join(tmp, 'view.rrd')
    try:
        what = record(args.source, args.robot, rrd, args.episodes, args.since, args.until)
        if args.web:
            print(f'view: {what} from {args.source}; web viewer on '
                  f'http://127.0.0.1:{args.web_port} (Ctrl-C stops it)', flush=True)
            cmd = serve_web_command(rrd, args.web_port, args.grpc_port)
        else:
            if not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
                raise ValueError('no display for the native viewer: use --save FILE.rrd or '
                                 '--web')
            cmd = [rerun_binary(), rrd]
        proc = subprocess.Popen(cmd, env=viewer_env())
        try:
            return proc.wait()
        except KeyboardInterrupt:
            if proc.poll() is None:  # a terminal's Ctrl-C reached it too; a kill -INT did not
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
