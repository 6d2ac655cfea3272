"""``sim_arm``: the MuJoCo arm behind the interfaces ros2_control would offer.

Publishes ``/joint_states`` (arm + finger joints, position and velocity), ``camera/image_raw``,
``camera/depth/image_raw`` and ``camera/camera_info``; accepts
``/forward_position_controller/commands``, ``/joint_trajectory_controller/joint_trajectory`` and
the gripper controller's command (finger position in metres, like a forward position controller
on ``finger_left_joint``). Out-of-limit
commands are clamped and reported; malformed ones are rejected and the arm holds.
Ground truth for evaluation only: ``ground_truth/objects`` (MarkerArray),
``ground_truth/tool_pose`` and ``ground_truth/task_status`` (JSON: success, error_mm).
Services ``~/reset`` (std_srvs/Trigger) and ``~/set_task``
(hybrid_vla_msgs/SetTask).

The 100 Hz physics tick (step, publish ``/joint_states``) is the plant's control path and never
waits for the camera: with ``camera_thread`` (default true) the camera timer only snapshots the
simulation state (``mj_copyData``, ~0.03 ms) and a worker thread at normal priority (SCHED_OTHER
even when the node runs SCHED_FIFO) renders RGB + depth from the snapshot (MuJoCo releases
the GIL while rendering) and publishes them, stamped with the snapshot's time. A frame still
rendering when the next is due is skipped (counted in diagnostics). The ground truth of a
camera tick is computed with its snapshot and published after its images (as without the
thread), so a client that saw the status of a reset (``ground_truth/task_status``) already has
a camera image of the reset scene; a frame snapshotted before a reset is dropped, never
published after it.

``mode: mirror`` (the ``scene_camera`` node of ``hardware:=mock``; default ``mode: sim``): the
same scene and camera for an arm someone else owns (ros2_control mock_components or real
hardware). The node then neither steps physics nor owns the arm: it publishes no
``/joint_states`` and no commands, and subscribes to none. It subscribes to ``/joint_states``
(sensor-data QoS), validates each message (:class:`~hybrid_vla_ros.sim.scene_mirror.SceneMirror`:
sizes, duplicate/unknown/missing joints, NaN/Inf, far out of limits -> a throttled error, the
last good state is kept), poses the arm (and fingers) from the latest good state with
``mj_forward`` at ``camera_rate`` and publishes ``camera/*`` (and ``ground_truth/*`` when
enabled) stamped with that joint state's stamp. A frame is published only for a joint state
newer than the last frame's, so a silent arm gives a silent (stale) camera, never a frame that
claims to be new. The objects of the task scene stay at their reset poses (not simulated);
``~/set_task`` and ``~/reset`` re-sample them and leave the arm where the joint states put it.
"""
import json
import os
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.srv import SetTask
from hybrid_vla_ros.image_bridge import cv2_to_imgmsg
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, SENSOR
from hybrid_vla_ros.nodes.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.sim.arm_sim import FINGER_JOINTS, FINGER_OPEN, ArmSim
from hybrid_vla_ros.sim.controller_interfaces import (
    CommandError,
    TrajectoryFollower,
    clamp_to_limits,
    validate_forward_command,
)
from hybrid_vla_ros.sim.scene_mirror import JointStateError, SceneMirror

MODES = ('sim', 'mirror')


