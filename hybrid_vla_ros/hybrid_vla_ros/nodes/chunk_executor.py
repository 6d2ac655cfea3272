"""``chunk_executor``: streams action chunks into ros2_control's standard controllers.

Subscribes ``action_chunk`` (hybrid_vla_msgs/ActionChunk) and ``/joint_states``; at the controller
rate publishes either the forward position controller's command or a one-point JointTrajectory to
the joint trajectory controller (``command_interface``), plus the gripper controller's command.
The logic (blending, limits, holding) is :class:`ChunkStream`; this node converts messages.
``estop`` (std_msgs/Bool, True = stop) and an optional ``heartbeat`` (std_msgs/Empty, required
when ``heartbeat_timeout`` > 0) make it hold position. ``~/reset`` (std_srvs/Trigger) drops
the chunks and holds at the first joint state stamped after the call (for a plant that was
reset, e.g. the simulator between evaluation episodes: never drag it back to the old pose).

With ``command_on_chunk`` (default true) a new chunk is commanded at once (and the controller
timer re-phased to it) instead of waiting up to one controller period for the next tick.
For each chunk, ``~/command_observation`` (sensor_msgs/TimeReference) carries the stamp of the
first command published from it (``header.stamp``, taken right after the publish call returned)
and the joint-state stamp the chunk was computed from (``time_ref``): observation -> command
latency from message stamps. ``/diagnostics`` carries the tick rate and deadline counters
(:mod:`hybrid_vla_ros.execution.rate_monitor`).
"""
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import Bool, Empty, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from hybrid_vla_msgs.msg import ActionChunk
from hybrid_vla_ros.execution.chunk_stream import (
    EXECUTOR_DEFAULTS,
    ChunkRejectedError,
    executor_stream,
)
from hybrid_vla_ros.execution.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.nodes.conversions import RobotAdapter
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.ready import ReadyStatus
from hybrid_vla_ros.nodes.robot_params import declare_robot


def _sec(t) -> float:
    return Time.from_msg(t).nanoseconds * 1e-9


