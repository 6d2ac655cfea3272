"""``wait_ready``: exit 0 once the given nodes' ``~/ready`` statuses are all true.

    wait_ready [--timeout S] [NODE ...] [--ros-args -r __ns:=/<ns>]

The start-up-by-state gate of ``arm.launch.py`` (its exit is the launch's "graph ready" event:
``OnProcessExit``); default nodes: the ones that must be ready before the plant moves
(motor_policy, chunk_executor). Exit 1, naming the nodes still not ready, after ``--timeout``
seconds (0 = wait forever). The pip-only launcher follows the same statuses in-process
(:class:`~hybrid_vla_ros.bringup.process_launcher.ReadinessMonitor`).
"""
import argparse
import signal
import sys
import time

from hybrid_vla_ros.nodes.ready import READY_NODES


def main(argv=None) -> int:
    from rclpy.utilities import remove_ros_args

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('nodes', nargs='*', default=list(READY_NODES))
    parser.add_argument('--timeout', type=float, default=0.0)
    args = parser.parse_args(remove_ros_args(['wait_ready', *argv])[1:])
    namespace = ''
    if '--ros-args' in argv:   # the namespace launch gives it (-r __ns:=/ns)
        ros = argv[argv.index('--ros-args') + 1:]
        namespace = next((r.split(':=', 1)[1] for r in ros if r.startswith('__ns:=')), '')

    from hybrid_vla_ros.bringup.process_launcher import ReadinessMonitor
    monitor = ReadinessMonitor(args.nodes, namespace, node_name='wait_ready')
    end = time.monotonic() + args.timeout if args.timeout > 0 else float('inf')
    try:
        while time.monotonic() < end:
            for line in monitor.poll():
                print(line.replace('[launch] ', '[wait_ready] '), flush=True)
            if monitor.all_ready:
                return 0
            time.sleep(0.05)
    except KeyboardInterrupt:   # the launch is being stopped
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return 0
    finally:
        monitor.close()
    missing = [n for n in args.nodes if not monitor.state.get(n)]
    print(f"[wait_ready] not ready after {args.timeout:.0f} s: {', '.join(missing)}",
          flush=True)
    return 1


if __name__ == '__main__':
    sys.exit(main())
