"""``tactical_planner``: the active sub-goal + observation -> ``waypoints`` at ~5 Hz.

Waypoints are computed when a sub-goal becomes active (from the tool pose at that moment, the
sub-goal, and the obstacle the strategic level grounded) and re-published at ``rate`` Hz with a
fresh stamp; nothing is published without an active sub-goal (the arm then holds).

A sub-goal becomes active when the plan's active index moves or a new plan arrives. A new plan
is told apart from a re-publication of the same one by its ``header.stamp`` (the strategic
planner keeps it when re-publishing): a re-plan or the next episode's plan for the same
instruction, with the same sub-goal ids, gets waypoints from the tool pose of that moment, as
the no-ROS hierarchy (``evaluation/hierarchy_eval.py``) does. The waypoints of a newly active
sub-goal go out when the plan arrives, not at the next tick.
"""
import time

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from visualization_msgs.msg import Marker, MarkerArray

from hybrid_vla_msgs.msg import SubGoalList, Waypoint, WaypointArray
from hybrid_vla_ros.hierarchy.subgoal_progress import anchor_final_waypoint
from hybrid_vla_ros.nodes.conversions import arm_state, from_pose, robot_kinematics, to_pose
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import COMMAND, LATCHED, SENSOR
from hybrid_vla_ros.nodes.rate_monitor import RateMonitor, rate_values
from hybrid_vla_ros.planning.skills import PlanningError
from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner


class TacticalPlannerNode(Node):
    """``node_kwargs`` go to ``rclpy.node.Node`` (e.g. ``context``, ``parameter_overrides``)."""

    def __init__(self, **node_kwargs):
        super().__init__('tactical_planner', **node_kwargs)
        p = self.declare_parameter
        self.joint_names = list(p('joint_names', [f'joint_{i}' for i in range(1, 8)],
                                  _d('arm joints')).value)
        urdf_file = p('urdf', 'arm7.urdf.xacro', _d('xacro in hybrid_vla_description')).value
        js_topic = p('joint_states_topic', '/joint_states', _d('joint state topic')).value
        ckpt = p('checkpoint', '', _d('planner checkpoint folder; empty = shipped')).value
        self.rate = p('rate', 5.0, _d('waypoint publish rate (Hz)')).value
        self.planner = TacticalPlanner.from_checkpoint(ckpt or None)
        self.kin = robot_kinematics(urdf_file)
        self.plan = None
        self.state = None
        self.key = None
        self.out = None
        self.errors = 0
        self.holding_gripper = 0.0
        self.monitor = RateMonitor(self.rate)
        self.pub = self.create_publisher(WaypointArray, 'waypoints', COMMAND)
        self.pub_markers = self.create_publisher(MarkerArray, 'markers', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(SubGoalList, 'subgoals', self.on_subgoals, LATCHED)
        self.create_subscription(JointState, js_topic, self.on_joint_state, SENSOR)
        self.timer = self.create_timer(1.0 / self.rate, self.on_tick)
        self.create_timer(1.0, self.on_diagnostics)

    @staticmethod
    def subgoal_key(plan: SubGoalList):
        """Identity of the active sub-goal of ``plan`` (None if it has none): the plan's stamp
        (its identity), its instruction and frame, the active index and sub-goal id."""
        if plan is None or plan.active_index >= len(plan.subgoals):
            return None
        st = plan.header.stamp
        return (plan.instruction, plan.active_index, plan.subgoals[plan.active_index].id,
                plan.header.frame_id, st.sec, st.nanosec)

    def on_subgoals(self, msg: SubGoalList) -> None:
        self.plan = msg
        key = self.subgoal_key(msg)
        if key is not None and key != self.key and self.state is not None:
            self.on_tick()        # a newly active sub-goal: its waypoints now
            self.timer.reset()    # and the 5 Hz re-publication phased from here

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.state = arm_state(msg, self.joint_names)
        except ValueError as e:
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=2.0)

    def on_tick(self) -> None:
        t0 = time.perf_counter()
        plan = self.plan
        key = self.subgoal_key(plan)
        if key is None or self.state is None:
            self.out = None
            self.key = None   # whatever comes next is a newly active sub-goal
            self.monitor.idle()
            return
        sg = plan.subgoals[plan.active_index]
        if key != self.key:
            try:
                self.out = self.compute(plan, sg)
            except (PlanningError, ValueError) as e:
                self.errors += 1
                self.out = None
                self.get_logger().error(f'no waypoints for {sg.id}: {e}; holding')
            self.key = key
        if self.out is not None:
            now = self.get_clock().now()
            self.out.header.stamp = now.to_msg()
            self.pub.publish(self.out)
            self.monitor.tick(now.nanoseconds * 1e-9, time.perf_counter() - t0)
        else:
            self.monitor.idle()

    def compute(self, plan: SubGoalList, sg) -> WaypointArray:
        pos, quat = from_pose(sg.target_pose)
        subgoal = {'skill': sg.skill, 'target_pos': pos, 'target_quat': quat,
                   'gripper': float(sg.gripper)}
        tool_pos, tool_quat = self.kin.fk(self.state[:7])
        obs = {'tool_pos': tool_pos, 'tool_quat': tool_quat, 'gripper': float(self.state[7])}
        if 'obstacle' in plan.scene_objects:
            ob_pos, ob_quat = from_pose(plan.scene_poses[plan.scene_objects.index('obstacle')])
            obs['obstacle'] = {'pos': ob_pos, 'yaw': 2 * float(np.arctan2(ob_quat[2],
                                                                            ob_quat[3]))}
        wps = anchor_final_waypoint(self.planner.waypoints(subgoal, obs), pos, quat)
        out = WaypointArray(subgoal_id=sg.id)
        out.header.frame_id = plan.header.frame_id
        for w in wps:
            t = float(w.time_from_start)
            out.waypoints.append(Waypoint(pose=to_pose(w.pos, w.quat), gripper=float(w.gripper),
                                          time_from_start=Duration(sec=int(t),
                                                                   nanosec=int((t % 1) * 1e9))))
        self.publish_markers(out)
        self.get_logger().info(f'{sg.id}: ' + ', '.join(
            f'({w.pos[0]:.3f},{w.pos[1]:.3f},{w.pos[2]:.3f} g{w.gripper:.1f})' for w in wps))
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
        st.values = [KeyValue(key='errors', value=str(self.errors))] + rate_values(self.monitor)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None):
    run_node(TacticalPlannerNode, args)


if __name__ == '__main__':
    main()