class ChunkExecutorNode(Node):
    def __init__(self):
        super().__init__('chunk_executor')
        p = self.declare_parameter
        self.robot = robot = declare_robot(self)
        self.adapter = RobotAdapter(robot)
        self.joint_names = list(robot.joint_names)
        self.gripper_joint = robot.gripper_joint
        cfg = robot.config
        D = EXECUTOR_DEFAULTS
        self.rate = p('rate', D['rate'], _d('controller rate (Hz)')).value
        self.interface = p('command_interface', 'forward',
                           _d('forward (position controller) or trajectory (JTC)')).value
        settings = {
            'rate': self.rate,
            'blend_time': p('blend_time', D['blend_time'], _d('cross-fade to a new chunk (s)')
                            ).value,
            'chunk_timeout': p('chunk_timeout', D['chunk_timeout'],
                               _d('hold if no chunk for this long (s)')).value,
            'heartbeat_timeout': p('heartbeat_timeout', D['heartbeat_timeout'], _d(
                'hold if no heartbeat for this long (s); 0 = not required')).value,
            'velocity_scale': p('velocity_scale', D['velocity_scale'], _d(
                'fraction of the URDF velocity limits commanded (arm and gripper); below 1 so '
                "that the jitter between this node's and the controller manager's clocks never "
                'reads as a limit violation')).value,
            'joint_state_timeout': p('joint_state_timeout', D['joint_state_timeout'], _d(
                'hold if the joint states stop for this long (s); 0 = off')).value,
            'resync_tolerance': p('resync_tolerance', D['resync_tolerance'], _d(
                'measured further than this (rad) from the last command: restart the command '
                'from the measured position (sim reset, collision); 0 = off')).value}
        self.command_on_chunk = p('command_on_chunk', True, _d(
            'command a new chunk at once and re-phase the controller timer to it')).value
        if self.interface not in ('forward', 'trajectory'):
            raise ValueError(f"command_interface={self.interface!r}: expected 'forward' or "
                             "'trajectory'")
        # the URDF's limits; closure 0..1 -> gripper joint position as robot.gripper_position
        self.stream = executor_stream(robot, **settings)
        self.measured = self.measured_gripper = self.measured_time = None
        self.min_js_stamp = 0  # ns; joint states older than a reset are ignored
        self.obs_stamp = None
        self.obs_expert = ''
        self.latencies_ms = []
        self.ticks = []
        self._last_hold = None
        self._resyncs = 0
        self.monitor = RateMonitor(self.rate)
        self._cmd = Float64MultiArray()
        self._grip = Float64MultiArray(data=[0.0])
        self._stamp_msg = TimeReference(source='chunk')

        if self.interface == 'forward':
            self.pub_cmd = self.create_publisher(Float64MultiArray,
                                                 cfg.forward_command_topic, COMMAND)
        else:
            self.pub_cmd = self.create_publisher(JointTrajectory, cfg.trajectory_topic,
                                                 COMMAND)
        self.pub_grip = self.create_publisher(Float64MultiArray, cfg.gripper_command_topic,
                                               COMMAND)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.pub_stamp = self.create_publisher(TimeReference, '~/command_observation', COMMAND)
        self.create_subscription(ActionChunk, 'action_chunk', self.on_chunk, COMMAND)
        self.create_subscription(JointState, cfg.joint_states_topic, self.on_joint_state,
                                 SENSOR)
        self.create_subscription(Bool, 'estop', self.on_estop, LATCHED)
        self.create_subscription(Empty, 'heartbeat', self.on_heartbeat, SENSOR)
        self.create_service(Trigger, '~/reset', self.on_reset)
        self.ready = ReadyStatus(self)   # ~/ready: true from the first valid joint state on
        self.ready.set(False, 'no joint state yet')
        self.timer = self.create_timer(1.0 / self.rate, self.on_tick)
        self.create_timer(1.0, self.on_diagnostics)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_chunk(self, msg: ActionChunk) -> None:
        now = self.now()
        try:
            self.stream.add_chunk(joint_names=msg.joint_names, positions=msg.positions,
                                  gripper=msg.gripper, horizon=msg.horizon,
                                  t0=_sec(msg.header.stamp) or now,
                                  step=msg.step.sec + msg.step.nanosec * 1e-9, now=now,
                                  expert=msg.expert)
            self.obs_stamp = msg.observation_stamp
            self.obs_expert = msg.expert
        except ChunkRejectedError as e:
            self.get_logger().error(f'rejected action chunk from {msg.expert[:64] or "?"}: '
                                    f'{str(e)[:512]}', throttle_duration_sec=1.0)
            return
        if self.command_on_chunk:
            self.on_tick()
            self.timer.reset()  # the next tick one period after this command

    def on_reset(self, request, response):
        self.stream.clear()
        self.measured = self.measured_gripper = self.measured_time = self.obs_stamp = None
        self.min_js_stamp = self.get_clock().now().nanoseconds
        self.get_logger().info('reset: chunks dropped; holding at the next joint state')
        response.success, response.message = True, 'chunks dropped'
        return response

    def on_joint_state(self, msg: JointState) -> None:
        if Time.from_msg(msg.header.stamp).nanoseconds < self.min_js_stamp:
            return  # measured before a reset
        try:
            q, gripper = self.adapter.measured(msg)
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=1.0)
            return
        self.measured, self.measured_gripper = q, gripper
        self.measured_time = self.now()
        self.ready.set(True, 'joint state received: holding and commanding from it')

    def on_estop(self, msg: Bool) -> None:
        self.stream.estop = bool(msg.data)
        self.get_logger().warning(f"e-stop {'ENGAGED: holding' if msg.data else 'released'}")

    def on_heartbeat(self, msg: Empty) -> None:
        self.stream.heartbeat(self.now())

    def on_tick(self) -> None:
        t0 = time.perf_counter()
        q, finger = self.stream.tick(self.now(), self.measured, self.measured_gripper,
                                     self.measured_time)
        if self.stream.n_resyncs != self._resyncs:
            self._resyncs = self.stream.n_resyncs
            self.get_logger().warning(
                'the arm is further than resync_tolerance from the command: commanding from '
                f'its measured position (re-sync {self._resyncs})', throttle_duration_sec=1.0)
        kind = self.stream.hold_reason.split(' for ')[0]  # not the growing stale time
        if q is None:
            self.monitor.idle()
            if kind != self._last_hold:
                self.get_logger().warning(f'commanding nothing: {self.stream.hold_reason}')
                self._last_hold = kind
            return  # no valid measured position: command nothing
        if kind != self._last_hold:  # log when the reason changes, not on every tick
            if kind:
                self.get_logger().warning(f'holding position: {self.stream.hold_reason}')
            self._last_hold = kind
        if self.interface == 'forward':
            self._cmd.data = q.tolist()
            self.pub_cmd.publish(self._cmd)
        else:
            traj = JointTrajectory(joint_names=self.joint_names)
            pt = JointTrajectoryPoint(positions=q.tolist())
            pt.time_from_start.nanosec = int(1e9 / self.rate)
            traj.points.append(pt)
            self.pub_cmd.publish(traj)
        sent = self.get_clock().now()
        if finger is not None:  # None until the gripper's position has been measured
            self._grip.data[0] = finger
            self.pub_grip.publish(self._grip)
        if self.obs_stamp is not None and not self.stream.hold_reason:
            # observation -> first command of its chunk
            self.latencies_ms.append((sent.nanoseconds - Time.from_msg(
                self.obs_stamp).nanoseconds) * 1e-6)
            self._stamp_msg.header.stamp = sent.to_msg()
            self._stamp_msg.time_ref = self.obs_stamp
            self._stamp_msg.source = self.obs_expert
            self.pub_stamp.publish(self._stamp_msg)
            self.obs_stamp = None
        work = time.perf_counter() - t0
        self.monitor.tick(sent.nanoseconds * 1e-9, work)
        self.ticks.append(work * 1e3)

    def on_diagnostics(self) -> None:
        st = DiagnosticStatus(name='chunk_executor', hardware_id='arm')
        st.level = DiagnosticStatus.WARN if self.stream.hold_reason else DiagnosticStatus.OK
        st.message = f'holding: {self.stream.hold_reason}' if self.stream.hold_reason \
            else 'executing'
        lat = np.asarray(self.latencies_ms[-200:] or [np.nan])
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('rate_hz', len(self.ticks)), ('obs_to_command_p50_ms', f'{np.median(lat):.2f}'),
            ('obs_to_command_p99_ms', f'{np.percentile(lat, 99):.2f}'),
            ('rejected_chunks', self.stream.n_rejected),
            ('velocity_clamped_ticks', self.stream.n_clamped),
            ('resyncs', self.stream.n_resyncs),
            ('seeds', self.stream.n_seeds))] + rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)
        self.ticks = []


def main(args=None):
    run_node(ChunkExecutorNode, args)


if __name__ == '__main__':
    main()
