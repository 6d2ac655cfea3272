"""expert_router over real DDS: no selection from a made-up state, malformed joint states
logged, a new plan for the same sentence re-selects."""
import math

from ros_harness import RosProbe, start_node, stop_node
from sensor_msgs.msg import JointState

from hybrid_vla_msgs.msg import ExpertSelection, SubGoal, SubGoalList
from hybrid_vla_ros.nodes.qos import LATCHED, SENSOR
from hybrid_vla_ros.robot import load_robot

ROBOT = load_robot()   # the default robot, what the node gets without parameters
JOINTS = list(ROBOT.joint_names) + [ROBOT.gripper_joint]


def plan(probe, instruction='put the red cube on the blue pad'):
    msg = SubGoalList(instruction=instruction, active_index=0)
    msg.header.stamp = probe.node.get_clock().now().to_msg()
    sg = SubGoal(id='0', skill='move_above', object='red cube', description='above the red cube')
    sg.target_pose.orientation.w = 1.0
    msg.subgoals = [sg]
    return msg


def joint_state(probe, value=0.1):
    msg = JointState(name=JOINTS, position=[value] * ROBOT.n_joints + [ROBOT.gripper_open])
    msg.header.stamp = probe.node.get_clock().now().to_msg()
    return msg


def test_router_waits_for_a_state_logs_bad_ones_and_reselects_on_a_new_plan(tmp_path):
    log = tmp_path / 'router.log'
    proc = start_node('hybrid_vla_ros.nodes.expert_router', log_path=str(log))
    probe = RosProbe('router_probe')
    try:
        probe.subscribe(ExpertSelection, 'expert', LATCHED)
        subgoals = probe.node.create_publisher(SubGoalList, 'subgoals', LATCHED)
        js = probe.node.create_publisher(JointState, '/joint_states', SENSOR)
        probe.wait_for(lambda: subgoals.get_subscription_count() > 0, 60, 'router up')
        first = plan(probe)
        subgoals.publish(first)
        probe.spin_for(1.5)
        assert probe.counts.get('expert', 0) == 0, 'selected an expert without any state'
        bad = joint_state(probe)
        bad.position[2] = math.nan
        for _ in range(5):
            js.publish(bad)
            probe.spin_for(0.05)
        probe.spin_for(0.5)
        assert probe.counts.get('expert', 0) == 0
        assert 'joint_states ignored: joint state has NaN/Inf positions' in log.read_text()
        probe.wait_for(lambda: probe.counts.get('expert', 0) == 1, 30, 'a selection',
                       every=lambda: js.publish(joint_state(probe)))
        sel = probe.latest['expert']
        assert sel.subgoal_id == '0' and sel.expert in sel.candidates
        assert abs(sum(sel.probabilities) - 1.0) < 1e-4
        subgoals.publish(first)   # the plan re-published (same stamp): no new selection
        probe.spin_for(1.0)
        assert probe.counts['expert'] == 1
        subgoals.publish(plan(probe))  # the same sentence planned again: a new selection
        probe.wait_for(lambda: probe.counts['expert'] == 2, 30, 'a re-selection')
    finally:
        probe.close()
        assert stop_node(proc) == 0, log.read_text()
