"""``motor_policy``: the selected action expert on the latest waypoints + joint state.

A thin adapter of :class:`~hybrid_vla_ros.motor.driver.MotorCore` (the waypoints followed, the
expert in use, one chunk from a state), with the timing of a real-time node.

Subscribes ``/joint_states``, ``waypoints`` and ``expert``; at ``rate`` Hz (event-driven: on the
first joint state of each period, so the chunk starts from the freshest observation; the periods
are phase-locked, not re-started at each act, so 20 Hz stays 20 Hz on 100 Hz joint states)
publishes an ``action_chunk`` whose stamp is the time of its first step and whose
``observation_stamp`` is the joint state it was computed from. Publishes nothing (so the
executor holds) while the joint state is missing/stale/invalid or there are no waypoints (none
yet, or none for ``waypoint_timeout`` s: the tactical level re-publishes them at 5 Hz while a
sub-goal is active, so its silence means the plan is over or the level is gone). Each chunk is
ACT's temporal ensemble (:mod:`hybrid_vla_ros.motor.ensemble`) of the last M of the expert in
use, M its checkpoint's ``ensemble`` (1 = the chunk itself) unless the ``ensemble`` parameter
(> 0) sets it for every expert; the coarse_to_fine refiner's start noise is its checkpoint's
``temperature`` unless the ``temperature`` parameter (>= 0) sets it: the same settings as the
ROS-free evaluation (``--ensemble M``, ``--temperature T``). The
predicted tool path goes to ``predicted_path`` (nav_msgs/Path) and ``markers`` for rviz at
``viz_rate`` Hz (after the chunk is out); inference time and the rate/deadline counters
(:mod:`hybrid_vla_ros.execution.rate_monitor`) to ``/diagnostics``. ``~/ready`` (latched,
:mod:`ready`) turns true once every expert is warmed up.
"""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Path
import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.msg import ActionChunk, ExpertSelection, WaypointArray
from hybrid_vla_ros.execution.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.motor.driver import MotorCore
from hybrid_vla_ros.motor.features import waypoint_vector
from hybrid_vla_ros.motor.policy import MotorPolicy, motor_checkpoint
from hybrid_vla_ros.nodes.conversions import RobotAdapter
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.ready import ReadyStatus
from hybrid_vla_ros.nodes.robot_params import declare_robot


def pose_vector(pose) -> tuple:
    p, q = pose.position, pose.orientation
    return (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)


