"""The scene camera's publishing, shared by ``sim_arm`` and ``scene_camera``.

:class:`ScenePublisherNode` is the base of both nodes: it owns the MuJoCo task scene
(:class:`~hybrid_vla_ros.sim.arm_sim.ArmSim`), publishes ``camera/image_raw``,
``camera/depth/image_raw`` and ``camera/camera_info`` at ``camera_rate`` and, for evaluation
only, ``ground_truth/objects`` (MarkerArray), ``ground_truth/tool_pose`` and
``ground_truth/task_status`` (JSON: success, error_mm), and serves ``~/reset``
(std_srvs/Trigger) and ``~/set_task`` (hybrid_vla_msgs/SetTask). A subclass says when a frame
is due and what it shows (:meth:`ScenePublisherNode.frame_stamp`) and how a reset changes the
scene (:meth:`ScenePublisherNode.reset_scene`).

With ``camera_thread`` (default true) the camera timer only snapshots the simulation state
(``mj_copyData``, ~0.03 ms) and a :class:`CameraWorker` thread at normal priority (SCHED_OTHER
even when the node runs SCHED_FIFO) renders RGB + depth from the snapshot (MuJoCo releases the
GIL while rendering) and publishes them, stamped with the snapshot's stamp. A frame still
rendering when the next is due is skipped (counted in diagnostics). The ground truth of a
camera tick is computed with its snapshot and published after its images (as without the
thread), so a client that saw the status of a reset (``ground_truth/task_status``) already has
a camera image of the reset scene; a frame snapshotted before a reset is dropped, never
published after it.
"""
import json
import os
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.srv import SetTask
from hybrid_vla_ros.image_bridge import cv2_to_imgmsg
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import SENSOR
from hybrid_vla_ros.nodes.robot_params import declare_robot
from hybrid_vla_ros.sim.arm_sim import ArmSim


class CameraFailedError(RuntimeError):
    """The camera worker gave up; the node exits non-zero so its launcher reports it."""


class ScenePublisherNode(Node):
    """A node that owns the task scene and publishes its camera and ground truth (see the
    module docstring). Subclasses call :meth:`start` at the end of their ``__init__``."""

    mode = ''  # ground_truth/task_status's 'mode': 'sim' (sim_arm) or 'mirror' (scene_camera)

    def __init__(self, name: str):
        super().__init__(name)
        p = self.declare_parameter
        self.robot = declare_robot(self)
        self.joint_names = list(self.robot.joint_names)
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

        self.sim = ArmSim(self.robot, camera_width=width, camera_height=height)
        self.episode = self.sim.reset(self.task or None, int(self.seed))
        self.camera = None
        self.resets = 0  # frames snapshotted before a reset are not published after it
        self.reset_lock = threading.Lock()

        self.pub_img = self.create_publisher(Image, 'camera/image_raw', SENSOR)
        self.pub_info = self.create_publisher(CameraInfo, 'camera/camera_info', SENSOR)
        self.pub_depth = self.create_publisher(Image, 'camera/depth/image_raw', SENSOR)
        self.pub_gt = self.create_publisher(MarkerArray, 'ground_truth/objects', 10)
        self.pub_tool = self.create_publisher(PoseStamped, 'ground_truth/tool_pose', 10)
        self.pub_status = self.create_publisher(String, 'ground_truth/task_status', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def start(self) -> None:
        """The services and timers, once the subclass has its topics."""
        self.create_service(Trigger, '~/reset', self.on_reset)
        self.create_service(SetTask, '~/set_task', self.on_set_task)
        self.create_timer(1.0 / self.camera_rate, self.on_camera)
        self.create_timer(1.0, self.on_diagnostics)

    def destroy_node(self):
        """Stop the camera thread before the publishers and the GL context go away."""
        if self.camera is not None:
            self.camera.stop()
        super().destroy_node()
        self.sim.close()

    def report_before_exit(self, timeout: float = 3.0) -> None:
        """Publish the node's diagnostics (the camera's ERROR) and wait, up to ``timeout`` s,
        until a ``/diagnostics`` subscriber has it: a node that fails while its peers are
        still discovering it would otherwise exit with its last report unsent."""
        from rclpy.duration import Duration
        end = time.monotonic() + timeout
        while self.pub_diag.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)   # discovery runs in the DDS threads
        self.on_diagnostics()
        self.pub_diag.wait_for_all_acked(Duration(seconds=max(0.1, end - time.monotonic())))

    # ----------------------------------------------------------------- subclass hooks
    def frame_stamp(self):
        """The stamp of the frame due now (the scene posed for it), or None: no frame."""
        raise NotImplementedError

    def reset_scene(self, task, seed: int):
        """Re-sample the scene for (task, seed) under the reset lock; returns the episode."""
        raise NotImplementedError

    def on_diagnostics(self) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- camera
    def on_camera(self) -> None:
        stamp = self.frame_stamp()
        if stamp is None:
            return
        info = self.sim.camera_info()
        truth = self._ground_truth(stamp) if self.publish_gt else []
        if self.camera_thread:
            if self.camera is None:  # started here, after the node's scheduling is applied
                self.camera = CameraWorker(self, int(info['width']), int(info['height']))
                self.camera.start()
            elif self.camera.failed or not self.camera.is_alive():
                self.report_before_exit()  # ERROR on /diagnostics before the process ends
                raise CameraFailedError(f'camera worker ended: {self.camera.error or "?"}')
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
            m.header.stamp, m.header.frame_id = stamp, self.robot.base_frame
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
        ps.header.stamp, ps.header.frame_id = stamp, self.robot.base_frame
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
        with self.reset_lock:
            self.resets += 1
            self.episode = self.reset_scene(task or None, int(seed))
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

    def _camera_status(self) -> DiagnosticStatus:
        st = DiagnosticStatus(name=f'{self.get_name()}: camera', hardware_id='mujoco')
        cam = self.camera
        if cam is None:
            st.level, st.message = DiagnosticStatus.OK, 'rendering in the node thread' \
                if not self.camera_thread else 'not started'
        elif cam.failed or not cam.is_alive():
            st.level, st.message = DiagnosticStatus.ERROR, f'camera failed: {cam.error}'
        elif cam.failures:
            st.level, st.message = DiagnosticStatus.WARN, f'recovering from: {cam.error}'
        else:
            st.level, st.message = DiagnosticStatus.OK, 'rendering'
        if cam is not None:
            st.values = [KeyValue(key=k, value=str(v)) for k, v in (
                ('frames', cam.frames), ('skipped', cam.skipped),
                ('failures', cam.total_failures), ('last_error', cam.error))]
        return st

    def publish_diagnostics(self, statuses) -> None:
        """``statuses`` and the camera's status on ``/diagnostics``."""
        arr = DiagnosticArray(status=list(statuses) + [self._camera_status()])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


