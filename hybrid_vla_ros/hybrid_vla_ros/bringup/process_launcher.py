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


def node_command(spec: NodeSpec, overrides: Optional[Mapping[str, object]] = None) -> List[str]:
    """The command line that runs ``spec`` as a process (``python -m module --ros-args ...``)."""
    if spec.module is None:
        raise ValueError(f'{spec.package}/{spec.executable} has no Python module; it needs a '
                         'ROS 2 install (ros2 launch)')
    cmd = [sys.executable, '-m', spec.module, *spec.arguments, '--ros-args',
           '-r', f'__node:={spec.name}']
    if spec.namespace:
        cmd += ['-r', f"__ns:=/{spec.namespace.strip('/')}"]
    for f in spec.parameter_files:
        cmd += ['--params-file', f]
    values = {**spec.parameters, **(overrides or {})}
    if values:
        cmd += ['--params-file', _override_file(spec, values)]
    for src, dst in spec.remappings:
        cmd += ['-r', f'{src}:={dst}']
    return cmd


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
        for s in self.skipped:
            self.log(f'[launch] skipping {s.package}/{s.executable}: needs a ROS 2 install')
        for s in self.specs:
            self.start_node(s.name)
        return self

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
        """SIGINT every child, then SIGTERM, then SIGKILL the ones still alive."""
        alive = [p for p in self.procs.values() if p.poll() is None]
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

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def spin(self) -> int:
        """Block until Ctrl-C/SIGTERM (exit 0) or a child dies (exit 1, the rest stopped)."""
        stopping = []
        old = {s: signal.signal(s, lambda *_: stopping.append(True))
               for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stopping:
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
                signal.signal(s, h)
