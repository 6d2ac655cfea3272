"""The ROS-free cores of the tactical and router levels (``hierarchy/``), without DDS: one
definition of a new sub-goal (plan stamp + active index), the shipped tactical planner and the
shipped router, and the message -> ActivePlan conversion the nodes use."""
import numpy as np
import pytest

from hybrid_vla_ros.domain.types import SubGoal
from hybrid_vla_ros.hierarchy.active_plan import ActivePlan, subgoal_key
from hybrid_vla_ros.hierarchy.router_core import RouterCore
from hybrid_vla_ros.hierarchy.tactical_core import TacticalCore
from hybrid_vla_ros.robot import load_robot

ROBOT = load_robot()
DOWN = np.array([1.0, 0.0, 0.0, 0.0])   # tool pointing down (xyzw)


def plan(stamp_ns, targets, active=0, instruction='put the red cube on the blue pad',
         obstacle=None):
    sgs = tuple(SubGoal(str(i), 'move_above', 'red cube', f'step {i}', np.asarray(t, float),
                        DOWN.copy(), gripper=0.0) for i, t in enumerate(targets))
    return ActivePlan(stamp_ns, instruction, active, sgs, obstacle=obstacle)


def home_state(offset=0.0):
    return np.append(ROBOT.home_q + offset, 0.0)


def test_subgoal_identity_is_the_plan_stamp_and_the_active_index():
    a = plan(10, [(0.5, 0.0, 0.2), (0.5, 0.1, 0.2)])
    assert subgoal_key(a) == (10, 0)
    assert subgoal_key(plan(10, [(0.5, 0.0, 0.2), (0.5, 0.1, 0.2)], active=1)) == (10, 1)
    assert subgoal_key(plan(11, [(0.5, 0.0, 0.2), (0.5, 0.1, 0.2)])) != subgoal_key(a)
    assert subgoal_key(plan(10, [(0.5, 0.0, 0.2)], active=1)) is None   # every sub-goal done
    assert subgoal_key(plan(10, [])) is None and subgoal_key(None) is None


@pytest.fixture(scope='module')
def tactical():
    from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner
    return TacticalPlanner.from_checkpoint(None, ROBOT)


def test_tactical_core_computes_once_per_subgoal_from_the_state_of_that_moment(tactical):
    core = TacticalCore(tactical, ROBOT.kinematics(), ROBOT.n_joints, plan_timeout=3.0)
    a = plan(100, [(0.50, -0.10, 0.20), (0.45, 0.10, 0.15)])
    assert not core.on_plan(a, 0.0), 'no state yet: nothing to compute from'
    assert core.tick(0.1).waypoints is None
    core.on_state(home_state())
    step = core.tick(0.2)
    assert step.computed and step.subgoal_id == '0'
    assert np.allclose(step.waypoints[-1].pos, (0.50, -0.10, 0.20))   # the target is final
    assert not core.on_plan(a, 1.0), 'a re-publication is not a new sub-goal'
    again = core.tick(1.1)
    assert not again.computed and again.waypoints is step.waypoints
    # the next sub-goal of the same plan
    assert core.on_plan(plan(100, [(0.50, -0.10, 0.20), (0.45, 0.10, 0.15)], active=1), 1.2)
    nxt = core.tick(1.2)
    assert nxt.computed and nxt.subgoal_id == '1'
    assert np.allclose(nxt.waypoints[-1].pos, (0.45, 0.10, 0.15))
    # the same sentence planned again (same ids, same targets), from another pose
    core.on_state(home_state(0.05))
    assert core.on_plan(plan(200, [(0.50, -0.10, 0.20), (0.45, 0.10, 0.15)]), 2.0)
    replanned = core.tick(2.0)
    assert replanned.computed and replanned.subgoal_id == '0'
    # every sub-goal done: nothing to publish
    core.on_plan(plan(200, [(0.50, -0.10, 0.20)], active=1), 2.5)
    assert core.tick(2.5).waypoints is None


def test_tactical_core_stops_when_the_plan_goes_silent_and_resumes(tactical):
    core = TacticalCore(tactical, ROBOT.kinematics(), ROBOT.n_joints, plan_timeout=3.0)
    core.on_state(home_state())
    core.on_plan(plan(100, [(0.50, 0.0, 0.20)]), 0.0)
    assert core.tick(1.0).waypoints is not None
    stale = core.tick(3.5)
    assert stale.went_stale and stale.waypoints is None and core.stale
    assert not core.tick(4.0).went_stale, 'reported once'
    assert core.on_plan(plan(100, [(0.50, 0.0, 0.20)]), 4.5), \
        'after a silence the sub-goal is new again: waypoints from the pose now'
    assert not core.stale and core.tick(4.5).computed


