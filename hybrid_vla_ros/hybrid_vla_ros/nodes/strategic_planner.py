"""``strategic_planner``: instruction + camera image -> ordered, grounded sub-goals.

Plans on a new ``instruction`` (std_msgs/String) from the first ``camera/image_raw`` (and
``camera/depth/image_raw``, when published) stamped at or after the instruction's arrival, so
never from a frame of the scene before it (e.g. before a reset; the executor may run an
instruction callback before an image callback that was already queued), and publishes
``subgoals`` (SubGoalList, transient local). Re-publishes the plan at ``rate`` Hz, advances
``active_index`` when the measured state completes the active sub-goal, and re-plans when a
sub-goal goes stale. Bad instructions and planning failures are logged and produce an empty
plan (the arm holds), never an action. ``/diagnostics`` carries the re-publish rate/deadline
counters (:mod:`rate_monitor`), plan counts, re-plans and discarded plans.

The model call runs in a worker thread (:class:`~hybrid_vla_ros.hierarchy.strategic_core.
PlanWorker`: one plan at a time, the latest request wins), so the re-publish and progress timers
never wait for a plan; the result is applied in the node's executor thread (a guard condition
wakes it), and a plan started before a newer instruction, a re-plan or a reset is discarded when
it finishes. The logic is the ROS-free :class:`~hybrid_vla_ros.hierarchy.strategic_core.
StrategicCore`.

``header.stamp`` of ``subgoals`` is the time the plan was made and is kept when the plan is
re-published (also when ``active_index`` advances): it identifies the plan, so the tactical
level recomputes waypoints for a new plan even when its instruction and sub-goal ids equal the
previous one's (a re-plan, the next episode).

``~/reset`` (std_srvs/Trigger): the scene was reset (e.g. between evaluation episodes): drop the
plan, a waiting instruction and a running plan's result, and publish an empty plan (the levels
below stop; the arm holds). Without it the same instruction sent for the new scene would be taken
for a re-send while the old plan runs, and the old scene's plan kept.
"""
import copy

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.msg import SubGoal, SubGoalList
from hybrid_vla_ros.hierarchy.strategic_core import StrategicCore
from hybrid_vla_ros.image_bridge import CvBridgeError, imgmsg_to_cv2
from hybrid_vla_ros.nodes.conversions import arm_state, robot_kinematics, to_pose
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.planning.strategic_planner import DEFAULT_CHECKPOINT, StrategicPlanner

MAX_INSTRUCTION = 300


def check_instruction(text: str) -> str:
    """The instruction, stripped; ValueError for empty, over-long or non-printable text."""
    t = (text or '').strip()
    if not t:
        raise ValueError('empty instruction')
    if len(t) > MAX_INSTRUCTION:
        raise ValueError(f'instruction of {len(t)} characters (max {MAX_INSTRUCTION})')
    if not t.isprintable():
        raise ValueError('instruction contains control characters')
    return t


