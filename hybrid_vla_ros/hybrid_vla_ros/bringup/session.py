"""A blocking facade over the launched graph (nav2_simple_commander's idea).

``GraphSession`` starts the graph as processes (:mod:`process_launcher`), talks to it over DDS
from a node of its own, and runs episodes: reset the sim to (task, seed), send the instruction as
an ``ExecuteInstruction`` goal to the strategic planner, follow its feedback (the plan, the
active sub-goal) until its result, and read the outcome from the sim's evaluation-only
``ground_truth/task_status``. The demo, ``hybrid-vla eval --ros`` and the end-to-end tests use it.

Like nav2_simple_commander's ``BasicNavigator``, the instruction is a task: :meth:`execute`,
:meth:`is_task_complete`, :meth:`get_feedback`, :meth:`get_result`, :meth:`cancel_task`.

A reset between episodes first drops the strategic planner's plan (``strategic_planner/reset``;
it also ends a goal still running) and waits until the motor level has stopped acting on it,
then resets the scene and the chunk executor: the previous episode's plan never drives the new
scene, and each episode's goal is planned afresh even when it is the same sentence.
"""
import contextlib
import json
import os
import random
import signal
import threading
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from hybrid_vla_ros.bringup.graph import arm_graph, recorder_spec
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses
from hybrid_vla_ros.robot.model import DEFAULT_ROBOT

PRIVATE_DOMAINS = (1, 101)  # ROS 2's safe range on Linux (0 is everyone's default)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


