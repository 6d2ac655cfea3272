"""The pip-only launcher: starts the graph of :mod:`graph` as separate OS processes.

What ``ros2 launch`` does for ``arm.launch.py``, for machines without the launch system: every
node runs in its own process with the same parameters and remappings; Ctrl-C (or SIGTERM) stops
all children cleanly; a child that dies is reported and the rest are shut down.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence

import yaml

from hybrid_vla_ros.bringup.graph import NodeSpec


def _override_file(spec: NodeSpec, values: Mapping[str, object]) -> str:
    """A node-specific parameter YAML for ``values``.

    ``-p name:=value`` on the command line is a ``/**`` (wildcard) override, and a node-specific
    section of the robot YAML would win over it; a later node-specific file wins over an earlier
    one, which is what launch_ros does with a dict of parameters.
    """
    fq = '/' + '/'.join(x for x in (spec.namespace.strip('/'), spec.name) if x)
    fd, path = tempfile.mkstemp(prefix=f'{spec.name}_', suffix='.yaml')
    with os.fdopen(fd, 'w') as f:
        yaml.safe_dump({fq: {'ros__parameters': dict(values)}}, f)
    return path


def ros_arguments(spec: NodeSpec, overrides: Optional[Mapping[str, object]] = None
                  ) -> List[str]:
    """The ``--ros-args`` part of the command line: name, namespace, the YAML files, then the
    spec's parameters and ``overrides`` as a node-specific file (last: it wins, as launch_ros'
    dict does, see :mod:`graph`), then the remappings."""
    args = ['-r', f'__node:={spec.name}']
    if spec.namespace:
        args += ['-r', f"__ns:=/{spec.namespace.strip('/')}"]
    for f in spec.parameter_files:
        args += ['--params-file', f]
    values = {**spec.parameters, **(overrides or {})}
    if values:
        args += ['--params-file', _override_file(spec, values)]
    for src, dst in spec.remappings:
        args += ['-r', f'{src}:={dst}']
    return args


def node_command(spec: NodeSpec, overrides: Optional[Mapping[str, object]] = None) -> List[str]:
    """The command line that runs ``spec`` as a process (``python -m module --ros-args ...``)."""
    if spec.module is None:
        raise ValueError(f'{spec.package}/{spec.executable} has no Python module; it needs a '
                         'ROS 2 install (ros2 launch)')
    return [sys.executable, '-m', spec.module, *spec.arguments, '--ros-args',
            *ros_arguments(spec, overrides)]


class GraphProcesses:
    """Run a list of node specs as child processes; a context manager.

    :param specs: the graph (ROS-install-only nodes are skipped with a note).
    :param overrides: ``{node_name: {param: value}}`` applied after the YAML.
    :param stop_timeout: seconds each stop stage (SIGINT, then SIGTERM) may take.
    :param env: the children's environment (default: this process's).
    """

    def __init__(self, specs: Sequence[NodeSpec], *,
                 overrides: Optional[Mapping[str, Mapping[str, object]]] = None,
                 stop_timeout: float = 10.0, log=print, stdout=None, stderr=None,
                 env: Optional[Mapping[str, str]] = None):
        self.env = None if env is None else dict(env)
        self.specs = [s for s in specs if not s.ros_install_only]
        self.skipped = [s for s in specs if s.ros_install_only]
        self.overrides = dict(overrides or {})
        unknown = set(self.overrides) - {s.name for s in self.specs}
        if unknown:
            raise ValueError(f'overrides for nodes not in the graph: {sorted(unknown)}')
        self.stop_timeout = stop_timeout
        self.log = log
        self.stdout, self.stderr = stdout, stderr
        self.procs: Dict[str, subprocess.Popen] = {}
        self.stopped = set()  # nodes stopped on purpose (stop_node): not failures

    def start(self) -> 'GraphProcesses':
        """Start every child (no signal handling: :meth:`run` is the command's entry)."""
        self._start_all(lambda: False)
        return self

    def _start_all(self, cancelled) -> None:
        for s in self.skipped:
            self.log(f'[launch] skipping {s.package}/{s.executable}: needs a ROS 2 install')
        for s in self.specs:
            if cancelled():
                return
            self.start_node(s.name)

    def start_node(self, name: str) -> subprocess.Popen:
        """(Re)start one node of the graph by name."""
        spec = next(s for s in self.specs if s.name == name)
        proc = subprocess.Popen(node_command(spec, self.overrides.get(name)),
                                stdout=self.stdout, stderr=self.stderr, env=self.env)
        self.procs[name] = proc
        self.stopped.discard(name)
        self.log(f'[launch] started {name} (pid {proc.pid})')
        return proc

    def failed(self) -> Optional[str]:
        """The name of a child that has exited, or None while all run."""
        for name, p in self.procs.items():
            if name not in self.stopped and p.poll() is not None:
                return name
        return None

    def stop_node(self, name: str, sig=signal.SIGINT) -> Optional[int]:
        """Stop one node on purpose (it is then not reported as failed)."""
        self.stopped.add(name)
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop(self) -> None:
        """SIGINT every child, then SIGTERM, then SIGKILL the ones still alive; logs how each
        child ended (a clean stop is exit code 0)."""
        running = {n: p for n, p in self.procs.items() if p.poll() is None}
        alive = list(running.values())
        for sig in (signal.SIGINT, signal.SIGTERM):
            for p in alive:
                p.send_signal(sig)
            deadline = time.monotonic() + self.stop_timeout
            while alive and time.monotonic() < deadline:
                alive = [p for p in alive if p.poll() is None]
                time.sleep(0.05)
        for p in alive:
            p.kill()
            p.wait()
        for name, p in running.items():
            self.log(f'[launch] {name} exited with code {p.returncode}')

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def spin(self) -> int:
        """Block until Ctrl-C/SIGTERM (exit 0) or a child dies (exit 1, the rest stopped)."""
        return self.run(start=False)

    def run(self, start: bool = True, watch=None, restore_signals: bool = True) -> int:
        """Start the graph (unless ``start`` is False: already started) and :meth:`spin`.

        ``watch()`` (optional) is called every cycle and returns lines to log (e.g. the nodes'
        readiness, :class:`ReadinessMonitor`). ``restore_signals=False`` (a command that exits
        next) keeps ignoring SIGINT/SIGTERM afterwards instead of restoring the handlers: a
        late Ctrl-C then cannot interrupt what follows.

        SIGINT/SIGTERM are handled from before the first child starts until the last one has
        stopped: Ctrl-C during start-up stops the children started so far, and a second Ctrl-C
        (a terminal sends one to the whole process group, children included) never interrupts
        the shutdown.
        """
        stopping = []
        old = {s: signal.signal(s, lambda *_: stopping.append(True))
               for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if start:
                self._start_all(lambda: bool(stopping))
            while not stopping:
                for line in (watch() if watch is not None else ()):
                    self.log(line)
                dead = self.failed()
                if dead is not None:
                    code = self.procs[dead].returncode
                    self.log(f'[launch] {dead} exited with code {code}; shutting down the rest')
                    return 1
                time.sleep(0.1)
            self.log('[launch] shutting down')
            return 0
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h if restore_signals else signal.SIG_IGN)


class ReadinessMonitor:
    """Follows the ``~/ready`` statuses (:mod:`~hybrid_vla_ros.nodes.ready`) of ``names`` in
    ``namespace`` from a node of the launcher's own; :meth:`poll` returns what changed as log
    lines, and ``'[launch] graph ready (...)'`` once all are ready."""

    def __init__(self, names: Sequence[str], namespace: str = '',
                 node_name: str = 'hybrid_vla_launch'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from std_msgs.msg import Bool

        from hybrid_vla_ros.nodes.qos import LATCHED
        from hybrid_vla_ros.nodes.ready import TOPIC
        self.names = list(names)
        self.context = rclpy.Context()
        # the launcher handles SIGINT itself (GraphProcesses.run)
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(node_name, namespace=namespace or None,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.state: Dict[str, bool] = {}
        self._changes: List[str] = []
        self.all_ready = False
        for name in self.names:
            self.node.create_subscription(Bool, f'{name}/{TOPIC}', self._callback(name),
                                          LATCHED)

    def _callback(self, name):
        def cb(msg):
            if self.state.get(name) != msg.data:
                self.state[name] = bool(msg.data)
                self._changes.append(f"[launch] {name} {'ready' if msg.data else 'not ready'}")
        return cb

    def poll(self) -> List[str]:
        self.executor.spin_once(timeout_sec=0.0)
        out, self._changes = self._changes, []
        ready = all(self.state.get(n) for n in self.names)
        if ready and not self.all_ready:
            out.append(f"[launch] graph ready ({', '.join(self.names)})")
        self.all_ready = ready
        return out

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