class SimArmNode(Node):
    """Adapter between ROS topics/services and :class:`ArmSim` (``mode: sim``), or the scene
    camera of an arm owned by ros2_control (``mode: mirror``, :class:`SceneMirror`)."""

    def __init__(self):
        super().__init__('sim_arm')
        p = self.declare_parameter
        self.mode = p('mode', 'sim', _d(
            "sim: simulate the arm (physics, /joint_states, controller commands); mirror: only "
            "render the scene camera, posed by the /joint_states of an arm owned by "
            "ros2_control (mock_components or real hardware)")).value
        if self.mode not in MODES:
            raise ValueError(f"mode:={self.mode!r}: expected one of {', '.join(MODES)}")
        self.joint_names = list(p('joint_names', [f'joint_{i}' for i in range(1, 8)],
                                  _d('arm joints, in command order')).value)
        js_topic = p('joint_states_topic', '/joint_states', _d('joint state topic')).value
        self.camera_rate = p('camera_rate', 10.0, _d('camera publish rate (Hz)')).value
        width = p('camera_width', 128, _d('camera image width (px)')).value
        height = p('camera_height', 128, _d('camera image height (px)')).value
        self.task = p('task', 'pick_place', _d('initial task of the suite')).value
        self.seed = p('seed', 0, _d('initial episode seed')).value
        self.publish_depth = p('publish_depth', True,
                               _d('also publish camera/depth/image_raw (32FC1, m)')).value
        self.publish_gt = p('publish_ground_truth', True,
                            _d('publish object poses (evaluation only)')).value
        self.camera_thread = p('camera_thread', True, _d(
            'render the camera in a low-priority worker thread, off the physics tick')).value
        if self.camera_rate <= 0:
            raise ValueError('camera_rate must be > 0')

        self.sim = ArmSim(camera_width=width, camera_height=height)
        self.episode = self.sim.reset(self.task or None, int(self.seed))
        self.camera = None
        self.resets = 0  # frames snapshotted before a reset are not published after it
        self.reset_lock = threading.Lock()
        self.mirror = None
        self.follower = None

        self.pub_img = self.create_publisher(Image, 'camera/image_raw', SENSOR)
        self.pub_info = self.create_publisher(CameraInfo, 'camera/camera_info', SENSOR)
        self.pub_depth = self.create_publisher(Image, 'camera/depth/image_raw', SENSOR)
        self.pub_gt = self.create_publisher(MarkerArray, 'ground_truth/objects', 10)
        self.pub_tool = self.create_publisher(PoseStamped, 'ground_truth/tool_pose', 10)
        self.pub_status = self.create_publisher(String, 'ground_truth/task_status', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        if self.mode == 'mirror':
            self._init_mirror(js_topic)
        else:
            self._init_sim(js_topic)
        self.create_service(Trigger, '~/reset', self.on_reset)
        self.create_service(SetTask, '~/set_task', self.on_set_task)
        self.create_timer(1.0 / self.camera_rate, self.on_camera)
        self.create_timer(1.0, self.on_diagnostics)

    def _init_sim(self, js_topic: str) -> None:
        p = self.declare_parameter
        forward_topic = p('forward_command_topic', '/forward_position_controller/commands',
                          _d('forward position controller command topic')).value
        traj_topic = p('trajectory_topic', '/joint_trajectory_controller/joint_trajectory',
                       _d('joint trajectory controller topic')).value
        grip_topic = p('gripper_command_topic', '/gripper_controller/commands',
                       _d('gripper command: finger_left_joint position (m)')).value
        self.control_rate = p('control_rate', 100.0, _d('joint state / control rate (Hz)')).value
        self.rtf = p('real_time_factor', 1.0, _d('sim seconds per wall second')).value
        if self.control_rate <= 0 or self.rtf <= 0:
            raise ValueError('control_rate and real_time_factor must be > 0')
        if list(self.joint_names) != [f'joint_{i}' for i in range(1, 8)]:
            raise ValueError(f'sim_arm simulates joint_1..joint_7, got joint_names '
                             f'{self.joint_names}')
        self.follower = TrajectoryFollower(self.joint_names)
        self.substeps = max(1, int(round(1.0 / (self.control_rate * self.sim.timestep))))
        self.n_clamped = 0
        self.n_rejected = 0
        self._tick_ms = []
        self._js = JointState(name=self.joint_names + list(FINGER_JOINTS))
        self.monitor = RateMonitor(self.control_rate * self.rtf)
        self.pub_js = self.create_publisher(JointState, js_topic, SENSOR)
        self.create_subscription(Float64MultiArray, forward_topic, self.on_forward, COMMAND)
        self.create_subscription(JointTrajectory, traj_topic, self.on_trajectory, COMMAND)
        self.create_subscription(Float64MultiArray, grip_topic, self.on_gripper, COMMAND)
        self.create_timer(1.0 / (self.control_rate * self.rtf), self.on_tick)
        self.get_logger().info(
            f"sim_arm: task {self.task!r} seed {self.seed}, physics {1 / self.sim.timestep:.0f} "
            f"Hz x{self.substeps} per {self.control_rate:.0f} Hz tick, RTF {self.rtf}")

    def _init_mirror(self, js_topic: str) -> None:
        p = self.declare_parameter
        gripper = p('gripper_joint', FINGER_JOINTS[0], _d('gripper joint (required in joint '
                                                          'states)')).value
        extra = list(p('extra_joints', [''], _d(
            'joints that may appear in joint states and are ignored (other devices); any '
            'other joint the model does not have rejects the message')).value)
        tol = p('limit_tolerance', 0.1, _d('reject positions beyond a URDF limit by more than '
                                           'this (rad or m; negative = no check)')).value
        self.mirror = SceneMirror(self.sim, self.joint_names, gripper,
                                  [j for j in extra if j], tol)
        self._frame_seq = 0      # mirror.seq of the last published frame
        self._js_time = None     # monotonic time of the last good joint state
        self.create_subscription(JointState, js_topic, self.on_joint_state, SENSOR)
        self.get_logger().info(
            f'mode mirror: scene camera posed by {js_topic} (no physics, no commands), task '
            f'{self.task!r} seed {self.seed}, camera {self.camera_rate:g} Hz')

    def destroy_node(self):
        """Stop the camera thread before the publishers and the GL context go away."""
        if self.camera is not None:
            self.camera.stop()
        super().destroy_node()
        self.sim.close()

    # ----------------------------------------------------------------- mirror
    def on_joint_state(self, msg: JointState) -> None:
        stamp = msg.header.stamp
        if stamp.sec == 0 and stamp.nanosec == 0:  # an unstamped publisher: time of arrival
            stamp = self.get_clock().now().to_msg()
        try:
            self.mirror.update(msg.name, msg.position, stamp)
        except JointStateError as e:
            self.get_logger().error(f'joint_states ignored: {e}; keeping the last good state',
                                    throttle_duration_sec=1.0)
            return
        self._js_time = time.monotonic()

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
            self.get_logger().error(f'rejected forward command: {e}; holding position')
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
            self.get_logger().error(f'rejected trajectory: {e}; holding position')

    def on_gripper(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != 1 or not np.isfinite(msg.data[0]):
            self.n_rejected += 1
            self.get_logger().error(f'rejected gripper command {list(msg.data)}: expected one '
                                    'finite finger position (m); holding')
            return
        self.sim.set_gripper(1.0 - float(msg.data[0]) / FINGER_OPEN)

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
        js.velocity = self.sim.joint_velocities().tolist() + [0.0, 0.0]
        self.pub_js.publish(js)
        work = time.perf_counter() - t0
        self.monitor.tick(time.monotonic(), work)
        self._tick_ms.append(work * 1e3)

    def on_camera(self) -> None:
        if self.mirror is not None:
            if self.mirror.seq == self._frame_seq:  # no joint state since the last frame
                if not self.mirror.has_state:
                    self.get_logger().warning('camera waiting for a valid joint state',
                                              throttle_duration_sec=5.0)
                return
            self._frame_seq = self.mirror.seq
            self.mirror.apply()
            stamp = self.mirror.stamp  # the image shows the arm at this joint state
        else:
            stamp = self.get_clock().now().to_msg()
        info = self.sim.camera_info()
        truth = self._ground_truth(stamp) if self.publish_gt else []
        if self.camera_thread:
            if self.camera is None:  # started here, after the node's scheduling is applied
                self.camera = CameraWorker(self, int(info['width']), int(info['height']))
                self.camera.start()
            # the worker publishes the ground truth after the images; none if it is busy
            self.camera.offer(self.sim.data, stamp, info['frame_id'], truth)
        else:
            self.publish_images(self.sim.render(), self.sim.render_depth() if
                                self.publish_depth else None, stamp, info['frame_id'], truth)
        ci = CameraInfo()
        ci.header.stamp, ci.header.frame_id = stamp, info['frame_id']
        ci.width, ci.height = int(info['width']), int(info['height'])
        ci.distortion_model = 'plumb_bob'
        ci.d = [0.0] * 5
        k = np.asarray(info['K'], dtype=float)
        ci.k = k.reshape(-1).tolist()
        ci.r = np.eye(3).reshape(-1).tolist()
        ci.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1).tolist()
        self.pub_info.publish(ci)

    def publish_images(self, rgb, depth, stamp, frame_id, then=()) -> None:
        """Depth first: a consumer triggered by the RGB image then has its depth already;
        ``then``: (publisher, message) pairs published after the images."""
        if depth is not None:
            msg = cv2_to_imgmsg(depth.astype('float32'), encoding='32FC1')
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
            self.pub_depth.publish(msg)
        img = cv2_to_imgmsg(rgb, encoding='rgb8')
        img.header.stamp, img.header.frame_id = stamp, frame_id
        self.pub_img.publish(img)
        for pub, msg in then:
            pub.publish(msg)

    def _ground_truth(self, stamp) -> list:
        """(publisher, message) pairs of the evaluation-only ground truth, now."""
        out = []
        arr = MarkerArray()
        for i, (name, o) in enumerate(sorted(self.sim.object_poses().items())):
            m = Marker()
            m.header.stamp, m.header.frame_id = stamp, 'base_link'
            m.ns, m.id, m.type = name, i, Marker.CUBE
            pos, quat = o['pos'], o['quat']
            m.pose.position.x, m.pose.position.y, m.pose.position.z = map(float, pos)
            (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
             m.pose.orientation.w) = map(float, quat)
            m.scale.x = m.scale.y = m.scale.z = 0.04
            m.color.a = 1.0
            m.text = f"{o.get('color', '')} {o.get('shape', o.get('kind', ''))}".strip()
            arr.markers.append(m)
        out.append((self.pub_gt, arr))
        pos, quat = self.sim.tool_pose()
        ps = PoseStamped()
        ps.header.stamp, ps.header.frame_id = stamp, 'base_link'
        ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = map(float, pos)
        (ps.pose.orientation.x, ps.pose.orientation.y, ps.pose.orientation.z,
         ps.pose.orientation.w) = map(float, quat)
        out.append((self.pub_tool, ps))
        if self.sim.task is not None:
            status = {'task': self.task, 'seed': int(self.seed), 'mode': self.mode,
                      'success': bool(self.sim.task.success(self.sim)),
                      'error_mm': float(self.sim.task.error_mm(self.sim)),
                      'sim_time': float(self.sim.time)}
            out.append((self.pub_status, String(data=json.dumps(status))))
        return out

    # ----------------------------------------------------------------- services
    def _reset(self, task: str, seed: int) -> str:
        if self.follower is not None:
            self.follower.clear()
        with self.reset_lock:
            self.resets += 1
            if self.mirror is not None:  # new objects; the arm stays where its joint states say
                self.episode = self.mirror.reset(task or None, int(seed))
            else:
                self.episode = self.sim.reset(task or None, int(seed))
        self.task, self.seed = task, int(seed)
        self.get_logger().info(f'reset: task {task!r} seed {seed}')
        return self.sim.task.instruction(int(seed)) if self.sim.task is not None else ''

    def on_reset(self, request, response):
        self._reset(self.task, self.seed)
        response.success, response.message = True, f'reset {self.task} seed {self.seed}'
        return response

    def on_set_task(self, request, response):
        try:
            response.instruction = self._reset(request.task or self.task, request.seed)
            response.success, response.message = True, f'task {self.task} seed {self.seed}'
        except (KeyError, ValueError) as e:
            response.success, response.message = False, f'set_task failed: {e}'
            self.get_logger().error(response.message)
        return response

    def on_diagnostics(self) -> None:
        if self.mirror is not None:
            self._mirror_diagnostics()
            return
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
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)
        self._tick_ms = self._tick_ms[-int(self.control_rate):]

    def _mirror_diagnostics(self) -> None:
        m = self.mirror
        st = DiagnosticStatus(name=f'{self.get_name()}: scene mirror', hardware_id='mujoco')
        age = None if self._js_time is None else time.monotonic() - self._js_time
        if age is None:
            st.level, st.message = DiagnosticStatus.WARN, 'no valid joint state yet'
        elif age > 1.0:
            st.level, st.message = DiagnosticStatus.WARN, f'no valid joint state for {age:.1f} s'
        else:
            st.level, st.message = DiagnosticStatus.OK, f'mirroring joint states ({age:.3f} s old)'
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('joint_states_accepted', m.seq), ('joint_states_rejected', m.rejected),
            ('last_rejection', m.last_error), ('task', self.task), ('seed', self.seed),
            ('camera_frames', self.camera.frames if self.camera else -1),
            ('camera_skipped', self.camera.skipped if self.camera else 0))]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


