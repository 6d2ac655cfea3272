"""``sim_arm``: the MuJoCo arm behind the interfaces ros2_control would offer.

Publishes ``/joint_states`` (arm + finger joints, position and velocity), ``camera/image_raw``,
``camera/depth/image_raw`` and ``camera/camera_info``; accepts
``/forward_position_controller/commands``, ``/joint_trajectory_controller/joint_trajectory`` and
the gripper controller's command (the gripper joint's position in its own units, like a forward
position controller on the robot's ``gripper_joint``). Out-of-limit
commands are clamped and reported; malformed ones are rejected and the arm holds.
Ground truth for evaluation only: ``ground_truth/objects`` (MarkerArray),
``ground_truth/tool_pose`` and ``ground_truth/task_status`` (JSON: success, error_mm).
Services ``~/reset`` (std_srvs/Trigger) and ``~/set_task``
(hybrid_vla_msgs/SetTask).

The 100 Hz physics tick (step, publish ``/joint_states``) is the plant's control path and never
waits for the camera: the camera, its worker thread, the ground truth and the services are
:mod:`~hybrid_vla_ros.nodes.camera_publisher`'s (shared with ``scene_camera``, the same scene
and camera for an arm owned by ros2_control: :mod:`~hybrid_vla_ros.nodes.scene_camera`).
"""
import time

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from hybrid_vla_ros.execution.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.nodes.camera_publisher import ScenePublisherNode
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, SENSOR
from hybrid_vla_ros.sim.controller_interfaces import (
    CommandError,
    TrajectoryFollower,
    clamp_to_limits,
    shorten,
    validate_forward_command,
)


class SimArmNode(ScenePublisherNode):
    """Adapter between ROS topics/services and :class:`ArmSim`: physics, ``/joint_states``,
    controller commands, and the scene camera of :class:`ScenePublisherNode`."""

    mode = 'sim'

    def __init__(self):
        super().__init__('sim_arm')
        p = self.declare_parameter
        js_topic = self.robot.config.joint_states_topic
        cfg = self.robot.config
        forward_topic, traj_topic = cfg.forward_command_topic, cfg.trajectory_topic
        grip_topic = cfg.gripper_command_topic
        self.control_rate = p('control_rate', 100.0, _d('joint state / control rate (Hz)')).value
        self.rtf = p('real_time_factor', 1.0, _d('sim seconds per wall second')).value
        if self.control_rate <= 0 or self.rtf <= 0:
            raise ValueError('control_rate and real_time_factor must be > 0')
        self.follower = TrajectoryFollower(self.joint_names)
        self.substeps = max(1, int(round(1.0 / (self.control_rate * self.sim.timestep))))
        self.n_clamped = 0
        self.n_rejected = 0
        self._tick_ms = []
        self._js = JointState(name=list(self.sim.joint_names))
        self.monitor = RateMonitor(self.control_rate * self.rtf)
        self.pub_js = self.create_publisher(JointState, js_topic, SENSOR)
        self.create_subscription(Float64MultiArray, forward_topic, self.on_forward, COMMAND)
        self.create_subscription(JointTrajectory, traj_topic, self.on_trajectory, COMMAND)
        self.create_subscription(Float64MultiArray, grip_topic, self.on_gripper, COMMAND)
        self.create_timer(1.0 / (self.control_rate * self.rtf), self.on_tick)
        self.get_logger().info(
            f"sim_arm: task {self.task!r} seed {self.seed}, physics {1 / self.sim.timestep:.0f} "
            f"Hz x{self.substeps} per {self.control_rate:.0f} Hz tick, RTF {self.rtf}")
        self.start()

    # ----------------------------------------------------------------- commands
    def _apply(self, q: np.ndarray, source: str) -> None:
        qc, clamped = clamp_to_limits(q, self.sim.lower, self.sim.upper)
        if clamped:
            self.n_clamped += 1
            names = [self.joint_names[i] for i in clamped]
            self.get_logger().warning(f'{source}: clamped {names} to their position limits',
                                   throttle_duration_sec=1.0)
        self.sim.set_joint_targets(qc)

    def on_forward(self, msg: Float64MultiArray) -> None:
        try:
            q = validate_forward_command(msg.data, len(self.joint_names))
        except CommandError as e:
            self.n_rejected += 1
            self.get_logger().error(f'rejected forward command: {e}; holding position',
                                    throttle_duration_sec=1.0)
            return
        self.follower.clear()  # like switching controllers: the latest interface wins
        self._apply(q, 'forward command')

    def on_trajectory(self, msg: JointTrajectory) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        start = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        try:
            self.follower.set_trajectory(
                msg.joint_names,
                [pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9 for pt in msg.points],
                [pt.positions for pt in msg.points],
                start_time=start if start > 0 else now, current=self.sim.joint_targets())
        except CommandError as e:
            self.n_rejected += 1
            self.get_logger().error(f'rejected trajectory: {e}; holding position',
                                    throttle_duration_sec=1.0)

    def on_gripper(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != 1 or not np.isfinite(msg.data[0]):
            self.n_rejected += 1
            self.get_logger().error(f'rejected gripper command {shorten(msg.data)}: expected '
                                    'one finite gripper joint position; holding',
                                    throttle_duration_sec=1.0)
            return
        self.sim.set_finger_position(float(msg.data[0]))

    # ----------------------------------------------------------------- simulation
    def on_tick(self) -> None:
        t0 = time.perf_counter()
        q = self.follower.sample(self.get_clock().now().nanoseconds * 1e-9)
        if q is not None:
            self._apply(q, 'trajectory')
        self.sim.step(self.substeps)
        js = self._js  # pre-allocated; names set once
        js.header.stamp = self.get_clock().now().to_msg()
        js.position = self.sim.joint_positions().tolist() + self.sim.finger_positions().tolist()
        js.velocity = self.sim.joint_velocities().tolist() + self.sim.finger_velocities().tolist()
        self.pub_js.publish(js)
        work = time.perf_counter() - t0
        self.monitor.tick(time.monotonic(), work)
        self._tick_ms.append(work * 1e3)

    def frame_stamp(self):
        return self.get_clock().now().to_msg()

    # ----------------------------------------------------------------- services
    def _reset(self, task: str, seed: int) -> str:
        self.follower.clear()
        return super()._reset(task, seed)

    def reset_scene(self, task, seed: int):
        return self.sim.reset(task, seed)

    def on_diagnostics(self) -> None:
        ticks = np.asarray(self._tick_ms[-int(self.control_rate):] or [0.0])
        st = DiagnosticStatus(name='sim_arm: physics', hardware_id='mujoco')
        budget_ms = 1e3 / (self.control_rate * self.rtf)
        st.level = DiagnosticStatus.OK if ticks.max() < budget_ms else DiagnosticStatus.WARN
        st.message = f'tick p50 {np.median(ticks):.2f} ms of {budget_ms:.1f} ms budget'
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('sim_time_s', f'{self.sim.time:.3f}'), ('clamped_commands', self.n_clamped),
            ('rejected_commands', self.n_rejected), ('task', self.task), ('seed', self.seed),
            ('camera_frames', self.camera.frames if self.camera else -1),
            ('camera_skipped', self.camera.skipped if self.camera else 0))] + \
            rate_values(self.monitor)
        self.publish_diagnostics([st])
        self._tick_ms = self._tick_ms[-int(self.control_rate):]


def main(args=None):
    run_node(SimArmNode, args)


if __name__ == '__main__':
    main()
