"""``expert_router``: picks the action expert for the active sub-goal.

Subscribes ``subgoals`` (latched) and ``/joint_states``; publishes ``expert``
(ExpertSelection, latched) whenever the active sub-goal changes: the learned router's
probabilities over the experts, or ``fixed_expert`` with probability 1 if set.
"""
import os

from rclpy.node import Node
from sensor_msgs.msg import JointState

from hybrid_vla_msgs.msg import ExpertSelection, SubGoalList
from hybrid_vla_ros.evaluation.routing import RouterChooser
from hybrid_vla_ros.models.checkpoint import load_checkpoint
from hybrid_vla_ros.motor.policy import default_checkpoint_dir
from hybrid_vla_ros.nodes.conversions import arm_state
from hybrid_vla_ros.nodes.node_main import run_node
from hybrid_vla_ros.nodes.parameters import describe as _d
from hybrid_vla_ros.nodes.qos import LATCHED, SENSOR


class ExpertRouterNode(Node):
    def __init__(self):
        super().__init__('expert_router')
        p = self.declare_parameter
        self.joint_names = list(p('joint_names', [f'joint_{i}' for i in range(1, 8)],
                                  _d('arm joints')).value)
        js_topic = p('joint_states_topic', '/joint_states', _d('joint state topic')).value
        ckpt = p('router_checkpoint', '', _d('router folder; empty = shipped')).value
        self.fixed = p('fixed_expert', '', _d('bypass the router with this expert')).value
        self.chooser = None
        if not self.fixed:
            path = ckpt or os.path.join(default_checkpoint_dir(), 'motor', 'router')
            self.chooser = RouterChooser(load_checkpoint(path))
        self.state = None
        self.last_key = None
        self.pub = self.create_publisher(ExpertSelection, 'expert', LATCHED)
        self.create_subscription(SubGoalList, 'subgoals', self.on_subgoals, LATCHED)
        self.create_subscription(JointState, js_topic, self.on_joint_state, SENSOR)

    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.state = arm_state(msg, self.joint_names).tolist()
        except ValueError:
            return  # the motor and executor nodes report malformed joint states

    def on_subgoals(self, msg: SubGoalList) -> None:
        if not msg.subgoals or msg.active_index >= len(msg.subgoals):
            return
        sg = msg.subgoals[msg.active_index]
        key = (msg.instruction, msg.active_index, sg.id)
        if key == self.last_key:
            return
        self.last_key = key
        out = ExpertSelection(subgoal_id=sg.id)
        out.header.stamp = self.get_clock().now().to_msg()
        if self.fixed:
            out.expert, out.candidates, out.probabilities = self.fixed, [self.fixed], [1.0]
        else:
            state = self.state if self.state is not None else [0.0] * 8
            probs = self.chooser.probabilities(
                {'skill': sg.skill, 'object': sg.object, 'description': sg.description}, state)
            out.candidates = list(probs)
            out.probabilities = [float(v) for v in probs.values()]
            out.expert = max(probs, key=probs.get)
        self.pub.publish(out)
        self.get_logger().info(f'sub-goal {sg.id} ({sg.skill} {sg.object}): expert '
                               f'{out.expert}')


def main(args=None):
    run_node(ExpertRouterNode, args)


if __name__ == '__main__':
    main()
