"""``strategic_planner``: instruction + camera image -> ordered, grounded sub-goals.

Plans on a new ``instruction`` (std_msgs/String) from the first ``camera/image_raw`` (and
``camera/depth/image_raw``, when published) stamped at or after the instruction's arrival, so
never from a frame of the scene before it (e.g. before a reset; the executor may run an
instruction callback before an image callback that was already queued), and publishes
``subgoals`` (SubGoalList, transient local). Re-publishes the plan at ``rate`` Hz, advances
``active_index`` when the measured state completes the active sub-goal, and re-plans when a
sub-goal goes stale. Bad instructions and planning failures are logged and produce an empty
plan (the arm holds), never an action. ``/diagnostics`` carries the re-publish rate/deadline
counters (:mod:`rate_monitor`).
"""
import copy
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.msg import SubGoal, SubGoalList
from hybrid_vla_ros.hierarchy.subgoal_progress import SubgoalProgress
from hybrid_vla_ros.image_bridge import CvBridgeError, imgmsg_to_cv2
from hybrid_vla_ros.nodes.conversions import arm_state, robot_kinematics, to_pose
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.planning.skills import PlanningError
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
    def __init__(self):
        super().__init__('strategic_planner')
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
        self.planner = StrategicPlanner.from_checkpoint(
            ckpt or DEFAULT_CHECKPOINT, backend=backend, model_path=vlm_path or None)
        self.kin = robot_kinematics(urdf_file)
        self.progress = SubgoalProgress(timeout=self.timeout)
        self.image = self.depth = self.info = None
        self.image_time = 0.0
        self.image_stamp = self.depth_stamp = 0.0
        self.pending_since = 0.0
        self.state = None
        self.instruction = ''
        self.pending = None
        self.plan = None
        self.msg = None
        self.plan_ms = []
        self.errors = 0
        self.monitor = RateMonitor(self.rate)

        self.pub = self.create_publisher(SubGoalList, 'subgoals', LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, 'markers', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(String, 'instruction', self.on_instruction, COMMAND)
        self.create_subscription(Image, 'camera/image_raw', self.on_image, SENSOR)
        self.create_subscription(Image, 'camera/depth/image_raw', self.on_depth, SENSOR)
        self.create_subscription(CameraInfo, 'camera/camera_info', self.on_info, SENSOR)
        self.create_subscription(JointState, js_topic, self.on_joint_state, SENSOR)
        self.create_timer(0.1, self.on_progress)
        self.create_timer(1.0 / self.rate, self.on_republish)
        self.create_timer(1.0, self.on_diagnostics)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---------------------------------------------------------------- inputs
    def on_instruction(self, msg: String) -> None:
        try:
            text = check_instruction(msg.data)
        except ValueError as e:
            self.errors += 1
            self.get_logger().error(f'rejected instruction: {e}')
            return
        if self.plan is not None and text == self.instruction and self.msg is not None \
                and self.msg.active_index < len(self.plan.subgoals):
            self.get_logger().info('same instruction while its plan runs: keeping the plan')
            return
        self.pending, self.pending_since = text, self.now()
        self.try_plan()

    def on_image(self, msg: Image) -> None:
        try:
            self.image = imgmsg_to_cv2(msg, desired_encoding='rgb8')
            self.image_time = self.now()
            self.image_stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        except CvBridgeError as e:
            self.get_logger().error(f'camera image rejected: {e}', throttle_duration_sec=2.0)
            return
        if self.pending:
            self.try_plan()

    def on_depth(self, msg: Image) -> None:
        try:
            self.depth = imgmsg_to_cv2(msg, desired_encoding='32FC1')
            self.depth_stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        except CvBridgeError as e:
            self.get_logger().error(f'depth image rejected: {e}', throttle_duration_sec=2.0)
            return
        if self.pending:
            self.try_plan()

    def on_info(self, msg: CameraInfo) -> None:
        self.info = msg

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.state = arm_state(msg, self.joint_names)
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=2.0)

    # ---------------------------------------------------------------- planning
    def try_plan(self) -> None:
        if self.image is None or self.info is None or \
                self.now() - self.image_time > self.image_timeout or \
                self.image_stamp < self.pending_since or \
                (self.depth is not None and self.depth_stamp < self.pending_since):
            self.get_logger().info('instruction waiting for a camera image',
                                   throttle_duration_sec=2.0)
            return
        text, self.pending = self.pending, None
        self.instruction = text
        t0 = time.perf_counter()
        try:
            camera = {'width': self.info.width, 'height': self.info.height,
                      'K': list(self.info.k), 'T_base_camera': self.extrinsics}
            self.plan = self.planner.plan(text, self.image, camera, depth=self.depth)
        except PlanningError as e:
            self.errors += 1
            self.plan = None
            self.get_logger().error(f'planning failed for {text!r}: {e}; holding')
            self.publish_plan(0)
            return
        self.plan_ms.append((time.perf_counter() - t0) * 1e3)
        self.progress.reset(self.now())
        steps = ', '.join(f'{s.skill}({s.object} @ {s.position[0]:.3f},{s.position[1]:.3f},'
                          f'{s.position[2]:.3f})' for s in self.plan.subgoals)
        self.get_logger().info(f'plan for {text!r}: {steps}')
        self.publish_plan(0)

    def publish_plan(self, active: int) -> None:
        msg = SubGoalList(instruction=self.instruction, active_index=active)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame
        if self.plan is not None:
            for sg in self.plan.subgoals:
                msg.subgoals.append(SubGoal(
                    id=sg.id, skill=sg.skill, object=sg.object, description=sg.description,
                    target_pose=to_pose(sg.position, sg.orientation),
                    confidence=float(sg.confidence), gripper=float(sg.gripper)))
            for name, g in self.plan.scene.items():
                msg.scene_objects.append(name)
                msg.scene_poses.append(to_pose(g['pos'], (0.0, 0.0, 0.0, 1.0)))
        self.msg = msg
        self.pub.publish(msg)
        self.publish_markers()

    def on_progress(self) -> None:
        if self.plan is None or self.state is None or self.msg is None:
            return
        i = self.msg.active_index
        if i >= len(self.plan.subgoals):
            return
        sg = self.plan.subgoals[i]
        tool, _ = self.kin.fk(self.state[:7])
        status = self.progress.update(self.now(), sg.skill, sg.position, tool, self.state[7])
        if status == 'done':
            self.get_logger().info(f'sub-goal {i + 1}/{len(self.plan.subgoals)} done: '
                                   f'{sg.skill} {sg.object}')
            self.progress.reset(self.now())
            self.publish_plan(i + 1)
            if i + 1 == len(self.plan.subgoals):
                self.get_logger().info(f'plan complete: {self.instruction!r}')
        elif status == 'stale' and not self.pending:
            # once: a re-plan waits for a camera image newer than this moment, so re-arming
            # it on every progress tick would never let it plan
            self.get_logger().warning(f'sub-goal {sg.id} stale after {self.timeout:.0f} s: '
                                   're-planning')
            self.pending, self.pending_since = self.instruction, self.now()
            self.try_plan()

    def on_republish(self) -> None:
        if self.msg is not None:
            now = self.get_clock().now()
            self.msg.header.stamp = now.to_msg()
            self.pub.publish(self.msg)
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
        st.level = DiagnosticStatus.OK if self.plan is not None else DiagnosticStatus.WARN
        st.message = 'planning' if self.plan is not None else 'no plan'
        ms = self.plan_ms[-20:] or [float('nan')]
        st.values = [KeyValue(key=k, value=str(v)) for k, v in (
            ('last_plan_ms', f'{ms[-1]:.1f}'), ('errors', self.errors),
            ('active_index', self.msg.active_index if self.msg else -1),
            ('plan_ms_max', f'{max(ms):.1f}'), ('plans', len(self.plan_ms)))] + \
            rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None):
    run_node(StrategicPlannerNode, args)


if __name__ == '__main__':
    main()
