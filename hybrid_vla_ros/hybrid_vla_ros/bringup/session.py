"""A blocking facade over the launched graph (nav2_simple_commander's idea).

``GraphSession`` starts the graph as processes (:mod:`process_launcher`), talks to it over DDS
from a node of its own, and runs episodes: reset the sim to (task, seed), send the instruction on
``instruction``, follow the sub-goals, and read the outcome from the sim's evaluation-only
``ground_truth/task_status``. The demo, ``hybrid-vla eval --ros`` and the end-to-end tests use it.

A reset between episodes first drops the strategic planner's plan (``strategic_planner/reset``)
and waits until the motor level has stopped acting on it, then resets the scene and the chunk
executor: the previous episode's plan never drives the new scene, and the next instruction is
planned afresh even when it is the same sentence. An episode only accepts a plan made after its
reset (the plan's stamp).
"""
import json
import os
import random
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from hybrid_vla_ros.bringup.graph import arm_graph, recorder_spec
from hybrid_vla_ros.bringup.process_launcher import GraphProcesses

PRIVATE_DOMAINS = (1, 101)  # ROS 2's safe range on Linux (0 is everyone's default)


class GraphSession:
    """:param overrides: ``{node: {param: value}}``; :param bag: MCAP path to record into;
    :param log_dir: where each node's output goes; :param on_event: called with progress text."""

    def __init__(self, *, robot: str = 'arm7', overrides: Optional[Dict] = None,
                 bag: Optional[str] = None, log_dir: str = '.', on_event: Callable = print,
                 keep_frames: bool = False, domain_id: Optional[int] = None):
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
        self.specs = arm_graph(robot=robot, hardware='sim')
        if bag:
            self.specs.append(recorder_spec(bag))
        self.overrides = overrides or {}
        self.log_dir = log_dir
        self.on_event = on_event
        self.keep_frames = keep_frames
        self.procs: Optional[GraphProcesses] = None
        self.node = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90.0) -> 'GraphSession':
        try:
            return self._start(timeout)
        except BaseException:  # never leave the graph running when the start fails
            self.stop()
            raise

    def _start(self, timeout: float) -> 'GraphSession':
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, JointState, TimeReference
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from hybrid_vla_msgs.msg import ActionChunk, SubGoalList, WaypointArray
        from hybrid_vla_msgs.srv import SetTask
        from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR

        os.makedirs(self.log_dir, exist_ok=True)
        self._log = open(os.path.join(self.log_dir, 'graph.log'), 'w')
        self.procs = GraphProcesses(self.specs, overrides=self.overrides,
                                    log=lambda m: self._log.write(m + '\n'),
                                    stdout=self._log, stderr=self._log, env=self.env)
        self.on_event(f'graph on ROS_DOMAIN_ID={self.domain_id} (export it to watch in rviz)')
        self.procs.start()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.node = rclpy.create_node('hybrid_vla_session', context=self.context)
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
        self.set_task = n.create_client(SetTask, '/sim_arm/set_task')
        self.reset_executor = n.create_client(Trigger, 'chunk_executor/reset')
        self.reset_planner = n.create_client(Trigger, 'strategic_planner/reset')
        self.status_values: Dict[str, Dict[str, str]] = {}
        self.last_chunk = 0.0   # time.monotonic() of the last action chunk seen
        self.reset_stamp = 0    # ns, node clock: plans stamped before it are not this episode's
        self.wait(lambda: 'js' in self.latest and 'image' in self.latest
                  and self.set_task.service_is_ready()
                  and self.reset_planner.service_is_ready()
                  and self._subscribed('instruction', 'strategic_planner')
                  and self._subscribed('subgoals', 'tactical_planner')
                  and self._motor_ready(), timeout, 'the graph to come up')
        return self

    def _subscribed(self, topic: str, node_name: str) -> bool:
        """Is ``node_name`` subscribed to ``topic`` yet (other subscribers, e.g. the bag
        recorder, do not count)?"""
        name = self.node.resolve_topic_name(topic)
        return any(i.node_name == node_name
                   for i in self.node.get_subscriptions_info_by_topic(name))

    def _motor_ready(self) -> bool:
        return self.node.count_publishers('action_chunk') > 0 and \
            self.node.count_subscribers('action_chunk') > 0

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
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

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

    def _on_plan(self, msg) -> None:
        old = self.plan
        self.plan = msg
        if old is None or old.instruction != msg.instruction or \
                old.active_index != msg.active_index or len(old.subgoals) != len(msg.subgoals):
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
        from hybrid_vla_ros.nodes.rate_monitor import parse_rate_values
        for st in msg.status:
            self.status_values[st.name.split(':')[0]] = {kv.key: kv.value for kv in st.values}
            values = parse_rate_values(st.values)
            if values:
                self.rate_counters[st.name.split(':')[0]] = values

    def rate_snapshot(self, fresh: float = 1.2) -> Dict[str, Dict[str, float]]:
        """The nodes' cumulative rate counters (:mod:`rate_monitor`), after spinning ``fresh``
        seconds so every node's 1 Hz diagnostics is current."""
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

    def _check_alive(self) -> None:
        dead = self.procs.failed() if self.procs else None
        if dead is not None:
            raise RuntimeError(f'node {dead} exited with code {self.procs.procs[dead].returncode}'
                               f' (see {os.path.join(self.log_dir, "graph.log")})')

    # ------------------------------------------------------------------ episodes
    def reset(self, task: str, seed: int, quiet: float = 0.3, quiet_timeout: float = 3.0) -> str:
        """Drop the plan, wait until no action chunk came for ``quiet`` s (at most
        ``quiet_timeout`` s), reset the scene to (task, seed) and the executor; returns the
        task's default instruction."""
        from std_srvs.srv import Trigger

        from hybrid_vla_msgs.srv import SetTask
        dropped = self.reset_planner.call_async(Trigger.Request())
        self.wait(dropped.done, 10.0, 'the strategic planner reset')
        self.reset_stamp = self.node.get_clock().now().nanoseconds
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

    def _answers(self, plan, instruction: str) -> bool:
        """Is ``plan`` this episode's answer to ``instruction`` (made after the reset)?"""
        from rclpy.time import Time
        return plan is not None and plan.instruction == instruction and \
            Time.from_msg(plan.header.stamp).nanoseconds >= self.reset_stamp

    def run_episode(self, task: str, seed: int, instruction: Optional[str] = None,
                    timeout: float = 60.0, settle: float = 1.0,
                    horizon: Optional[float] = None) -> dict:
        """Reset, instruct, and run until the plan is done (+ ``settle`` s) or ``timeout``.

        With ``horizon`` (s of sim time), run until the sim's clock since the reset reaches it
        instead, whatever the plan's progress (the no-ROS evaluation's episode length: the task's
        ``max_steps`` control steps), or ``settle`` s after a planning error (an empty plan:
        nothing will move). Note the no-ROS evaluation keeps driving the last sub-goal to the
        end, while in the graph the levels below stop once the plan is complete."""
        from std_msgs.msg import String
        default = self.reset(task, seed)
        instruction = instruction or default
        self.chunk_latency_ms.clear()
        self.chunk_inference.clear()
        self.command_latency_ms.clear()
        self.on_event(f'{task} (seed {seed}): {instruction!r}')
        t0 = time.monotonic()
        self.plan = None  # the latched plan of the previous episode is not this one's
        sent = [0.0]

        def send():  # an instruction is a volatile message: repeat until a plan answers it
            if time.monotonic() - sent[0] > 10.0:
                self.pub_instruction.publish(String(data=instruction))
                sent[0] = time.monotonic()
        self.wait(lambda: send() or self._answers(self.plan, instruction), 60.0, 'a plan')
        done_at = None
        while time.monotonic() - t0 < timeout:
            self.spin(0.1)
            p = self.plan
            if horizon is not None and p.subgoals:
                st = self.latest.get('status', {})
                if st.get('seed') == seed and st.get('sim_time', 0.0) >= horizon:
                    break
                continue
            finished = bool(p.subgoals) and p.active_index >= len(p.subgoals)
            if (finished or not p.subgoals) and done_at is None:
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > settle:
                break
        status = self.latest.get('status', {})
        lat = np.asarray(self.chunk_latency_ms or [np.nan])
        return {'task': task, 'seed': seed, 'instruction': instruction,
                'success': bool(status.get('success', False)),
                'error_mm': float(status.get('error_mm', float('nan'))),
                'subgoals': len(self.plan.subgoals),
                'subgoals_done': int(min(self.plan.active_index, len(self.plan.subgoals))),
                'seconds': time.monotonic() - t0,
                'sim_time': float(status.get('sim_time', float('nan'))),
                'latency_ms_p50': float(np.median(lat)),
                'latency_ms_p99': float(np.percentile(lat, 99))}
