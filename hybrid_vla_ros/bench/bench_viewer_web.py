#!/usr/bin/env python3
"""rerun's web viewer on a recorded run, opened in headless Chromium: a screenshot and timings.

    python bench/bench_viewer_web.py BAG_OR_DATASET [--out ../docs/viewer_web.png] [--settle 30]

Logs the source into a recording (``hybrid-vla view --save``'s code), serves it with rerun's
binary on 127.0.0.1 (``hybrid-vla view --web``'s command), drives Chromium over its DevTools
protocol until the viewer has drawn, and saves the page as a PNG. Needs Debian's ``chromium``.
Fails when the screenshot is blank (one colour), i.e. the viewer did not draw.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import numpy as np  # noqa: E402

from hybrid_vla_ros.viewer.view_command import (  # noqa: E402
    record,
    serve_web_command,
    viewer_env,
)
from hybrid_vla_ros.viewer.web_screenshot import screenshot  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('source', help='an MCAP bag or a LeRobot v3 dataset folder')
    p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', '..', 'docs',
                                                 'viewer_web.png'))
    from hybrid_vla_ros.cli import add_robot_argument
    add_robot_argument(p)
    p.add_argument('--settle', type=float, default=30.0,
                   help='seconds between the canvas appearing and the capture (default 30)')
    p.add_argument('--since', type=float, default=0.0, help='bag: skip its first SECONDS')
    p.add_argument('--until', type=float, default=None,
                   help='bag: stop SECONDS after its start (e.g. mid-task)')
    p.add_argument('--web-port', type=int, default=9190)
    p.add_argument('--grpc-port', type=int, default=9976)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rrd = os.path.join(tmp, 'run.rrd')
        t0 = time.monotonic()
        what = record(args.source, args.robot, rrd, since=args.since, until=args.until)
        t_record = time.monotonic() - t0
        server = subprocess.Popen(serve_web_command(rrd, args.web_port, args.grpc_port),
                                  env=viewer_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            base = f'http://127.0.0.1:{args.web_port}'
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(base, timeout=2).read(64)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit('the rerun web viewer did not come up') from None
                    time.sleep(0.5)
            url = f'{base}/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A{args.grpc_port}%2Fproxy'
            times = screenshot(url, args.out, settle=args.settle)
        finally:
            server.send_signal(signal.SIGINT)  # rerun's server exits on Ctrl-C
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    import imageio.v3 as iio
    img = iio.imread(args.out)
    distinct = len(np.unique(img.reshape(-1, img.shape[-1])[::7], axis=0))
    result = {'source': args.source, 'logged': what, 'record_s': round(t_record, 1),
              **times, 'png': os.path.abspath(args.out), 'size': list(img.shape[:2]),
              'distinct_colours': int(distinct)}
    print(json.dumps(result))
    return 0 if distinct > 50 else 1


if __name__ == '__main__':
    sys.exit(main())
