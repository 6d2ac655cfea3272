"""Task suite + scripted expert: success checks fire on the expert's solution only."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
os.environ.setdefault('MUJOCO_GL', 'egl')

pytest.importorskip('mujoco')

from hybrid_vla_ros.domain.vocabulary import SKILLS  # noqa: E402
from hybrid_vla_ros.sim import tasks as T  # noqa: E402
from hybrid_vla_ros.sim.arm_sim import ArmSim  # noqa: E402
from hybrid_vla_ros.sim.rollout import rollout  # noqa: E402
from hybrid_vla_ros.sim.scripted_expert import ScriptedExpert, plan, task_state, waypoints  # noqa: E402

TASKS = ['reach', 'pick_place', 'stack', 'multimodal', 'detour']


@pytest.fixture(scope='module')
def sim():
    s = ArmSim(camera_width=64, camera_height=64)
    yield s
    s.close()


def test_registry_and_skills():
    assert set(T.task_names()) == set(TASKS)
    assert set(SKILLS) == {'move_above', 'descend', 'grasp', 'lift', 'place', 'release',
                             'retreat', 'touch', 'move_to'}
    for name in TASKS:
        t = T.get_task(name)
        assert set(t.skills) <= set(SKILLS) and t.max_steps > 0
    with pytest.raises(KeyError):
        T.get_task('nope')


@pytest.mark.parametrize('name', TASKS)
def test_phrasings_train_and_held_out_are_disjoint(name):
    t = T.get_task(name)
    assert len(t.train_phrases) >= 4 and len(t.held_out_phrases) >= 2
    assert not set(t.train_phrases) & set(t.held_out_phrases)
    for seed in range(5):
        a = t.instruction(seed)
        assert a == t.instruction(seed)
        assert a in t.all_instructions(seed)
        assert t.instruction(seed, held_out=True) in t.all_instructions(seed, held_out=True)
        assert a not in t.all_instructions(seed, held_out=True)


def test_instructions_name_the_objects():
    t = T.get_task('pick_place')
    for seed in range(5):
        ep = t.sample(seed)
        s = t.instruction(seed)
        assert ep.objects[ep.info['object']]['color'] in s and ep.info['pad_color'] in s
    assert 'red' in T.instruction('multimodal', 0)


def test_scenes_vary_with_seed_and_are_valid():
    for name in TASKS:
        t = T.get_task(name)
        a, b = t.sample(1), t.sample(2)
        assert a.objects['cube_0']['pos'] != b.objects['cube_0']['pos']
        pts = [np.asarray(o['pos'][:2]) for o in a.objects.values()]
        pts += [np.asarray(p['pos'][:2]) for p in a.pads.values()]
        d = [np.linalg.norm(p - q) for i, p in enumerate(pts) for q in pts[i + 1:]]
        assert min(d) >= T.MIN_SEPARATION - 1e-9
    ep = T.get_task('multimodal').sample(0)
    assert sum(o['color'] == 'red' for o in ep.objects.values()) == 2


@pytest.mark.parametrize('name', TASKS)
def test_expert_succeeds_and_do_nothing_fails(sim, name):
    for seed in (0, 1):
        r = rollout(sim, name, seed)
        assert r['success'], (name, seed, r)
        assert r['steps'] <= T.get_task(name).max_steps
        if name in ('reach', 'detour'):
            assert r['error_mm'] < 0.05  # well below the learned experts' 0.1 mm
        idle = rollout(sim, name, seed, policy=lambda obs: (obs['q'], 0.0), max_steps=20)
        assert not idle['success'], (name, seed, idle)


def test_multimodal_expert_uses_both_modes(sim):
    chosen = set()
    for seed in range(8):
        sim.reset('multimodal', seed)
        e = ScriptedExpert()
        e.reset(sim)
        chosen.add(e.choice)
    assert chosen == {0, 1}


def test_detour_straight_line_hits_the_wall(sim):
    ep = sim.reset('detour', 4)
    start, goal = np.asarray(ep.info['start']), np.asarray(ep.target)
    q_prev = [sim.joint_positions()]

    def straight(obs):
        s = min(1.0, obs['t'] / 3.0)
        q, _, _, _ = sim.kin.ik(start + s * (goal - start), T.down_quat(0.0), q0=q_prev[0])
        q_prev[0] = q
        return q, 0.0
    r = rollout(sim, 'detour', 4, policy=straight, max_steps=100)
    assert sim.obstacle_contacts > 0 and not r['success']


def test_plan_and_waypoints_structure(sim):
    sim.reset('pick_place', 2)
    goals = plan(task_state(sim))
    assert [g.skill for g in goals] == ['move_above', 'descend', 'grasp', 'lift', 'move_above',
                                        'place', 'release', 'retreat']
    for g in goals:
        assert g.skill in SKILLS and g.confidence == 1.0 and len(g.target_quat) == 4
    wps = waypoints(goals[0], task_state(sim))
    ts = [w.time_from_start for w in wps]
    assert ts == sorted(ts) and ts[0] > 0
    sim.reset('detour', 0)
    wps = waypoints(plan(task_state(sim))[0], task_state(sim))
    assert len(wps) == 3  # up, across, down: via-points over the wall
    assert min(w.pos[2] for w in wps[:2]) > 0.22


def test_rollout_observation_contents(sim):
    seen = []

    def policy(obs):
        seen.append(obs)
        return {'q': obs['q'], 'gripper': 0.0}
    rollout(sim, 'pick_place', 0, policy=policy, max_steps=3, image=True)
    o = seen[0]
    assert o['state'].shape == (8,) and o['image'].shape == (64, 64, 3)
    assert o['subgoal']['skill'] == 'move_above' and o['waypoint'].shape == (8,)
    assert o['instruction'] == T.instruction('pick_place', 0)
    assert o['waypoints'] and 'time_from_start' in o['waypoints'][0]
