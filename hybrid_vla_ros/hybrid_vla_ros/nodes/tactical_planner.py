"""``tactical_planner``: the active sub-goal + observation -> ``waypoints`` at ~5 Hz.

A thin adapter of :class:`~hybrid_vla_ros.hierarchy.tactical_core.TacticalCore` (what is
computed when, and when nothing is published: see there): ``subgoals`` (a new plan is told
from a re-publication of the same one by its ``header.stamp``) and ``/joint_states`` in,
``waypoints`` (re-published at ``rate`` Hz with a fresh stamp) and ``markers`` out. The
waypoints of a newly active sub-goal go out when the plan arrives, not at the next tick.
"""
import time

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import JointState
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.msg import SubGoalList, Waypoint, WaypointArray
from hybrid_vla_ros.execution.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.hierarchy.tactical_core import TacticalCore
from hybrid_vla_ros.nodes.conversions import (
    RobotAdapter,
    active_plan,
    check_subgoal_list,
    to_pose,
)
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.robot_params import declare_robot
from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner


class TacticalPlannerNode(Node):
    """``node_kwargs`` go to ``rclpy.node.Node`` (e.g. ``context``, ``parameter_overrides``)."""

    def __init__(self, **node_kwargs):
        super().__init__('tactical_planner', **node_kwargs)
        p = self.declare_parameter
        self.robot = robot = declare_robot(self)
        self.adapter = RobotAdapter(robot)
        ckpt = p('checkpoint_dir', '', _d('planner checkpoint folder; empty = shipped')).value
        self.rate = p('rate', 5.0, _d('waypoint publish rate (Hz)')).value
        plan_timeout = p('plan_timeout', 3.0, _d(
            'no plan (re-)publication for this long (s): stop publishing waypoints; 0 = off'
        )).value
        self.core = TacticalCore(TacticalPlanner.from_checkpoint(ckpt or None, robot),
                                 robot.kinematics(), robot.n_joints, plan_timeout=plan_timeout)
        self.out = None           # the WaypointArray being re-published
        self.frame_id = robot.base_frame
        self.rejected = 0
        self.monitor = RateMonitor(self.rate)
        self.pub = self.create_publisher(WaypointArray, 'waypoints', COMMAND)
        self.pub_markers = self.create_publisher(MarkerArray, 'markers', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(SubGoalList, 'subgoals', self.on_subgoals, LATCHED)
        self.create_subscription(JointState, robot.config.joint_states_topic,
                                 self.on_joint_state, SENSOR)
        self.timer = self.create_timer(1.0 / self.rate, self.on_tick)
        self.create_timer(1.0, self.on_diagnostics)

    def on_subgoals(self, msg: SubGoalList) -> None:
        try:
            check_subgoal_list(msg)
        except ValueError as e:  # the plan in effect stays
            self.rejected += 1
            self.get_logger().error(f'plan ignored: {e}', throttle_duration_sec=1.0)
            return
        was_stale = self.core.stale
        if self.core.on_plan(active_plan(msg), time.monotonic()):
            self.on_tick()        # a newly active sub-goal: its waypoints now
            self.timer.reset()    # and the re-publication phased from here
        if was_stale:
            self.get_logger().info('plan received again: resuming')

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.core.on_state(self.adapter.state(msg))
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=2.0)

    def on_tick(self) -> None:
        t0 = time.perf_counter()
        step = self.core.tick(time.monotonic())
        if step.went_stale:
            self.get_logger().error(
                f'no plan for {time.monotonic() - self.core.plan_received:.1f} s (strategic '
                'planner dead or hung?): no waypoints, the arm holds')
        if step.error:
            self.get_logger().error(f'no waypoints for {step.subgoal_id}: {step.error}; holding')
        if step.computed:
            self.out = self.message(step)
            self.publish_markers(self.out)
            self.get_logger().info(f'{step.subgoal_id}: ' + ', '.join(
                f'({w.pos[0]:.3f},{w.pos[1]:.3f},{w.pos[2]:.3f} g{w.gripper:.1f})'
                for w in step.waypoints))
        elif step.waypoints is None:
            self.out = None
        if self.out is not None:
            now = self.get_clock().now()
            self.out.header.stamp = now.to_msg()
            self.pub.publish(self.out)
            self.monitor.tick(now.nanoseconds * 1e-9, time.perf_counter() - t0)
        else:
            self.monitor.idle()

    def message(self, step) -> WaypointArray:
        out = WaypointArray(subgoal_id=step.subgoal_id)
        out.header.frame_id = self.core.plan.frame_id if self.core.plan else self.frame_id
        for w in step.waypoints:
            t = float(w.time_from_start)
            out.waypoints.append(Waypoint(pose=to_pose(w.pos, w.quat), gripper=float(w.gripper),
                                          time_from_start=Duration(sec=int(t),
                                                                   nanosec=int((t % 1) * 1e9))))
        return out

    def publish_markers(self, out: WaypointArray) -> None:
        arr = MarkerArray(markers=[Marker(ns='waypoints', action=Marker.DELETEALL)])
        line = Marker(ns='waypoints', id=0, type=Marker.LINE_STRIP)
        line.header = out.header
        line.pose.orientation.w = 1.0
        line.scale.x = 0.003
        line.color.b, line.color.a = 1.0, 1.0
        for k, w in enumerate(out.waypoints):
            m = Marker(ns='waypoints', id=k + 1, type=Marker.CUBE, pose=w.pose)
            m.header = out.header
            m.scale.x = m.scale.y = m.scale.z = 0.015
            m.color.b, m.color.r, m.color.a = 1.0, float(w.gripper), 1.0
            arr.markers.append(m)
            line.points.append(w.pose.position)
        arr.markers.append(line)
        self.pub_markers.publish(arr)

    def on_diagnostics(self) -> None:
        st = DiagnosticStatus(name='tactical_planner', hardware_id='planner')
        st.level = DiagnosticStatus.OK if self.out is not None else DiagnosticStatus.WARN
        st.message = f'{len(self.out.waypoints)} waypoints for {self.out.subgoal_id}' \
            if self.out is not None else 'idle: no active sub-goal'
        if self.core.stale:
            st.level, st.message = DiagnosticStatus.ERROR, 'no plan from the strategic planner'
        st.values = [KeyValue(key='errors', value=str(self.core.errors + self.rejected))] + \
            rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None):
    run_node(TacticalPlannerNode, args)


if __name__ == '__main__':
    main()
