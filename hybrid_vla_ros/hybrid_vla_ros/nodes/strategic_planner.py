"""``strategic_planner``: instruction + camera image -> ordered, grounded sub-goals.

Plans on a new ``instruction`` (std_msgs/String) from the first ``camera/image_raw`` (and
``camera/depth/image_raw``, when published) stamped at or after the instruction's arrival, so
never from a frame of the scene before it (e.g. before a reset; the executor may run an
instruction callback before an image callback that was already queued), and publishes
``subgoals`` (SubGoalList, transient local). Re-publishes the plan at ``rate`` Hz, advances
``active_index`` when the measured state completes the active sub-goal, and re-plans when a
sub-goal goes stale. Bad instructions and planning failures are logged and produce an empty
plan (the arm holds), never an action. ``/diagnostics`` carries the re-publish rate/deadline
counters (:mod:`hybrid_vla_ros.execution.rate_monitor`), plan counts, re-plans and discarded plans.

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

``execute_instruction`` (hybrid_vla_msgs/action/ExecuteInstruction) is the same as an
``instruction`` with a goal's life: a valid instruction is accepted (always planned afresh),
an empty, over-long or non-printable one is rejected (the reason is logged); feedback follows
the plan (state, active sub-goal, the whole ``SubGoalList``) on every change; the goal succeeds
when every sub-goal is done and is aborted, with the reason in the result's ``message``, when
planning fails (an instruction that cannot be planned in this scene), a new goal or an
``instruction`` message preempts it, or ``~/reset`` drops it. Canceling drops the plan (an empty
plan is published: the arm holds). The ``instruction`` topic stays for ``ros2 topic pub``.

``~/reset`` (std_srvs/Trigger): the scene was reset (e.g. between evaluation episodes): drop the
plan, a waiting instruction and a running plan's result, and publish an empty plan (the levels
below stop; the arm holds). Without it the same instruction sent for the new scene would be taken
for a re-send while the old plan runs, and the old scene's plan kept.
"""
import copy
from dataclasses import dataclass
import math
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.action import ExecuteInstruction
from hybrid_vla_msgs.msg import SubGoal, SubGoalList
from hybrid_vla_ros.execution.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.hierarchy.strategic_core import StrategicCore, check_instruction
from hybrid_vla_ros.image_bridge import CvBridgeError, imgmsg_to_cv2
from hybrid_vla_ros.nodes.conversions import RobotAdapter, to_pose
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.robot_params import declare_robot, scene_camera
from hybrid_vla_ros.planning.skills import plan_bounds
from hybrid_vla_ros.planning.strategic_planner import DEFAULT_CHECKPOINT, StrategicPlanner

ACTION = 'execute_instruction'
LABEL_LIFT = 0.04   # m: a sub-goal's text marker floats this far above its sphere


@dataclass
class ActiveGoal:
    """The goal being worked on: its handle, the core's task it asked for, and the outcome
    ``(status, message)`` its execute coroutine waits for."""

    handle: ServerGoalHandle
    task: int
    outcome: Future
    last_feedback: Optional[tuple] = None
    # progress of the last plan it executed (a failed re-plan leaves no plan to read it from)
    subgoals_total: int = 0
    subgoals_done: int = 0