class StrategicPlannerNode(Node):
    """:param planner: an object with ``plan(text, image, camera, depth=None)`` to use instead
    of loading the checkpoint (tests); ``node_kwargs`` go to ``rclpy.node.Node`` (e.g.
    ``context``, ``parameter_overrides``)."""

    def __init__(self, planner=None, **node_kwargs):
        super().__init__('strategic_planner', **node_kwargs)
        p = self.declare_parameter
        self.joint_names = list(p('joint_names', [f'joint_{i}' for i in range(1, 8)],
                                  _d('arm joints')).value)
        urdf_file = p('urdf', 'arm7.urdf.xacro', _d('xacro in hybrid_vla_description')).value
        js_topic = p('joint_states_topic', '/joint_states', _d('joint state topic')).value
        self.frame = p('base_frame', 'base_link', _d('frame of the sub-goal poses')).value
        ckpt = p('checkpoint', '', _d('planner checkpoint folder; empty = shipped')).value
        backend = p('backend', 'heads', _d("step proposer: 'heads' (trained), 'llm' (local "
                                           "SmolLM2 GGUF) or 'hf_vlm' (local VLM folder)")).value
        vlm_path = p('vlm_path', '', _d("local model folder for backend 'hf_vlm' (or a GGUF/HF "
                                        "path for 'llm'); never downloaded")).value
        self.rate = p('rate', 1.0, _d('plan re-publish rate (Hz)')).value
        self.timeout = p('subgoal_timeout', 20.0, _d('sub-goal stale after (s)')).value
        self.image_timeout = p('image_timeout', 2.0, _d('camera image older = stale (s)')).value
        self.extrinsics = list(p('camera_extrinsics', [0.0] * 16, _d(
            'T_base_camera_optical, 16 values row-major (what tf2 would give)')).value)
        if len(self.extrinsics) != 16 or self.extrinsics[15] != 1.0:
            raise ValueError(f'camera_extrinsics must be a 4x4 homogeneous transform (16 values,'
                             f' last = 1), got {self.extrinsics}')
        self.planner = planner or StrategicPlanner.from_checkpoint(
            ckpt or DEFAULT_CHECKPOINT, backend=backend, model_path=vlm_path or None)
        self.kin = robot_kinematics(urdf_file)
        # the worker thread only triggers this; the result is applied in the executor thread
        self._plan_done = self.create_guard_condition(self.on_plan_done)
        self.core = StrategicCore(self._run_plan, subgoal_timeout=self.timeout,
                                  image_timeout=self.image_timeout,
                                  on_result=self._plan_done.trigger)
        self.info = None
        self.state = None
        self.msg = None
        self.monitor = RateMonitor(self.rate)

        self.pub = self.create_publisher(SubGoalList, 'subgoals', LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, 'markers', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(String, 'instruction', self.on_instruction, COMMAND)
        self.create_subscription(Image, 'camera/image_raw', self.on_image, SENSOR)
        self.create_subscription(Image, 'camera/depth/image_raw', self.on_depth, SENSOR)
        self.create_subscription(CameraInfo, 'camera/camera_info', self.on_info, SENSOR)
        self.create_subscription(JointState, js_topic, self.on_joint_state, SENSOR)
        self.create_service(Trigger, '~/reset', self.on_reset)
        self.create_timer(0.1, self.on_progress)
        self.create_timer(1.0 / self.rate, self.on_republish)
        self.create_timer(1.0, self.on_diagnostics)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def destroy_node(self):
        self.core.close()
        return super().destroy_node()

    # ---------------------------------------------------------------- inputs
    def on_instruction(self, msg: String) -> None:
        try:
            text = check_instruction(msg.data)
        except ValueError as e:
            self.core.errors += 1
            self.get_logger().error(f'rejected instruction: {e}')
            return
        if not self.core.request(text, self.now()):
            self.get_logger().info('same instruction while it is planned or its plan runs: '
                                   'keeping the plan')
            return
        self._log_waiting()

    def on_image(self, msg: Image) -> None:
        try:
            image = imgmsg_to_cv2(msg, desired_encoding='rgb8')
        except CvBridgeError as e:
            self.get_logger().error(f'camera image rejected: {e}', throttle_duration_sec=2.0)
            return
        self.core.observe_image(image, Time.from_msg(msg.header.stamp).nanoseconds * 1e-9,
                                self.now())

    def on_depth(self, msg: Image) -> None:
        try:
            depth = imgmsg_to_cv2(msg, desired_encoding='32FC1')
        except CvBridgeError as e:
            self.get_logger().error(f'depth image rejected: {e}', throttle_duration_sec=2.0)
            return
        self.core.observe_depth(depth, Time.from_msg(msg.header.stamp).nanoseconds * 1e-9,
                                self.now())

    def on_info(self, msg: CameraInfo) -> None:
        self.info = msg
        self.core.set_camera({'width': msg.width, 'height': msg.height, 'K': list(msg.k),
                              'T_base_camera': self.extrinsics})

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.state = arm_state(msg, self.joint_names)
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=2.0)

    def on_reset(self, request, response):
        was = self.core.instruction
        self.core.reset(self.now())
        self.publish_plan()
        response.success = True
        response.message = f'plan dropped ({was!r})' if was else 'no plan'
        self.get_logger().info(f'reset: {response.message}')
        return response

    # ---------------------------------------------------------------- planning
    def _run_plan(self, req):
        """In the worker thread: the model call only (no node state is touched)."""
        return self.planner.plan(req.instruction, req.image, req.camera, depth=req.depth)

    def _log_waiting(self) -> None:
        if self.core.waiting_for_image():
            self.get_logger().info('instruction waiting for a camera image',
                                   throttle_duration_sec=2.0)

    def on_plan_done(self) -> None:
        for kind, r in self.core.collect(self.now()):
            text = r.request.instruction
            if kind == 'discarded':
                self.get_logger().info(f'discarded a plan for {text!r} made before a newer '
                                       f'request or a reset ({r.ms:.0f} ms)')
            elif kind == 'error':
                self.get_logger().error(f'planning failed for {text!r}: {r.error}; holding')
                self.publish_plan()
            else:
                steps = ', '.join(f'{s.skill}({s.object} @ {s.position[0]:.3f},'
                                  f'{s.position[1]:.3f},{s.position[2]:.3f})'
                                  for s in r.plan.subgoals)
                self.get_logger().info(f'plan for {text!r} ({r.request.reason}, {r.ms:.0f} ms):'
                                       f' {steps}')
                self.publish_plan()

    def publish_plan(self) -> None:
        """Publish the core's plan (``header.stamp`` = the plan's stamp, see the module)."""
        c = self.core
        msg = SubGoalList(instruction=c.instruction, active_index=c.active)
        stamp = c.stamp if c.stamp is not None else self.now()
        msg.header.stamp = Time(nanoseconds=int(round(stamp * 1e9))).to_msg()
        msg.header.frame_id = self.frame
        if c.plan is not None:
            for sg in c.plan.subgoals:
                msg.subgoals.append(SubGoal(
                    id=sg.id, skill=sg.skill, object=sg.object, description=sg.description,
                    target_pose=to_pose(sg.position, sg.orientation),
                    confidence=float(sg.confidence), gripper=float(sg.gripper)))
            for name, g in c.plan.scene.items():
                msg.scene_objects.append(name)
                msg.scene_poses.append(to_pose(g['pos'], (0.0, 0.0, 0.0, 1.0)))
        self.msg = msg
        self.pub.publish(msg)
        self.publish_markers()

    def on_progress(self) -> None:
        c = self.core
        if c.pending is not None:
            c.poll(self.now())   # e.g. the camera info came after the image
        if self.state is None or not c.running:
            return
        i, sg = c.active, c.plan.subgoals[c.active]
        tool, _ = self.kin.fk(self.state[:7])
        status = c.update_progress(self.now(), tool, self.state[7])
        if status == 'done':
            n = len(c.plan.subgoals)
            self.get_logger().info(f'sub-goal {i + 1}/{n} done: {sg.skill} {sg.object}')
            self.publish_plan()
            if c.active == n:
                self.get_logger().info(f'plan complete: {c.instruction!r}')
        elif status == 'replan':
            self.get_logger().warning(f'sub-goal {sg.id} stale after {self.timeout:.0f} s: '
                                      're-planning')
            self._log_waiting()

    def on_republish(self) -> None:
        if self.msg is not None:
            now = self.get_clock().now()
            self.pub.publish(self.msg)   # same stamp: the same plan (see the module)
            self.monitor.tick(now.nanoseconds * 1e-9)
        else:
            self.monitor.idle()

    def publish_markers(self) -> None:
        arr = MarkerArray(markers=[Marker(ns='subgoals', action=Marker.DELETEALL)])
        for k, sg in enumerate(self.msg.subgoals):
            for kind in (Marker.SPHERE, Marker.TEXT_VIEW_FACING):
                m = Marker(ns='subgoals', id=2 * k + (kind == Marker.TEXT_VIEW_FACING),
                           type=kind)
                m.header = self.msg.header
                # a copy: the text marker is lifted, the sub-goal's own pose must not be
                m.pose = copy.deepcopy(sg.target_pose)
                m.scale.x = m.scale.y = m.scale.z = 0.02
                active = k == self.msg.active_index
                m.color.r, m.color.g, m.color.b, m.color.a = (1.0, 0.6, 0.0, 1.0) if active \
                    else (0.6, 0.6, 0.6, 0.7)
                if kind == Marker.TEXT_VIEW_FACING:
                    m.text = f'{k + 1}. {sg.skill} {sg.object}'
                    m.pose.position.z += 0.04
                arr.markers.append(m)
        self.pub_markers.publish(arr)

    def on_diagnostics(self) -> None:
        st = DiagnosticStatus(name='strategic_planner', hardware_id='planner')
        c = self.core
        st.level = DiagnosticStatus.OK if c.plan is not None else DiagnosticStatus.WARN
        st.message = 'planning' if c.plan is not None else 'no plan'
        ms = c.plan_ms[-20:] or [float('nan')]
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('last_plan_ms', f'{ms[-1]:.1f}'), ('errors', c.errors),
            ('active_index', self.msg.active_index if self.msg else -1),
            ('plan_ms_max', f'{max(ms):.1f}'), ('plans', len(c.plan_ms)),
            ('replans', c.replans), ('discarded_plans', c.discarded),
            ('planning', c.planning))] + rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None):
    run_node(StrategicPlannerNode, args)


if __name__ == '__main__':
    main()