class GraphSession:
    """:param robot: the robot (a name of ``config/``, a robot YAML path or a RobotModel);
    :param overrides: ``{node: {param: value}}``; :param bag: MCAP path to record into;
    :param log_dir: where each node's output goes; :param on_event: called with progress text;
    :param transports: Fast DDS builtin transports of the graph's nodes
        (``FASTDDS_BUILTIN_TRANSPORTS``, e.g. ``'UDPv4'``; None = the environment's). Fast DDS's
        shared-memory transport keeps the ports of a SIGKILLed process: a node restarted after a
        kill may then get no data, and a writer may stall on the dead reader's port."""

    def __init__(self, *, robot=DEFAULT_ROBOT, overrides: Optional[Dict] = None,
                 bag: Optional[str] = None, log_dir: str = '.', on_event: Callable = print,
                 keep_frames: bool = False, domain_id: Optional[int] = None,
                 hang_timeout: float = 10.0, transports: Optional[str] = None):
        # The graph's DDS domain: the caller's, else ROS_DOMAIN_ID if set, else a private one
        # (two sessions on one machine, e.g. two evaluations, must not drive each other's sim)
        env_domain = os.environ.get('ROS_DOMAIN_ID', '').strip()
        if domain_id is None:
            domain_id = int(env_domain) if env_domain else \
                random.SystemRandom().randint(*PRIVATE_DOMAINS)
        self.domain_id = int(domain_id)
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(self.domain_id))
        if not env_domain:  # a private domain stays on this machine
            self.env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        if transports:   # e.g. 'UDPv4' (see the parameter)
            self.env['FASTDDS_BUILTIN_TRANSPORTS'] = transports
        self.specs = arm_graph(robot=robot, hardware='sim')
        self.robot = robot
        if bag:
            self.specs.append(recorder_spec(bag))
        self.overrides = overrides or {}
        self.log_dir = log_dir
        self.on_event = on_event
        self.keep_frames = keep_frames
        self.procs: Optional[GraphProcesses] = None
        self.node = None
        self._old_sigterm = None   # the SIGTERM handler replaced while the graph is up
        # a running node silent on /diagnostics (1 Hz) for this long is reported hung; 0 = off
        self.hang_timeout = hang_timeout
        self._judging = False   # hang checks run once the graph is up (see _start)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 240.0) -> 'GraphSession':
        try:
            return self._start(timeout)
        except BaseException:  # never leave the graph running when the start fails
            self.stop()
            raise

    def _start(self, timeout: float) -> 'GraphSession':
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState, TimeReference
        from std_msgs.msg import Bool, String
        from std_srvs.srv import Trigger

        from hybrid_vla_msgs.action import ExecuteInstruction
        from hybrid_vla_msgs.msg import ActionChunk, SubGoalList, WaypointArray
        from hybrid_vla_msgs.srv import SetTask
        from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
        from hybrid_vla_ros.nodes.ready import READY_NODES, TOPIC

        os.makedirs(self.log_dir, exist_ok=True)
        self._log = open(os.path.join(self.log_dir, 'graph.log'), 'w')
        self.procs = GraphProcesses(self.specs, overrides=self.overrides,
                                    log=lambda m: self._log.write(m + '\n'),
                                    stdout=self._log, stderr=self._log, env=self.env)
        self.on_event(f'graph on ROS_DOMAIN_ID={self.domain_id} (export it to watch in rviz)')
        self.procs.start()
        self.context = rclpy.Context()
        # the session's own participant uses the graph's transports (Fast DDS reads them when
        # the participant is created)
        saved = os.environ.get('FASTDDS_BUILTIN_TRANSPORTS')
        if 'FASTDDS_BUILTIN_TRANSPORTS' in self.env:
            os.environ['FASTDDS_BUILTIN_TRANSPORTS'] = self.env['FASTDDS_BUILTIN_TRANSPORTS']
        try:
            rclpy.init(context=self.context, domain_id=self.domain_id)
            self.node = rclpy.create_node('hybrid_vla_session', context=self.context)
        finally:
            if saved is None:
                os.environ.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
            else:
                os.environ['FASTDDS_BUILTIN_TRANSPORTS'] = saved
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.latest = {}
        self.frames: List = []
        self.chunk_latency_ms: List[float] = []
        self.chunk_inference: List = []  # (expert, inference_ms) per chunk, as chunk_latency_ms
        self.command_latency_ms: List[float] = []
        self.rate_counters: Dict[str, Dict[str, float]] = {}
        self.plan = None
        n = self.node
        n.create_subscription(JointState, '/joint_states', self._keep('js'), SENSOR)
        n.create_subscription(Image, 'camera/image_raw', self._on_image, SENSOR)
        n.create_subscription(SubGoalList, 'subgoals', self._on_plan, LATCHED)
        n.create_subscription(WaypointArray, 'waypoints', self._keep('waypoints'), COMMAND)
        n.create_subscription(ActionChunk, 'action_chunk', self._on_chunk, COMMAND)
        n.create_subscription(String, 'ground_truth/task_status', self._on_status, 10)
        n.create_subscription(TimeReference, 'chunk_executor/command_observation',
                              self._on_command_stamp, COMMAND)
        n.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self.pub_instruction = n.create_publisher(String, 'instruction', COMMAND)
        self.instruction_client = ActionClient(n, ExecuteInstruction, 'execute_instruction')
        self._goal = None          # ClientGoalHandle of the last accepted goal
        self._result = None        # its result future
        self.feedback: List = []   # its feedback messages, in order
        self.rejection = ''        # why the last goal was rejected
        self.ready: Dict[str, tuple] = {}   # node -> (ready, time.monotonic() received)
        for name in READY_NODES:
            n.create_subscription(Bool, f'{name}/{TOPIC}', self._on_ready(name), LATCHED)
        self.set_task = n.create_client(SetTask, '/sim_arm/set_task')
        self.reset_executor = n.create_client(Trigger, 'chunk_executor/reset')
        self.reset_planner = n.create_client(Trigger, 'strategic_planner/reset')
        self.status_values: Dict[str, Dict[str, str]] = {}
        # node -> (time.monotonic(), its process) of its last /diagnostics
        self.diagnostics_seen: Dict[str, tuple] = {}
        self.last_chunk = 0.0   # time.monotonic() of the last action chunk seen
        # no node is judged hung while the graph comes up (loading models on a busy machine
        # may hold a process for longer than hang_timeout); from the end of the start on,
        # every node that has reported is judged from then
        self._judging = False
        self.wait(lambda: 'js' in self.latest and 'image' in self.latest
                  and self.set_task.service_is_ready()
                  and self.reset_planner.service_is_ready()
                  and self.instruction_client.server_is_ready()
                  and self.is_ready(READY_NODES)
                  # built and spinning: its first /diagnostics (it has no ~/ready)
                  and 'tactical_planner' in self.status_values, timeout,
                  'the graph to come up')
        self._resume_judging()
        return self

    def _resume_judging(self) -> None:
        now = time.monotonic()
        self.diagnostics_seen = {name: (now, proc)
                                 for name, (_, proc) in self.diagnostics_seen.items()}
        self._judging = True

    @contextlib.contextmanager
    def loading(self):
        """Within this block no node is judged hung, as while the graph starts: a node being
        (re)started loads its models for seconds, and on a small machine that can hold the
        other nodes' 1 Hz ``/diagnostics`` past ``hang_timeout``. Silence is counted again from
        the end of the block."""
        was = self._judging
        self._judging = False
        try:
            yield self
        finally:
            if was:
                self._resume_judging()

    def _on_ready(self, name: str):
        def cb(msg):
            self.ready[name] = (bool(msg.data), time.monotonic())
        return cb

    def is_ready(self, names, since: float = 0.0) -> bool:
        """Have ``names`` said (``~/ready``) they are ready, after ``since`` (time.monotonic(),
        e.g. a node's restart)?"""
        return all(self.ready.get(n, (False, 0.0))[0] and self.ready[n][1] >= since
                   for n in names)

    def stop(self) -> None:
        if self.node is not None:
            import rclpy
            if getattr(self, 'executor', None) is not None:
                self.executor.shutdown()
            self.node.destroy_node()
            rclpy.try_shutdown(context=self.context)
            self.node = None
        if self.procs is not None:
            self.procs.stop()
            self._log.close()
            self.procs = None

    def __enter__(self):
        # SIGTERM (kill, a CI timeout) would end the interpreter without running __exit__ and
        # leave the graph's processes running: turn it into SystemExit while the graph is up.
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            return self.start()
        except BaseException:
            self._restore_sigterm()
            raise

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self._restore_sigterm()
        return False

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # ------------------------------------------------------------------ plumbing
    def _keep(self, key):
        def cb(msg):
            self.latest[key] = msg
        return cb

    def _on_image(self, msg) -> None:
        self.latest['image'] = msg
        if self.keep_frames:
            from hybrid_vla_ros.image_bridge import imgmsg_to_cv2
            self.frames.append((imgmsg_to_cv2(msg, 'rgb8'), self.latest.get('waypoints'),
                                self.plan))

    @staticmethod
    def _plan_position(msg) -> tuple:
        """The plan's identity (its stamp) and where it stands (the active index): as the
        levels tell a new sub-goal (:func:`hybrid_vla_ros.hierarchy.active_plan.subgoal_key`),
        also for an empty or finished plan."""
        return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.active_index

    def _on_plan(self, msg) -> None:
        old = self.plan
        self.plan = msg
        if old is None or self._plan_position(old) != self._plan_position(msg):
            if not msg.subgoals:
                if msg.instruction:   # an empty instruction: the plan was dropped (reset)
                    self.on_event(f'  no plan for {msg.instruction!r} (planning error: see '
                                  'log)')
            elif msg.active_index < len(msg.subgoals):
                sg = msg.subgoals[msg.active_index]
                self.on_event(f'  sub-goal {msg.active_index + 1}/{len(msg.subgoals)}: '
                              f'{sg.skill} {sg.object}')
            else:
                self.on_event(f'  all {len(msg.subgoals)} sub-goals done')

    def _on_chunk(self, msg) -> None:
        from rclpy.time import Time
        self.last_chunk = time.monotonic()
        obs = Time.from_msg(msg.observation_stamp).nanoseconds
        pub = Time.from_msg(msg.header.stamp).nanoseconds
        if obs > 0:
            self.chunk_latency_ms.append((pub - obs) * 1e-6)
            self.chunk_inference.append((msg.expert, float(msg.inference_ms)))

    def _on_command_stamp(self, msg) -> None:
        from rclpy.time import Time
        obs = Time.from_msg(msg.time_ref).nanoseconds
        if obs > 0:
            self.command_latency_ms.append((Time.from_msg(msg.header.stamp).nanoseconds - obs)
                                           * 1e-6)

    def _on_diagnostics(self, msg) -> None:
        from hybrid_vla_ros.execution.rate_monitor import parse_rate_values
        now = time.monotonic()
        procs = self.procs.procs if self.procs else {}
        for st in msg.status:
            name = st.name.split(':')[0]
            self.diagnostics_seen[name] = (now, procs.get(name))
            self.status_values[st.name.split(':')[0]] = {kv.key: kv.value for kv in st.values}
            values = parse_rate_values(st.values)
            if values:
                self.rate_counters[st.name.split(':')[0]] = values

    def rate_snapshot(self, fresh: float = 1.2) -> Dict[str, Dict[str, float]]:
        """The nodes' cumulative rate counters (:mod:`hybrid_vla_ros.execution.rate_monitor`),
        after spinning ``fresh`` seconds so every node's 1 Hz diagnostics is current."""
        self.rate_counters.clear()
        self.spin(fresh)
        return {k: dict(v) for k, v in self.rate_counters.items()}

    def _on_status(self, msg) -> None:
        try:
            self.latest['status'] = json.loads(msg.data)
        except json.JSONDecodeError:
            pass

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)
            self._check_alive()

    def wait(self, predicate, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)
            self._check_alive()
            if predicate():
                return
        raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what} '
                           f'(node logs: {os.path.join(self.log_dir, "graph.log")})')

    def unresponsive(self, timeout: Optional[float] = None) -> Dict[str, float]:
        """Running graph nodes whose 1 Hz ``/diagnostics`` stopped for more than ``timeout`` s
        (default :attr:`hang_timeout`): node -> seconds of silence (hung, e.g. SIGSTOP)."""
        timeout = self.hang_timeout if timeout is None else timeout
        now = time.monotonic()
        running = {name: p for name, p in self.procs.procs.items()
                   if name not in self.procs.stopped and p.poll() is None} if self.procs else {}
        # a restarted node is judged once its new process has reported
        return {name: now - t for name, (t, proc) in self.diagnostics_seen.items()
                if running.get(name) is not None and running[name] is proc and now - t > timeout}

    def _check_alive(self) -> None:
        """Raise RuntimeError naming a node that exited or stopped responding."""
        dead = self.procs.failed() if self.procs else None
        if dead is not None:
            raise RuntimeError(f'node {dead} exited with code {self.procs.procs[dead].returncode}'
                               f' (see {os.path.join(self.log_dir, "graph.log")})')
        if self.hang_timeout > 0 and self._judging:
            hung = self.unresponsive()
            if hung:
                name, age = max(hung.items(), key=lambda kv: kv[1])
                raise RuntimeError(f'node {name} is not responding: no /diagnostics for '
                                   f'{age:.1f} s (hung?) (see '
                                   f'{os.path.join(self.log_dir, "graph.log")})')

    # ------------------------------------------------------------------ episodes
    def reset(self, task: str, seed: int, quiet: float = 0.3, quiet_timeout: float = 3.0) -> str:
        """Drop the plan, wait until no action chunk came for ``quiet`` s (at most
        ``quiet_timeout`` s), reset the scene to (task, seed) and the executor; returns the
        task's default instruction."""
        from std_srvs.srv import Trigger

        from hybrid_vla_msgs.srv import SetTask
        dropped = self.reset_planner.call_async(Trigger.Request())
        self.wait(dropped.done, 10.0, 'the strategic planner reset')
        end = time.monotonic() + quiet_timeout
        while time.monotonic() < end and time.monotonic() - self.last_chunk < quiet:
            self.spin(0.05)
        fut = self.set_task.call_async(SetTask.Request(task=task, seed=int(seed)))
        self.wait(fut.done, 10.0, 'set_task')
        res = fut.result()
        if not res.success:
            raise ValueError(res.message)
        if self.reset_executor.service_is_ready():  # hold the reset arm where it now is
            done = self.reset_executor.call_async(Trigger.Request())
            self.wait(done.done, 10.0, 'the executor reset')
        self.latest.pop('status', None)
        self.wait(lambda: self.latest.get('status', {}).get('seed') == seed, 10.0,
                  'the reset scene')
        return res.instruction

    # ------------------------------------------------------------------ the instruction task
    def execute(self, instruction: str, timeout: float = 30.0) -> bool:
        """Send ``instruction`` as an ExecuteInstruction goal (it preempts a running one).
        True if accepted; False if rejected (:attr:`rejection` says why)."""
        from hybrid_vla_msgs.action import ExecuteInstruction
        from hybrid_vla_ros.hierarchy.strategic_core import check_instruction
        self.feedback = []
        sent = self.instruction_client.send_goal_async(
            ExecuteInstruction.Goal(instruction=instruction),
            feedback_callback=lambda m: self.feedback.append(m.feedback))
        self.wait(sent.done, timeout, 'the strategic planner to answer the goal')
        handle = sent.result()
        if not handle.accepted:
            try:   # the same check as the planner's: the reason it logged
                check_instruction(instruction)
                self.rejection = 'rejected by the strategic planner (see its log)'
            except ValueError as e:
                self.rejection = str(e)
            self._goal = self._result = None
            return False
        self.rejection = ''
        self._goal, self._result = handle, handle.get_result_async()
        return True

    def is_task_complete(self) -> bool:
        """The last accepted goal has ended (or there is none)."""
        return self._result is None or self._result.done()

    def get_feedback(self):
        """The latest feedback of the goal (state, active_index, active_subgoal, plan)."""
        return self.feedback[-1] if self.feedback else None

    def get_result(self):
        """``(status, result)`` of the ended goal: status 'succeeded', 'canceled' or 'aborted';
        ``(None, None)`` while it runs or without a goal."""
        from action_msgs.msg import GoalStatus
        if self._result is None or not self._result.done():
            return None, None
        r = self._result.result()
        status = {GoalStatus.STATUS_SUCCEEDED: 'succeeded',
                  GoalStatus.STATUS_CANCELED: 'canceled'}.get(r.status, 'aborted')
        return status, r.result

    def cancel_task(self, timeout: float = 10.0) -> None:
        """Cancel the running goal (the planner drops the plan; the arm holds) and wait for its
        result."""
        if self.is_task_complete():
            return
        cancel = self._goal.cancel_goal_async()
        self.wait(cancel.done, timeout, 'the cancel response')
        self.wait(self.is_task_complete, timeout, 'the canceled goal to end')

    def run_episode(self, task: str, seed: int, instruction: Optional[str] = None,
                    timeout: float = 60.0, settle: float = 1.0,
                    horizon: Optional[float] = None) -> dict:
        """Reset, send the instruction goal, and run until the goal has ended (+ ``settle`` s)
        or ``timeout`` (then the goal is canceled: the plan is dropped, the arm holds).

        With ``horizon`` (s of sim time), run until the sim's clock since the reset reaches it
        instead, whatever the plan's progress (the task's ``max_steps`` control steps, the
        no-ROS evaluation's longest episode), or ``settle`` s after a planning error (an empty
        plan: nothing will move). As in the no-ROS evaluation, the levels below stop once the
        plan is complete."""
        default = self.reset(task, seed)
        instruction = instruction or default
        self.chunk_latency_ms.clear()
        self.chunk_inference.clear()
        self.command_latency_ms.clear()
        self.on_event(f'{task} (seed {seed}): {instruction!r}')
        t0 = time.monotonic()
        self.plan = None  # the latched plan of the previous episode is not this one's
        accepted = self.execute(instruction)
        if not accepted:
            self.on_event(f'  instruction rejected: {self.rejection}')
        done_at = None
        while accepted and time.monotonic() - t0 < timeout:
            self.spin(0.1)
            status, result = self.get_result()
            planned = status is None or result.subgoals_total > 0
            if horizon is not None and planned:
                st = self.latest.get('status', {})
                if st.get('seed') == seed and st.get('sim_time', 0.0) >= horizon:
                    break
                continue
            if status is not None and done_at is None:
                done_at = time.monotonic()
                if not planned:
                    self.on_event(f'  no plan: {result.message}')
            if done_at is not None and time.monotonic() - done_at > settle:
                break
        self.cancel_task()   # out of time: drop the plan, hold
        outcome, result = self.get_result()
        status = self.latest.get('status', {})
        lat = np.asarray(self.chunk_latency_ms or [np.nan])
        return {'task': task, 'seed': seed, 'instruction': instruction,
                'success': bool(status.get('success', False)),
                'error_mm': float(status.get('error_mm', float('nan'))),
                'outcome': outcome or 'rejected',
                'message': result.message if result is not None else self.rejection,
                'no_plan': result is None or result.subgoals_total == 0,
                'subgoals': int(result.subgoals_total) if result is not None else 0,
                'subgoals_done': int(result.subgoals_done) if result is not None else 0,
                'seconds': time.monotonic() - t0,
                'sim_time': float(status.get('sim_time', float('nan'))),
                'latency_ms_p50': float(np.median(lat)),
                'latency_ms_p99': float(np.percentile(lat, 99))}