def test_tactical_core_routes_around_the_grounded_obstacle(tactical):
    core = TacticalCore(tactical, ROBOT.kinematics(), ROBOT.n_joints)
    core.on_state(home_state())
    target = (0.49, 0.22, 0.09)
    wall = {'pos': np.array([0.48, 0.0, 0.1]), 'yaw': 0.0}
    sg = SubGoal('detour', 'move_to', 'target', 'the target', np.array(target), DOWN.copy())
    core.on_plan(ActivePlan(1, 'reach the target behind the wall', 0, (sg,), obstacle=wall), 0.0)
    with_wall = core.tick(0.0).waypoints
    core.on_plan(ActivePlan(2, 'reach the target behind the wall', 0, (sg,)), 0.1)
    without = core.tick(0.1).waypoints
    assert np.allclose(with_wall[-1].pos, target) and np.allclose(without[-1].pos, target)
    assert len(with_wall) > len(without), 'no via-points over the obstacle'


def test_router_core_selects_once_per_subgoal_and_again_for_a_new_plan():
    core = RouterCore(fixed='flow')
    a = plan(100, [(0.5, 0.0, 0.2), (0.5, 0.1, 0.2)])
    sel = core.on_plan(a)
    assert sel.expert == 'flow' and sel.subgoal_id == '0' and sel.probabilities == [1.0]
    assert core.on_plan(a) is None, 'a re-publication is not a new sub-goal'
    assert core.on_plan(plan(100, [(0.5, 0.0, 0.2), (0.5, 0.1, 0.2)], active=1)).subgoal_id == '1'
    assert core.on_plan(plan(200, [(0.5, 0.0, 0.2)])) is not None, 'the same sentence re-planned'
    assert core.on_plan(plan(200, [(0.5, 0.0, 0.2)], active=1)) is None   # done
    with pytest.raises(ValueError):
        RouterCore()


def test_learned_router_core_waits_for_a_state_and_chooses_on_its_arrival():
    import os

    from hybrid_vla_ros.models.checkpoint import load_checkpoint
    from hybrid_vla_ros.motor.policy import shipped_motor_dir
    from hybrid_vla_ros.motor.routing import RouterChooser
    chooser = RouterChooser(load_checkpoint(os.path.join(shipped_motor_dir(ROBOT), 'router'),
                                            joint_names=ROBOT.joint_names))
    core = RouterCore(chooser)
    assert core.on_plan(plan(100, [(0.5, 0.0, 0.2)])) is None and core.waiting
    sel = core.on_state(home_state())
    assert sel is not None and not core.waiting and sel.expert in sel.candidates
    assert sel.expert == sel.candidates[int(np.argmax(sel.probabilities))]
    assert abs(sum(sel.probabilities) - 1.0) < 1e-4
    assert core.on_state(home_state()) is None, 'one selection per sub-goal'


def test_the_nodes_plan_conversion_and_its_checks():
    from builtin_interfaces.msg import Time as TimeMsg

    from hybrid_vla_msgs.msg import SubGoal as SubGoalMsg
    from hybrid_vla_msgs.msg import SubGoalList
    from hybrid_vla_ros.nodes.conversions import active_plan, check_subgoal_list, to_pose
    msg = SubGoalList(instruction='reach the target', active_index=0)
    msg.header.stamp = TimeMsg(sec=12, nanosec=5)
    msg.header.frame_id = 'base_link'
    msg.subgoals.append(SubGoalMsg(id='a', skill='move_to', object='target',
                                   target_pose=to_pose((0.5, 0.1, 0.2), DOWN), gripper=0.5))
    msg.scene_objects.append('obstacle')
    msg.scene_poses.append(to_pose((0.48, 0.0, 0.1), (0.0, 0.0, np.sin(0.25), np.cos(0.25))))
    check_subgoal_list(msg)
    p = active_plan(msg)
    assert subgoal_key(p) == (12_000_000_005, 0)
    assert np.allclose(p.active.position, (0.5, 0.1, 0.2)) and p.active.gripper == 0.5
    assert np.allclose(p.obstacle['pos'], (0.48, 0.0, 0.1)) and abs(p.obstacle['yaw'] - 0.5) < 1e-9
    msg.scene_poses.append(to_pose((0.0, 0.0, 0.0), DOWN))
    with pytest.raises(ValueError, match='scene poses'):
        check_subgoal_list(msg)
    msg.scene_poses = [to_pose((float('nan'), 0.0, 0.0), DOWN)]
    with pytest.raises(ValueError, match='NaN'):
        check_subgoal_list(msg)


def test_the_no_ros_evaluation_drives_the_cores_through_a_whole_instruction():
    """``hybrid-vla eval --levels 3``: planner, tactical, router and motor cores in one
    deterministic loop complete a pick-and-place from the instruction and the camera image;
    the same seed gives the same episode."""
    from argparse import Namespace

    from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
    from hybrid_vla_ros.evaluation.hierarchy_eval import evaluate_hierarchy
    args = Namespace(task='pick_place', levels=3, expert='router', episodes=1,
                     seed=EVAL_SEED_START + 29, instructions=None, checkpoints=None, bins=None,
                     refine_steps=None, robot=None)
    first = evaluate_hierarchy(args, progress=False)
    assert first['success_rate'] == 1.0 and first['subgoal_exact_match'] == 1.0, first
    assert first['planning_errors'] == 0
    again = evaluate_hierarchy(args, progress=False)
    assert again['median_error_mm'] == first['median_error_mm']
