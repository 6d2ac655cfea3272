"""``expert_router``: picks the action expert for the active sub-goal.

A thin adapter of :class:`~hybrid_vla_ros.hierarchy.router_core.RouterCore` (one selection per
active sub-goal, the learned router or ``fixed_expert``, waiting for a valid state: see there).
Subscribes ``subgoals`` (latched) and ``/joint_states``; publishes ``expert``
(ExpertSelection, latched). Malformed joint states are dropped with a throttled error.
"""
import os

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState

from hybrid_vla_msgs.msg import ExpertSelection, SubGoalList
from hybrid_vla_ros.hierarchy.router_core import RouterCore
from hybrid_vla_ros.models.checkpoint import load_checkpoint
from hybrid_vla_ros.motor.policy import shipped_motor_dir
from hybrid_vla_ros.motor.routing import RouterChooser
from hybrid_vla_ros.nodes.conversions import RobotAdapter, active_plan, check_subgoal_list
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import LATCHED, SENSOR
from hybrid_vla_ros.nodes.robot_params import declare_robot


class ExpertRouterNode(Node):
    def __init__(self):
        super().__init__('expert_router')
        p = self.declare_parameter
        self.robot = robot = declare_robot(self)
        self.adapter = RobotAdapter(robot)
        ckpt = p('checkpoint_dir', '', _d('motor checkpoints (its router/); empty = shipped')
                 ).value
        self.fixed = p('fixed_expert', '', _d('bypass the router with this expert')).value
        chooser = None
        if not self.fixed:
            path = os.path.join(ckpt or shipped_motor_dir(robot), 'router')
            chooser = RouterChooser(load_checkpoint(path, joint_names=robot.joint_names))
            # the first call loads the sentence encoder (seconds): do it now, not while the
            # first sub-goal waits for its expert (and the node's callbacks stall)
            chooser.probabilities({'skill': 'move_above', 'object': 'cube',
                                   'description': 'warm-up'},
                                  np.append(robot.home_q, 0.0).tolist())
        self.core = RouterCore(chooser, self.fixed)
        self.bad_states = 0
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(1.0, self.on_diagnostics)
        self.pub = self.create_publisher(ExpertSelection, 'expert', LATCHED)
        self.create_subscription(SubGoalList, 'subgoals', self.on_subgoals, LATCHED)
        self.create_subscription(JointState, robot.config.joint_states_topic,
                                 self.on_joint_state, SENSOR)

    def on_joint_state(self, msg: JointState) -> None:
        try:
            state = self.adapter.state(msg)
        except ValueError as e:
            self.bad_states += 1
            self.get_logger().error(f'joint_states ignored: {e}', throttle_duration_sec=1.0)
            return
        self.publish(self.core.on_state(state))

    def on_subgoals(self, msg: SubGoalList) -> None:
        try:
            check_subgoal_list(msg)
        except ValueError as e:
            self.get_logger().error(f'plan ignored: {e}', throttle_duration_sec=1.0)
            return
        was_waiting = self.core.waiting
        self.publish(self.core.on_plan(active_plan(msg)))
        if self.core.waiting and not was_waiting:
            self.get_logger().warning(f'sub-goal {self.core.pending.active.id}: waiting for a '
                                      'valid joint state before choosing its expert')

    def publish(self, sel) -> None:
        if sel is None:
            return
        out = ExpertSelection(subgoal_id=sel.subgoal_id, expert=sel.expert,
                              candidates=sel.candidates, probabilities=sel.probabilities)
        out.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(out)
        self.get_logger().info(f'sub-goal {sel.subgoal_id}: expert {sel.expert}')

    def on_diagnostics(self) -> None:
        st = DiagnosticStatus(name='expert_router', hardware_id='policy')
        sel = self.core.selected
        if self.core.waiting:
            st.level, st.message = DiagnosticStatus.WARN, 'waiting for a valid joint state'
        elif sel is None:
            st.level, st.message = DiagnosticStatus.OK, 'idle: no sub-goal yet'
        else:
            st.level = DiagnosticStatus.OK
            st.message = f'{sel.expert} for sub-goal {sel.subgoal_id}'
        st.values = [KeyValue(key='rejected_joint_states', value=str(self.bad_states)),
                     KeyValue(key='fixed_expert', value=self.fixed or '')]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args=None):
    run_node(ExpertRouterNode, args)


if __name__ == '__main__':
    main()