class StrategicPlannerNode(Node):
    """:param planner: an object with ``plan(text, image, camera, depth=None)`` to use instead
    of loading the checkpoint (tests); ``node_kwargs`` go to ``rclpy.node.Node`` (e.g.
    ``context``, ``parameter_overrides``)."""

    def __init__(self, planner=None, **node_kwargs):
        super().__init__('strategic_planner', **node_kwargs)
        p = self.declare_parameter
        self.robot = robot = declare_robot(self)
        self.adapter = RobotAdapter(robot)
        self.frame = robot.base_frame
        ckpt = p('checkpoint_dir', '', _d('planner checkpoint folder; empty = shipped')).value
        backend = p('backend', 'heads', _d("step proposer: 'heads' (trained), 'llm' (local "
                                           "SmolLM2 GGUF) or 'hf_vlm' (local VLM folder)")).value
        vlm_path = p('vlm_path', '', _d("local model folder for backend 'hf_vlm' (or a GGUF/HF "
                                        "path for 'llm'); never downloaded")).value
        self.rate = p('rate', 1.0, _d('plan re-publish rate (Hz)')).value
        self.timeout = p('subgoal_timeout', 20.0, _d('sub-goal stale after (s)')).value
        self.image_timeout = p('image_timeout', 2.0, _d('camera image older = stale (s)')).value
        # T_base_camera_optical (16 values, row-major): the robot's camera_extrinsics or the
        # simulator's default mounting
        self.extrinsics = scene_camera(robot).ravel().tolist()
        self.planner = planner or StrategicPlanner.from_checkpoint(
            ckpt or DEFAULT_CHECKPOINT, backend=backend, model_path=vlm_path or None)
        self.kin = robot.kinematics()
        self.planner.bounds = plan_bounds(self.kin.reach())   # no target beyond the arm's reach
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
        self.create_subscription(Image, robot.config.camera_topic, self.on_image, SENSOR)
        self.create_subscription(Image, 'camera/depth/image_raw', self.on_depth, SENSOR)
        self.create_subscription(CameraInfo, 'camera/camera_info', self.on_info, SENSOR)
        self.create_subscription(JointState, robot.config.joint_states_topic,
                                 self.on_joint_state, SENSOR)
        self.create_service(Trigger, '~/reset', self.on_reset)
        self.goal: Optional[ActiveGoal] = None
        self.rejected = 0
        self.last_rejection = ''
        self.action_server = ActionServer(
            self, ExecuteInstruction, ACTION, execute_callback=self.execute_goal,
            goal_callback=self.on_goal, cancel_callback=self.on_cancel,
            callback_group=ReentrantCallbackGroup())
        self.create_timer(0.1, self.on_progress)
        self.create_timer(1.0 / self.rate, self.on_republish)
        self.create_timer(1.0, self.on_diagnostics)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def destroy_node(self):
        """Stop the planning thread first: it must never run on a destroyed node."""
        if not self.core.close():
            self.get_logger().warning('a plan still running at shutdown is abandoned')
        self.action_server.destroy()
        return super().destroy_node()

    # ---------------------------------------------------------------- inputs
    def on_instruction(self, msg: String) -> None:
        try:
            text = check_instruction(msg.data)
        except ValueError as e:
            self.core.errors += 1
            self.get_logger().error(f'rejected instruction: {e}', throttle_duration_sec=1.0)
            return
        if not self.core.request(text, self.now()):
            self.get_logger().info('same instruction while it is planned or its plan runs: '
                                   'keeping the plan')
            return
        self._finish_goal('aborted', 'preempted by an instruction on the topic')
        self._log_waiting()

    # ---------------------------------------------------------------- the action
    def on_goal(self, request) -> GoalResponse:
        try:
            check_instruction(request.instruction)
        except ValueError as e:
            self.rejected += 1
            self.last_rejection = str(e)
            self.get_logger().error(f'rejected goal: {e}', throttle_duration_sec=1.0)
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def on_cancel(self, handle) -> CancelResponse:
        if self.goal is None or self.goal.handle is not handle:
            return CancelResponse.REJECT
        self._finish_goal('canceled', 'canceled: plan dropped, holding')
        self.core.reset(self.now())   # cancel = drop the plan; the levels below hold
        self.publish_plan()
        return CancelResponse.ACCEPT

    async def execute_goal(self, handle: ServerGoalHandle):
        """One goal from its start to its end; the callbacks that decide the end set the
        goal's outcome (:meth:`_finish_goal`)."""
        text = check_instruction(handle.request.instruction)
        self._finish_goal('aborted', 'preempted by a new goal')
        self.core.request(text, self.now(), fresh=True)
        goal = self.goal = ActiveGoal(handle, self.core.task, Future())
        self.get_logger().info(f'goal accepted: {text!r}')
        self._log_waiting()
        self._update_goal()
        status, message, result = await goal.outcome
        {'succeeded': handle.succeed, 'canceled': handle.canceled}.get(status, handle.abort)()
        self.get_logger().info(f'goal {status}: {message}')
        return result

    def _finish_goal(self, status: str, message: str) -> None:
        """End the active goal (if any) with the plan's state as it is now."""
        goal, self.goal = self.goal, None
        if goal is None:
            return
        c = self.core
        if c.plan is not None and c.task == goal.task:
            goal.subgoals_total = len(c.plan.subgoals)
            goal.subgoals_done = min(c.active, goal.subgoals_total)
        error = float('nan')
        if c.plan is not None and c.plan.subgoals and self.state is not None:
            tool, _ = self.kin.fk(self.adapter.arm(self.state))
            error = 1e3 * math.dist(tool, c.plan.subgoals[-1].position)
        result = ExecuteInstruction.Result(
            success=status == 'succeeded', error_mm=error, message=message,
            subgoals_done=goal.subgoals_done, subgoals_total=goal.subgoals_total)
        goal.outcome.set_result((status, message, result))

    def _update_goal(self) -> None:
        """After every change of the plan: end the goal if its work ended, else send feedback
        when something changed."""
        goal = self.goal
        if goal is None:
            return
        ended = self.core.outcome(goal.task)
        if ended is not None:
            self._finish_goal(*ended)
            return
        c = self.core
        state = ('waiting_for_image' if c.pending is not None else 'planning') \
            if c.planning else 'executing'
        key = (state, c.active, c.stamp)
        if key == goal.last_feedback:
            return
        goal.last_feedback = key
        if c.plan is not None:
            goal.subgoals_total, goal.subgoals_done = len(c.plan.subgoals), c.active
        fb = ExecuteInstruction.Feedback(state=state, active_index=c.active)
        if state == 'executing' and self.msg is not None:
            fb.plan = self.msg
            if c.active < len(self.msg.subgoals):
                fb.active_subgoal = self.msg.subgoals[c.active]
        goal.handle.publish_feedback(fb)

    def on_image(self, msg: Image) -> None:
        try:
            image = imgmsg_to_cv2(msg, desired_encoding='rgb8')
        except CvBridgeError as e:
            self.get_logger().error(f'camera image rejected: {e}', throttle_duration_sec=2.0)
            return
        if self.core.observe_image(image, Time.from_msg(msg.header.stamp).nanoseconds * 1e-9,
                                   self.now()):
            self._update_goal()   # planning started

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
            self.state = self.adapter.state(msg)
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=2.0)

    def on_reset(self, request, response):
        was = self.core.instruction
        self._finish_goal('aborted', 'the scene was reset')
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
        self._update_goal()

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
            for name, g in c.plan.scene.items():   # the grounded yaw as a rotation about z
                half = 0.5 * float(g.get('yaw') or 0.0)
                msg.scene_objects.append(name)
                msg.scene_poses.append(to_pose(g['pos'],
                                               (0.0, 0.0, math.sin(half), math.cos(half))))
        self.msg = msg
        self.pub.publish(msg)
        self.publish_markers()

    def on_progress(self) -> None:
        c = self.core
        if c.pending is not None and c.poll(self.now()):  # e.g. camera info after the image
            self._update_goal()
        if c.pending is not None and self.now() - c.pending_since > 2.0:
            self.get_logger().warning(f'instruction waiting: {c.waiting_reason(self.now())}',
                                      throttle_duration_sec=5.0)
        if self.state is None or not c.running:
            return
        i, sg = c.active, c.plan.subgoals[c.active]
        tool, _ = self.kin.fk(self.adapter.arm(self.state))
        status = c.update_progress(self.now(), tool, float(self.adapter.gripper(self.state)))
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
        if status is not None:
            self._update_goal()

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
                    m.pose.position.z += LABEL_LIFT
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
            ('planning', c.planning), ('goal_active', self.goal is not None),
            ('goals_rejected', self.rejected), ('last_rejection', self.last_rejection))
        ] + rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None):
    run_node(StrategicPlannerNode, args)


if __name__ == '__main__':
    main()