class MotorPolicyNode(Node):
    def __init__(self):
        super().__init__('motor_policy')
        p = self.declare_parameter
        self.robot = robot = declare_robot(self)
        self.adapter = RobotAdapter(robot)
        self.joint_names = list(robot.joint_names)
        self.base_frame = robot.base_frame
        self.rate = p('rate', 20.0, _d('chunk rate (Hz); sustains >= 100')).value
        device = p('device', 'cpu', _d('torch device: cpu or cuda')).value
        ckpt_dir = p('checkpoint_dir', '', _d('motor checkpoints; empty = shipped')).value
        experts = list(p('experts', ['token', 'flow', 'diffusion', 'coarse_to_fine'],
                         _d('experts to load')).value)
        default_expert = p('default_expert', 'coarse_to_fine',
                           _d('expert before a selection')).value
        steps = p('refine_steps', -1, _d('K sampler steps; -1 = checkpoint default')).value
        self.step_s = p('chunk_step', 0.05, _d('seconds between chunk steps')).value
        ensemble = p('ensemble', 0, _d("ACT's temporal ensemble of the last M chunks for "
                                       "every expert; 0 = each checkpoint's own, 1 = off")).value
        temperature = p('temperature', -1.0, _d(
            "coarse_to_fine refiner start-noise scale; -1 = the checkpoint's own, 0 = none"
        )).value
        self.state_timeout = p('state_timeout', 0.25, _d('joint state older = stale (s)')).value
        wp_timeout = p('waypoint_timeout', 0.5, _d(
            'no waypoints for this long (s) = no task: stop acting; 0 = never')).value
        viz_rate = p('viz_rate', 5.0, _d('predicted path / marker rate for rviz (Hz); 0 = off'
                                       )).value
        self.viz_period = 1.0 / viz_rate if viz_rate > 0 else float('inf')
        self.last_viz = -1.0
        self.steps = None if steps < 0 else int(steps)
        if default_expert not in experts:
            raise ValueError(f'default_expert {default_expert!r} is not in experts {experts}')
        self.policy = MotorPolicy.from_checkpoints(
            {e: motor_checkpoint(e, None, ckpt_dir or None, robot) for e in experts},
            device=device, joint_names=self.joint_names,
            temperature=None if temperature < 0 else float(temperature))
        self.kin = robot.kinematics()
        first = self.policy.warmup(steps=self.steps)  # captured paths built before any chunk
        self.get_logger().info('warm-up (first call, ms): ' + ', '.join(
            f'{k} {v:.0f}' for k, v in first.items()))
        self.get_logger().info('run-time settings: ' + ', '.join(
            f'{k} ' + ' '.join(f'{n}={v:g}' for n, v in r.items())
            for k, r in self.policy.runtime().items())
            + (f' (ensemble {ensemble} for every expert)' if ensemble > 0 else ''))
        self.core = MotorCore(self.policy, default_expert, kinematics=self.kin, steps=self.steps,
                              waypoint_timeout=wp_timeout, reach=self.kin.reach(),
                              ensemble=ensemble, step_s=self.step_s)
        self.js = None
        self.js_stamp = None
        self.inference_ms = []
        # latency parts per chunk (ms): joint state stamp -> its callback (DDS + dispatch),
        # callback -> chunk published (features, inference, message); see on_diagnostics
        self.receive_ms, self.compute_ms = [], []
        self.js_received = 0.0
        self.published = 0
        self.errors = 0

        self.pub_chunk = self.create_publisher(ActionChunk, 'action_chunk', COMMAND)
        self.pub_path = self.create_publisher(Path, 'predicted_path', 10)
        self.pub_markers = self.create_publisher(MarkerArray, 'markers', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(JointState, robot.config.joint_states_topic,
                                 self.on_joint_state, SENSOR)
        self.create_subscription(WaypointArray, 'waypoints', self.on_waypoints, COMMAND)
        self.create_subscription(ExpertSelection, 'expert', self.on_expert, LATCHED)
        self.period = 1.0 / self.rate
        self.next_due = -1.0
        # act on a joint state up to this much before the period's due time (joint states come
        # at the plant's rate, with jitter): without it a 20 Hz policy on 100 Hz joint states
        # would skip to the 6th state whenever the 5th arrives a hair early
        self.slack = 0.2 * self.period
        self.monitor = RateMonitor(self.rate)
        self._chunk_msg = ActionChunk(joint_names=self.joint_names)
        self._chunk_msg.header.frame_id = self.base_frame
        self._chunk_msg.step.sec = int(self.step_s)
        self._chunk_msg.step.nanosec = int(round((self.step_s % 1) * 1e9))
        self.create_timer(1.0, self.on_diagnostics)
        self.get_logger().info(f'motor_policy: experts {experts} on {device}, {self.rate} Hz')
        self.ready = ReadyStatus(self)   # ~/ready: everything above is built and warmed up
        self.ready.set(True, 'every expert loaded and warmed up')

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_joint_state(self, msg: JointState) -> None:
        received = self.now()
        try:
            state = self.adapter.state(msg)
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=1.0)
            return
        self.js, self.js_stamp, self.js_received = state, msg.header.stamp, received
        # Act on the first joint state after each period: the chunk then starts from the
        # freshest observation (no sampling delay between the state and the inference).
        now = self.now()
        if now >= self.next_due - self.slack:
            # phase-locked periods; after a stall, re-start from now instead of bursting
            self.next_due = self.next_due + self.period
            if self.next_due < now:
                self.next_due = now + self.period
            self.on_tick()

    def on_waypoints(self, msg: WaypointArray) -> None:
        try:
            self.core.on_waypoints(msg.subgoal_id, [waypoint_vector(*pose_vector(w.pose),
                                                                    w.gripper)
                                                    for w in msg.waypoints], self.now())
        except ValueError as e:
            self.get_logger().error(f'rejected waypoints for {msg.subgoal_id[:64]!r}: {e}',
                                    throttle_duration_sec=1.0)

    def on_expert(self, msg: ExpertSelection) -> None:
        was = self.core.expert
        if not self.core.on_expert(msg.expert):
            self.get_logger().error(f'router selected {msg.expert[:64]!r}, not loaded '
                                    f'({sorted(self.policy.experts)}); keeping {was!r}',
                                    throttle_duration_sec=1.0)
        elif msg.expert != was:
            self.get_logger().info(f'expert: {was} -> {msg.expert}')

    def on_tick(self) -> None:
        t_start = self.now()
        if self.js is None or not self.core.has_task(t_start):
            self.monitor.idle()
            return
        age = self.now() - Time.from_msg(self.js_stamp).nanoseconds * 1e-9
        if age > self.state_timeout:
            self.get_logger().warning(f'joint state is {age:.2f} s old: not acting',
                                   throttle_duration_sec=1.0)
            return
        state, stamp = self.js, self.js_stamp
        expert = self.core.expert
        try:
            chunk, coarse, ms = self.core.act(state, now=t_start)
        except ValueError as e:
            self.errors += 1
            self.get_logger().error(f'no chunk: {e}', throttle_duration_sec=1.0)
            return
        msg = self._chunk_msg  # pre-allocated: publish() serializes it before returning
        msg.header.stamp = self.get_clock().now().to_msg()  # the chunk is ready
        msg.expert, msg.horizon = expert, len(chunk)
        msg.positions, msg.gripper = self.adapter.chunk_fields(chunk)
        msg.coarse = [] if coarse is None else \
            self.adapter.arm(coarse).astype(float).ravel().tolist()
        default_k = getattr(self.policy.experts[expert].config, 'steps', 0)
        msg.refine_steps = int(default_k if self.steps is None or not default_k else self.steps)
        msg.inference_ms = float(ms)
        msg.observation_stamp = stamp
        self.pub_chunk.publish(msg)
        now = self.now()
        self.monitor.tick(now, now - t_start)
        self.inference_ms.append(ms)
        self.receive_ms.append((self.js_received - Time.from_msg(stamp).nanoseconds * 1e-9) * 1e3)
        self.compute_ms.append((now - self.js_received) * 1e3)
        self.published += 1
        if now - self.last_viz >= self.viz_period:
            self.last_viz = now
            self._publish_prediction(chunk, msg.header.stamp)

    def _publish_prediction(self, chunk, stamp) -> None:
        path = Path()
        path.header.stamp, path.header.frame_id = stamp, self.base_frame
        line = Marker(ns='predicted_trajectory', id=0, type=Marker.LINE_STRIP)
        line.header = path.header
        line.scale.x = 0.004
        line.color.g, line.color.a = 0.8, 1.0
        line.pose.orientation.w = 1.0
        for q in self.adapter.arm(chunk):
            pos, quat = self.kin.fk(q)
            ps = PoseStamped()
            ps.header = path.header
            ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = map(float, pos)
            (ps.pose.orientation.x, ps.pose.orientation.y, ps.pose.orientation.z,
             ps.pose.orientation.w) = map(float, quat)
            path.poses.append(ps)
            line.points.append(Point(x=float(pos[0]), y=float(pos[1]), z=float(pos[2])))
        self.pub_path.publish(path)
        self.pub_markers.publish(MarkerArray(markers=[line]))

    def on_diagnostics(self) -> None:
        ms = np.asarray(self.inference_ms or [np.nan])
        rx = np.asarray(self.receive_ms or [np.nan])
        cx = np.asarray(self.compute_ms or [np.nan])
        st = DiagnosticStatus(name='motor_policy', hardware_id='policy')
        st.level = DiagnosticStatus.OK if self.published else DiagnosticStatus.WARN
        st.message = f'{self.published} chunks/s from {self.core.expert}' if self.published \
            else 'idle: waiting for joint states and waypoints'
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('rate_hz', self.published), ('inference_ms_p50', f'{np.median(ms):.2f}'),
            ('inference_ms_p99', f'{np.percentile(ms, 99):.2f}'),
            ('receive_ms_p50', f'{np.median(rx):.2f}'),
            ('receive_ms_p99', f'{np.percentile(rx, 99):.2f}'),
            ('compute_ms_p50', f'{np.median(cx):.2f}'),
            ('compute_ms_p99', f'{np.percentile(cx, 99):.2f}'),
            ('expert', self.core.expert),
            ('subgoal_id', self.core.subgoal_id), ('errors', self.errors))] + \
            rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)
        self.inference_ms, self.receive_ms, self.compute_ms, self.published = [], [], [], 0


def main(args=None):
    run_node(MotorPolicyNode, args)


if __name__ == '__main__':
    main()