class NoRendererError(RuntimeError):
    """The off-screen renderer could not be created."""


class CameraWorker(threading.Thread):
    """Renders the scene camera from a snapshot of the simulation state, off the physics
    thread; the EGL/OSMesa context lives in this thread.

    A frame that fails (rendering or publishing) is logged and counted, releases the worker for
    the next frame and re-creates the renderers; after ``max_failures`` failures in a row the
    worker gives up (:attr:`failed`, :attr:`error`), and the node reports ERROR on
    ``/diagnostics`` and exits non-zero: a camera never dies silently.
    """

    def __init__(self, node, width: int, height: int, nice: int = 0, *,
                 max_failures: int = 3, retry_s: float = 1.0):
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
        self.max_failures, self.retry_s = int(max_failures), float(retry_s)
        self.failures = 0         # in a row
        self.total_failures = 0
        self.error = ''           # the last failure
        self.failed = False       # gave up: the node must report and exit

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
            if self.busy or self.failed:
                self.skipped += 1
                return False
            mujoco.mj_copyData(self.snapshot, self.model, data)
            self.job, self.busy = (stamp, frame_id, then, self.node.resets), True
        self.wake.set()
        return True

    def run(self) -> None:
        try:  # normal scheduling even when the process (physics) runs SCHED_FIFO
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (AttributeError, OSError):
            pass
        while not self.stopping:
            try:
                self._render_frames()
                return
            except Exception as e:  # noqa: BLE001 - any failure is reported, never silent
                if self.stopping or not self.node.context.ok():
                    return  # the node is shutting down under the frame
                with self.lock:
                    self.busy = False
                self.failures += 1
                self.total_failures += 1
                self.error = f'{e.__class__.__name__}: {e}'
                if self.failures >= self.max_failures or isinstance(e, NoRendererError):
                    self.failed = True
                    self.node.get_logger().error(
                        f'camera failed ({self.failures} in a row), giving up: {self.error}')
                    return
                self.node.get_logger().error(
                    f'camera frame failed ({self.error}); re-creating the renderer in '
                    f'{self.retry_s:g} s (attempt {self.failures + 1} of {self.max_failures})')
                time.sleep(self.retry_s)

    def _render_frames(self) -> None:
        """Render and publish each offered frame until stopped (raises on a failure)."""
        import mujoco
        rgb = depth = None
        try:
            try:
                rgb = mujoco.Renderer(self.model, self.height, self.width)
                if self.node.publish_depth:
                    depth = mujoco.Renderer(self.model, self.height, self.width)
                    depth.enable_depth_rendering()
            except Exception as e:  # no GL context (MUJOCO_GL, drivers): retrying cannot help
                # (and a second context attempt after a failed one can abort the process)
                raise NoRendererError(f'no renderer ({e.__class__.__name__}: {e}); check '
                                      'MUJOCO_GL (egl or osmesa for off-screen rendering)') from e
            while not self.stopping:
                self.wake.wait()
                self.wake.clear()
                if self.stopping:
                    break
                with self.lock:
                    if not self.busy:
                        continue  # a wake-up without a frame (after a failure)
                stamp, frame_id, then, generation = self.job
                rgb.update_scene(self.snapshot, camera=self.cam)
                image = rgb.render().copy()
                d = None
                if depth is not None:
                    depth.update_scene(self.snapshot, camera=self.cam)
                    d = depth.render().astype(np.float32)
                with self.lock:
                    self.busy = False
                with self.node.reset_lock:
                    if generation != self.node.resets or self.stopping:
                        continue  # the scene was reset while this frame rendered
                    self.node.publish_images(image, d, stamp, frame_id, then)
                self.frames += 1
                self.failures = 0
        finally:
            for r in (rgb, depth):
                if r is not None:
                    r.close()