class CameraWorker(threading.Thread):
    """Renders the scene camera from a snapshot of the simulation state, off the physics
    thread; the EGL/OSMesa context lives in this thread."""

    def __init__(self, node: SimArmNode, width: int, height: int, nice: int = 0):
        super().__init__(name='sim_arm_camera', daemon=True)
        import mujoco
        self.node, self.model = node, node.sim.model
        self.width, self.height, self.nice = width, height, nice
        self.cam = node.sim.model.camera('scene_cam').id
        self.snapshot = mujoco.MjData(self.model)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.busy = False
        self.frames = self.skipped = 0
        self.job = None
        self.stopping = False

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the frame in progress, close the renderers in this thread and end it (a
        daemon thread still rendering while the process exits can crash it in the GL driver)."""
        self.stopping = True
        self.wake.set()
        if self.is_alive():
            self.join(timeout)

    def offer(self, data, stamp, frame_id, then=()) -> bool:
        """Snapshot ``data`` for the next frame; False (frame skipped) while one renders."""
        import mujoco
        with self.lock:
            if self.busy:
                self.skipped += 1
                return False
            mujoco.mj_copyData(self.snapshot, self.model, data)
            self.job, self.busy = (stamp, frame_id, then, self.node.resets), True
        self.wake.set()
        return True

    def run(self) -> None:
        import mujoco
        try:  # normal scheduling even when the process (physics) runs SCHED_FIFO
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (AttributeError, OSError):
            pass
        rgb = mujoco.Renderer(self.model, self.height, self.width)
        depth = None
        if self.node.publish_depth:
            depth = mujoco.Renderer(self.model, self.height, self.width)
            depth.enable_depth_rendering()
        try:
            while not self.stopping:
                self.wake.wait()
                self.wake.clear()
                if self.stopping:
                    break
                stamp, frame_id, then, generation = self.job
                rgb.update_scene(self.snapshot, camera=self.cam)
                image = rgb.render().copy()
                d = None
                if depth is not None:
                    depth.update_scene(self.snapshot, camera=self.cam)
                    d = depth.render().astype(np.float32)
                with self.lock:
                    self.busy = False
                try:
                    with self.node.reset_lock:
                        if generation != self.node.resets or self.stopping:
                            continue  # the scene was reset while this frame rendered
                        self.node.publish_images(image, d, stamp, frame_id, then)
                except Exception:  # the context shut down under us: the node is stopping
                    return
                self.frames += 1
        finally:
            for r in (rgb, depth):
                if r is not None:
                    r.close()


def main(args=None):
    run_node(SimArmNode, args)


if __name__ == '__main__':
    main()
