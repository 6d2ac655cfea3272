"""Two hierarchy rules that ``detour`` (the same sentence in every episode) depends on.

1. The tactical level must key its waypoints on the plan's stamp (kept on re-publication) and
   the active index (``hierarchy.active_plan.subgoal_key``): keyed on (instruction, active
   index, sub-goal id, frame), the next episode's plan for the same sentence (and a re-plan)
   would get no waypoints; after a complete plan nothing at all would be published: the arm
   never moves, the sub-goal goes stale, re-plans change nothing.
2. The strategic level keeps "the same instruction while its plan runs", but not across a
   scene reset (``strategic_planner/reset``, which the session calls between episodes): after a
   failed episode the old scene's plan must not drive the next one.
"""
import numpy as np
import pytest

from hybrid_vla_ros.hierarchy.strategic_core import InlineWorker, StrategicCore

JOINTS = [f'joint_{i}' for i in range(1, 8)]


class Plan:
    def __init__(self, text, n=1):
        self.instruction, self.subgoals, self.scene = text, [object()] * n, {}


def core_with_plans():
    calls = []

    def plan_fn(req):
        calls.append(req.instruction)
        return Plan(req.instruction)
    core = StrategicCore(worker=InlineWorker(plan_fn))
    core.set_camera({})
    return core, calls


def test_same_sentence_while_the_plan_runs_is_kept_but_not_across_a_reset():
    core, calls = core_with_plans()
    img = np.zeros((2, 2, 3))
    assert core.request('reach the green marker behind the wall', 1.0)
    core.observe_image(img, 1.0, 1.0)
    core.collect(1.1)
    first = core.stamp
    assert calls == ['reach the green marker behind the wall']
    # re-sent while it runs (the session repeats instructions): idempotent
    assert not core.request('reach the green marker behind the wall', 2.0)
    # the scene is reset for the next episode: the same sentence is a new task
    core.reset(3.0)
    assert core.plan is None
    assert core.request('reach the green marker behind the wall', 3.1)
    core.observe_image(img, 3.2, 3.2)
    core.collect(3.3)
    assert len(calls) == 2 and core.stamp not in (None, first) and core.running


def test_same_sentence_after_a_complete_plan_is_planned_again():
    core, calls = core_with_plans()
    img = np.zeros((2, 2, 3))
    core.request('go around the obstacle', 1.0)
    core.observe_image(img, 1.0, 1.0)
    core.collect(1.0)
    core.active = 1                     # done
    assert not core.running
    assert core.request('go around the obstacle', 2.0)


# ---------------------------------------------------------------------- the tactical node
@pytest.fixture(scope='module')
def tactical():
    import rclpy

    from hybrid_vla_ros.nodes.tactical_planner import TacticalPlannerNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = TacticalPlannerNode(context=ctx)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


class Capture:
    def __init__(self):
        self.msgs = []

    def publish(self, msg):
        self.msgs.append(msg)


def joint_state(q):
    from sensor_msgs.msg import JointState
    return JointState(name=JOINTS + ['finger_left_joint'], position=list(q) + [0.04])


def plan_msg(target, stamp_s, active=0, instruction='reach the green marker behind the wall'):
    from builtin_interfaces.msg import Time as TimeMsg

    from hybrid_vla_msgs.msg import SubGoal, SubGoalList
    from hybrid_vla_ros.nodes.conversions import to_pose
    msg = SubGoalList(instruction=instruction, active_index=active)
    msg.header.frame_id = 'base_link'
    msg.header.stamp = TimeMsg(sec=int(stamp_s), nanosec=int(round((stamp_s % 1) * 1e9)))
    msg.subgoals.append(SubGoal(id='detour', skill='move_to', object='target',
                                target_pose=to_pose(target, (1.0, 0.0, 0.0, 0.0)),
                                confidence=0.9))
    msg.scene_objects.append('obstacle')
    msg.scene_poses.append(to_pose((0.48, 0.0, 0.1), (0.0, 0.0, 0.0, 1.0)))
    return msg


def final_target(wps_msg):
    p = wps_msg.waypoints[-1].pose.position
    return np.array([p.x, p.y, p.z])


def test_tactical_computes_waypoints_for_every_new_plan_of_the_same_sentence(tactical):
    from hybrid_vla_ros.sim.description import home_pose
    node = tactical
    node.pub = cap = Capture()
    computed = []
    real = node.core.compute
    node.core.compute = lambda plan, sg: computed.append(sg.id) or real(plan, sg)
    hp = home_pose()
    node.on_joint_state(joint_state([hp[j] for j in JOINTS]))

    # episode 1: a plan arrives -> waypoints at once (not at the next 5 Hz tick)
    a = plan_msg((0.49, -0.22, 0.09), 100.0)
    node.on_subgoals(a)
    assert len(computed) == 1 and len(cap.msgs) == 1
    assert np.allclose(final_target(cap.msgs[-1]), (0.49, -0.22, 0.09), atol=1e-6)
    node.on_tick()
    node.on_subgoals(plan_msg((0.49, -0.22, 0.09), 100.0))   # 1 Hz re-publication
    node.on_tick()
    assert len(computed) == 1, 're-publication of the same plan recomputed waypoints'
    assert len(cap.msgs) == 3
    # the plan completes: nothing is published (the arm holds)
    node.on_subgoals(plan_msg((0.49, -0.22, 0.09), 100.0, active=1))
    node.on_tick()
    assert len(cap.msgs) == 3

    # episode 2, same sentence, same sub-goal id, a new scene: new waypoints from now
    node.on_joint_state(joint_state([hp[j] + 0.05 for j in JOINTS]))
    b = plan_msg((0.48, 0.20, 0.10), 130.5)
    node.on_subgoals(b)
    assert len(computed) == 2, 'no waypoints for the next plan of the same sentence'
    assert np.allclose(final_target(cap.msgs[-1]), (0.48, 0.20, 0.10), atol=1e-6)

    # a stale re-plan (same sentence, same target) while it runs: recomputed from the pose now
    node.on_subgoals(plan_msg((0.48, 0.20, 0.10), 150.5))
    assert len(computed) == 3
