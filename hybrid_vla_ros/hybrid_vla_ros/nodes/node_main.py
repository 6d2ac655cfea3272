"""``main()`` shared by every node executable: init, spin, clean shutdown on SIGINT/SIGTERM.

Written for rclpy 7.x (Jazzy) and 9.x (Kilted): no ``with rclpy.init()``.

Ctrl-C in a terminal running ``ros2 launch`` (or ``hybrid-vla launch``) delivers SIGINT twice to
every node: once to the whole process group, once more forwarded by the launcher. The first one
ends the spin (between callbacks, never inside one: :class:`ShutdownRequest`), every later one
is ignored, so ``destroy_node`` (which stops a node's worker threads first) and
``rclpy.try_shutdown`` always run to the end and the process exits 0. SIGTERM shuts the context
down (rclpy's handler: ``ExternalShutdownException``), also a clean stop.

After the node is built, :func:`configure_process` applies the node's scheduling parameters (the
role of ros2_control's ``thread_priority`` for its control thread), so ``ros2 launch`` and the
pip-only launcher get the same behaviour from config/<robot>.yaml:

* ``realtime_priority`` (int, 0 = off): SCHED_FIFO priority 1..99 for every thread of the
  process. Needs root / CAP_SYS_NICE / an ``rtprio`` limit; without it the node logs a warning
  and runs at normal priority (graceful fallback). A runaway realtime thread cannot take the
  machine: ``RLIMIT_RTTIME`` (0.5 s soft / 1 s hard of CPU without blocking) has the kernel
  stop the process (SIGXCPU; the launcher then reports it), and Linux's RT throttling
  (``sched_rt_runtime_us``) leaves 5% of each second to normal tasks.
* ``nice`` (int, 0 = unchanged): CFS niceness of every thread (positive = yield to others; the
  planners use it so they never delay the control path).
* ``torch_threads`` (int, declared only by nodes that import torch): intra-op threads.

With ``gc_freeze`` (default true) it also freezes the start-up heap (``gc.freeze()``: the model
weights, rclpy and message modules are never traversed again) and raises the gen-0 GC threshold,
so a collection in a callback is rare and short.
"""
import gc
import os
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.robot_config import ConfigError

GC_THRESHOLDS = (20000, 20, 50)
RTTIME_LIMIT_US = (500_000, 1_000_000)
# longest wait of the executor between two checks of a shutdown request (s); rclpy's own SIGINT
# handler wakes the executor at once, this only bounds a missed wake-up
SPIN_WAKE_S = 0.25


def _threads():
    try:
        return [int(t) for t in os.listdir('/proc/self/task')]
    except OSError:  # not Linux
        return [0]


def set_process_priority(realtime_priority: int = 0, nice: int = 0) -> str:
    """Apply SCHED_FIFO ``realtime_priority`` and/or ``nice`` to every thread; returns what was
    done (or why not) as text. Never raises for missing permissions."""
    done = []
    if realtime_priority > 0:
        try:
            prio = min(int(realtime_priority), os.sched_get_priority_max(os.SCHED_FIFO))
            import resource
            resource.setrlimit(resource.RLIMIT_RTTIME, RTTIME_LIMIT_US)
            for tid in _threads():
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(prio))
            done.append(f'SCHED_FIFO priority {prio}')
        except (PermissionError, AttributeError, OSError) as e:
            done.append(f'no realtime priority ({e.__class__.__name__}: needs root, '
                        'CAP_SYS_NICE or an rtprio limit); normal scheduling')
    if nice:
        try:
            for tid in _threads():
                os.setpriority(os.PRIO_PROCESS, tid, int(nice))
            done.append(f'nice {int(nice)}')
        except (PermissionError, AttributeError, OSError) as e:
            done.append(f'nice {nice} not applied ({e.__class__.__name__})')
    return ', '.join(done)


def configure_process(node) -> None:
    p = node.declare_parameter
    rt = p('realtime_priority', 0, _d('SCHED_FIFO priority of the process (0 = off)')).value
    nice = p('nice', 0, _d('niceness of the process (0 = unchanged)')).value
    if 'torch' in sys.modules:
        threads = p('torch_threads', 1, _d('torch intra-op threads (0 = torch default)')).value
        if threads > 0:
            sys.modules['torch'].set_num_threads(int(threads))
    if p('gc_freeze', True, _d('freeze the start-up heap and raise the GC threshold')).value:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    text = set_process_priority(rt, nice)
    if text:
        log = node.get_logger().warning if 'normal' in text or 'not' in text \
            else node.get_logger().info
        log(f'scheduling: {text}')


class ShutdownRequest:
    """The SIGINT handler of a node process (install it before ``rclpy.init``: rclpy's own
    handler, which wakes the executors, then chains to it).

    While the node is being built (model loading, warm-up) the first SIGINT raises
    ``KeyboardInterrupt`` at once; while spinning it only sets :attr:`requested`, which the spin
    loop checks between callbacks. Once shutdown has begun, every SIGINT is ignored.
    """

    def __init__(self):
        self.requested = False
        self.spinning = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            return
        self.requested = True
        if not self.spinning:
            raise KeyboardInterrupt


def run_node(node_class, args=None) -> None:
    """Build ``node_class()``, spin it until SIGINT/SIGTERM, then shut down cleanly.

    A configuration error while the node is built (:class:`ConfigError`: a bad robot YAML or
    URDF, the message naming the file and key) is printed as one line on stderr and the process
    exits with code 1 (no traceback)."""
    stop = ShutdownRequest()
    failed = None
    signal.signal(signal.SIGINT, stop)
    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = node_class()
        except ConfigError as e:
            failed = f'[{getattr(node_class, "__name__", "node")}] configuration error: {e}'
            return
        configure_process(node)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.spinning = True
        while rclpy.ok() and not stop.requested:
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGTERM shuts the context down under a running callback (its publish then fails):
        # that is a clean stop. Anything raised while the context is still valid is a bug.
        if rclpy.ok():
            raise
    finally:
        stop.requested = True   # from here on SIGINT is ignored: the shutdown runs to the end,
        # at the OS level too: rclpy's own C handler, which wakes the executors, must not run
        # while they and the context are being destroyed (a SIGINT then could crash, SIGSEGV);
        # Python also restores the default action while the interpreter finalizes (a signal
        # then would kill the process, exit -2), but leaves an ignored one ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()   # a node with worker threads stops them in its destroy_node
        rclpy.try_shutdown()
        if failed is not None:
            print(failed, file=sys.stderr, flush=True)
            sys.exit(1)
