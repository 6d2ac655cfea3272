"""Strategic + tactical planning: validation, LLM-output parsing, grounding, waypoints, training.

Runs without ROS. Uses the default checkpoints in checkpoints/planner/ for the behaviour of the
trained heads (skipped with a clear reason if they are missing) and tiny real datasets from the
sim for the training tests.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_vla_ros.planning.camera_model import CameraModel
from hybrid_vla_ros.planning.llm_backend import build_prompt, parse_llm_plan
from hybrid_vla_ros.planning.skills import (
    SKILL_ALLOW_LIST,
    Plan,
    PlanningError,
    SubGoal,
    SymbolicStep,
    normalize_object_name,
    plan_bounds,
    scene_objects_from_episode,
    validate_plan,
    validate_steps,
)
from hybrid_vla_ros.planning.strategic_planner import DEFAULT_CHECKPOINT, compile_plan
from hybrid_vla_ros.planning.subgoal_decoder import (
    COLOR_CLASSES,
    SHAPE_CLASSES,
    distinct_roles,
    tokens_to_steps,
)
from hybrid_vla_ros.planning.tactical_planner import TACTICAL_WORKSPACE

torch.set_num_threads(1)
CKPT = DEFAULT_CHECKPOINT
HAS_CKPT = (CKPT / 'grounding.safetensors').is_file() and (CKPT / 'tactical.safetensors').is_file()
needs_ckpt = pytest.mark.skipif(not HAS_CKPT, reason=f'no default planner checkpoint in {CKPT}')
TASKS = ('reach', 'pick_place', 'stack', 'multimodal', 'detour')
# Grounding tolerance (xy, table objects: cubes, cylinders, pads), measured with the shipped
# checkpoint on 90 unseen scenes (511 referents): median 1.8 mm, p90 3.9, p99 6.3, max 11.0 mm.
GROUNDING_MEDIAN_TOL_MM = 4.0
GROUNDING_MAX_TOL_MM = 15.0


@pytest.fixture(scope='module')
def sim():
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    s = ArmSim()
    yield s
    s.close()


def _subgoal(**kw):
    d = dict(id='g0', skill='move_above', object='red cube', description='x',
             position=np.array([0.5, 0.0, 0.15]), orientation=np.array([0.0, 1.0, 0.0, 0.0]),
             confidence=0.9, gripper=0.0)
    d.update(kw)
    return SubGoal(**d)


# ----------------------------------------------------------------------------- pure logic
def test_validate_plan_accepts_a_good_plan_and_rejects_bad_entries():
    scene = {'red cube', 'blue pad'}
    validate_plan(Plan('i', [_subgoal()]), scene)
    bad = [dict(skill='explode'), dict(object='green cube'), dict(object='rm -rf /'),
           dict(position=np.array([np.nan, 0, 0])), dict(position=np.array([5.0, 0, 0])),
           dict(orientation=np.array([0.0, 0.0, 0.0, 2.0])), dict(confidence=1.5),
           dict(gripper=-0.1), dict(id='')]
    bounds = plan_bounds(1.0)   # an arm reaching 1 m
    for kw in bad:
        with pytest.raises(PlanningError):
            validate_plan(Plan('i', [_subgoal(**kw)]), scene, bounds)
    with pytest.raises(PlanningError, match='outside the workspace'):
        validate_plan(Plan('i', [_subgoal(position=np.array([0.5, 0.0, 1.2]))]), scene,
                      bounds)
    with pytest.raises(PlanningError, match='unique'):
        validate_plan(Plan('i', [_subgoal(), _subgoal()]), scene)
    with pytest.raises(PlanningError):
        validate_plan(Plan('i', []), scene)


def test_object_names_are_normalised_or_rejected():
    assert normalize_object_name('the Red block') == 'red cube'
    assert normalize_object_name('green marker') == 'target'
    for bad in ('pink cube', 'red', '', 'import os', None, 3):
        with pytest.raises(PlanningError):
            normalize_object_name(bad)
    with pytest.raises(PlanningError, match='reference'):
        validate_steps([SymbolicStep('place', 'red cube')])
    with pytest.raises(PlanningError, match='graspable'):
        validate_steps([SymbolicStep('grasp', 'blue pad')])


GOOD_LLM = ('Sure! Here is the plan:\n```json\n[{"skill": "move_above", "object": "red cube"},'
            ' {"skill": "grasp", "object": "the red block"},'
            ' {"skill": "place", "object": "red cube", "reference": "blue pad"}]\n```')


def test_llm_parser_accepts_json_in_prose_and_validates_it():
    steps = parse_llm_plan(GOOD_LLM, {'red cube', 'blue pad'})
    assert [(s.skill, s.object, s.reference) for s in steps] == [
        ('move_above', 'red cube', ''), ('grasp', 'red cube', ''),
        ('place', 'red cube', 'blue pad')]
    assert parse_llm_plan('{"subgoals": [["move_to", "target"]]}')[0].skill == 'move_to'


@pytest.mark.parametrize('answer', [
    '', 'I cannot help with that.', '[{"skill": "move_above", "object": "red cube"',
    '[{"skill": "self_destruct", "object": "red cube"}]',
    '[{"skill": "move_above", "object": "green cube"}]',          # not in the scene
    '[{"skill": "move_above"}]', '[{"skill": 3, "object": "red cube"}]',
    '[]', '{"plan": "move_above red cube"}', '[["grasp"]]',
    '__import__("os").system("echo hacked")',
    '[{"skill": "place", "object": "red cube"}]',                  # no reference
    '[' + ','.join(['{"skill": "lift", "object": "red cube"}'] * 40) + ']',
])
def test_malformed_llm_answers_raise_planning_error(answer):
    with pytest.raises(PlanningError):
        parse_llm_plan(answer, {'red cube', 'blue pad'})


def test_prompt_lists_only_allow_listed_skills():
    msgs = build_prompt('put the red cube on the blue pad', {'red cube', 'blue pad'})
    assert all(s in msgs[0]['content'] for s in SKILL_ALLOW_LIST)
    assert json.loads(msgs[2]['content'])[0]['skill'] in SKILL_ALLOW_LIST


def test_decoded_roles_must_exist():
    with pytest.raises(PlanningError):
        tokens_to_steps([('grasp', 'B', '')], {'A_color': 'red', 'A_shape': 'cube'})


def test_roles_a_and_b_are_decoded_as_different_objects():
    def probs(classes, weights):
        p = torch.full((len(classes),), 1e-3)
        for name, w in weights.items():
            p[classes.index(name)] = w
        return p / p.sum()
    cube = probs(SHAPE_CLASSES, {'cube': 0.99})
    # 'stack the green cube on the orange cube after placing the orange cube ...': both
    # argmaxes say orange; B's next best (green) keeps the larger joint probability
    a_col = probs(COLOR_CLASSES, {'orange': 0.8, 'green': 0.1})
    b_col = probs(COLOR_CLASSES, {'orange': 0.45, 'green': 0.38})
    (ac, as_), (bc, bs) = distinct_roles(a_col, cube, b_col, cube)
    assert (COLOR_CLASSES[ac], COLOR_CLASSES[bc]) == ('orange', 'green')
    assert SHAPE_CLASSES[as_] == SHAPE_CLASSES[bs] == 'cube'
    # the converse: B is the surer one, so A moves to its next best
    (ac, _), (bc, _) = distinct_roles(b_col, cube, a_col, cube)
    assert (COLOR_CLASSES[ac], COLOR_CLASSES[bc]) == ('green', 'orange')
    # distinct argmaxes and an absent role (<none>) are left alone
    red = probs(COLOR_CLASSES, {'red': 0.9})
    assert distinct_roles(a_col, cube, red, cube)[1][0] == COLOR_CLASSES.index('red')
    none = probs(COLOR_CLASSES, {'<none>': 0.9})
    nshape = probs(SHAPE_CLASSES, {'<none>': 0.9})
    assert distinct_roles(none, nshape, none, nshape) == ((0, 0), (0, 0))


def test_compiled_targets_follow_the_scripted_expert(sim):
    """With ground-truth grounding, every sub-goal pose equals the expert's (same conventions)."""
    from hybrid_vla_ros.planning.labels import _grasp_yaw, entity_name, expert_symbolic
    from hybrid_vla_ros.sim.scripted_expert import plan, task_state
    for task in TASKS:
        for seed in range(3):
            sim.reset(task, seed)
            st = task_state(sim)
            sgs = plan(st, 0)
            steps, _, _ = expert_symbolic(sim.episode, sgs)
            scene = {}
            for slot, o in st['objects'].items():
                if o['kind'] == 'object' and slot not in sim.episode.objects:
                    continue
                scene[entity_name(sim.episode, slot)] = {
                    'pos': o['pos'], 'yaw': _grasp_yaw(o['quat']), 'confidence': 1.0}
            for slot in ('pad_0',) if 'pad' in sim.episode.info else ():
                scene[entity_name(sim.episode, slot)]['pos'] = st['objects'][slot]['pos']
            if task == 'multimodal':
                o = st['objects'][sgs[0].object]
                scene['red cube'] = {'pos': o['pos'], 'yaw': _grasp_yaw(o['quat'])}
            ours = compile_plan(steps, scene)
            validate_plan(Plan('x', ours), scene_objects_from_episode(sim.episode))
            assert [s.id for s in ours] == [s.id for s in sgs]
            for a, b in zip(ours, sgs):   # one set of rules (domain.skill_rules)
                assert np.array_equal(a.position, b.target_pos), (task, a.id)
                # the scene's yaw comes from training._grasp_yaw, the expert's from its own
                assert min(np.abs(a.orientation - b.target_quat).max(),
                           np.abs(a.orientation + b.target_quat).max()) < 1e-9
                assert a.gripper == b.gripper and a.servo == b.servo


def test_one_subgoal_type_and_numpy_rotations_match_the_simulator():
    """Every level shares domain.types.SubGoal/Waypoint; the numpy down_quat the planners use
    is bit-identical to the simulator's (MuJoCo) one."""
    from hybrid_vla_ros import domain
    from hybrid_vla_ros.planning import skills, tactical_planner
    from hybrid_vla_ros.sim import kinematics, scripted_expert
    assert skills.SubGoal is scripted_expert.SubGoal is domain.SubGoal
    assert tactical_planner.Waypoint is scripted_expert.Waypoint is domain.Waypoint
    for yaw in np.random.default_rng(0).uniform(-4.0, 4.0, 500).tolist() + [0.0, math.pi]:
        assert np.array_equal(domain.down_quat(yaw), kinematics.down_quat(yaw)), yaw
    for q in np.random.default_rng(1).normal(size=(200, 4)):
        R = kinematics.quat_to_mat(q)
        assert np.array_equal(domain.mat_to_quat(R), kinematics.mat_to_quat(R))
        assert np.allclose(domain.quat_to_mat(q), R, atol=1e-15)
    sg = domain.SubGoal('g', 'place', 'red cube', 'x', position=np.zeros(3),
                        orientation=np.array([0.0, 1.0, 0.0, 0.0]), gripper=1.0,
                        reference='blue pad')
    assert sg.position is sg.target_pos and sg.orientation is sg.target_quat
    back = domain.SubGoal.from_dict(sg.to_dict())
    assert back.reference == 'blue pad' and np.array_equal(back.target_quat, sg.target_quat)
    assert 'reference' not in sg.to_expert().to_dict()


def test_camera_back_projection_round_trips(sim):
    sim.reset('pick_place', 1)
    cam = CameraModel.from_any(sim.camera_info())
    p = np.array([0.5, 0.1, 0.02])
    u, v = cam.project(p)
    assert np.allclose(cam.pixel_to_plane(u, v, 0.02), p, atol=1e-9)
    assert np.allclose(sim.base_to_pixel(p), (u, v), atol=1e-9)


# ----------------------------------------------------------------------------- backbones
def test_backbones_are_frozen_cached_and_fail_clearly(tmp_path):
    from hybrid_vla_ros.planning.backbones import BackboneUnavailableError, VisionBackbone
    vb = VisionBackbone()
    assert not any(p.requires_grad for p in vb.net.parameters())
    img = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    a = vb.encode(img)
    b = vb.encode(img.copy())
    assert b is a and vb.cache.hits == 1
    assert a.pooled.shape == (1280,) and a.grid.shape == (1280, 4, 4)
    assert a.stride4.shape == (24, 32, 32) and torch.isfinite(a.pooled).all()
    with pytest.raises(BackboneUnavailableError, match='not found'):
        VisionBackbone(weights_path=tmp_path / 'missing.pth')


# ----------------------------------------------------------------------------- trained heads
@pytest.fixture(scope='module')
def planner():
    if not HAS_CKPT:
        pytest.skip(f'no default planner checkpoint in {CKPT}')
    from hybrid_vla_ros.planning.strategic_planner import StrategicPlanner
    return StrategicPlanner.from_checkpoint(CKPT)


@needs_ckpt
def test_planner_output_always_validates(planner, sim):
    from hybrid_vla_ros.sim.tasks import get_task
    n_ok = 0
    for task in TASKS:
        for seed, held in ((200_001, False), (200_002, True)):
            sim.reset(task, seed)
            scene = scene_objects_from_episode(sim.episode)
            text = get_task(task).instruction(seed, held_out=held)
            try:
                p = planner.plan(text, sim.render(), sim.camera_info())
            except PlanningError:
                continue   # a refusal is allowed; an invalid plan is not
            validate_plan(p, None)
            assert all(s.skill in SKILL_ALLOW_LIST for s in p.subgoals)
            assert {s.object for s in p.subgoals} <= scene | {'target'}
            n_ok += 1
    assert n_ok >= 6
    with pytest.raises(PlanningError):
        planner.plan('', sim.render(), sim.camera_info())


@needs_ckpt
def test_grounding_puts_named_objects_within_tolerance(planner, sim):
    from hybrid_vla_ros.planning.labels import scene_entities
    errs = []
    for task in ('pick_place', 'stack', 'multimodal'):
        for seed in range(300_000, 300_003):
            sim.reset(task, seed)
            ents = scene_entities(sim)
            names = sorted({n for n, _, _ in ents if n.split()[-1] in ('cube', 'cylinder',
                                                                       'pad')})
            scene = planner.ground(names, sim.render(), sim.camera_info())
            for n in names:
                err = min(np.linalg.norm(scene[n]['pos'][:2] - p[:2]) for m, p, _ in ents
                          if m == n)
                errs.append(1000.0 * err)
    errs = np.array(errs)
    assert np.median(errs) < GROUNDING_MEDIAN_TOL_MM, errs.round(1)
    assert errs.max() < GROUNDING_MAX_TOL_MM, errs.round(1)


@needs_ckpt
def test_tactical_output_is_finite_and_inside_the_workspace():
    from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner
    tp = TacticalPlanner.from_checkpoint(CKPT)
    rng = np.random.default_rng(0)
    lo, hi = TACTICAL_WORKSPACE
    for k in range(200):
        skill = SKILL_ALLOW_LIST[k % len(SKILL_ALLOW_LIST)]
        q = rng.normal(size=4)
        far = 3.0 if k % 10 == 0 else 1.0     # some targets/poses far outside the workspace
        sg = {'skill': skill, 'target_pos': rng.uniform(-0.5, 1.0, 3) * far,
              'target_quat': q / np.linalg.norm(q), 'gripper': float(rng.uniform())}
        obs = {'tool_pos': rng.uniform(-0.5, 1.0, 3) * far, 'tool_quat': q / np.linalg.norm(q),
               'gripper': float(rng.uniform())}
        if k % 3 == 0:
            obs['obstacle'] = {'pos': rng.uniform(0.3, 0.6, 3), 'yaw': float(rng.uniform(-3, 3))}
        wps = tp.waypoints(sg, obs)
        assert 1 <= len(wps) <= 3
        t_prev = 0.0
        for w in wps:
            assert np.all(np.isfinite(w.pos)) and np.all(w.pos >= lo) and np.all(w.pos <= hi)
            assert abs(np.linalg.norm(w.quat) - 1.0) < 1e-6
            assert 0.0 <= w.gripper <= 1.0 and w.time_from_start > t_prev
            t_prev = w.time_from_start
    with pytest.raises(PlanningError):
        tp.waypoints({'skill': 'move_to', 'target_pos': [np.nan, 0, 0],
                      'target_quat': [0, 1, 0, 0]}, obs)


# ----------------------------------------------------------------------------- training
def test_tactical_training_loss_falls_and_resumes(tmp_path):
    from hybrid_vla_ros.training.train_planner import train_tactical
    res = train_tactical(tmp_path, episodes=4, seed=1, epochs=3, samples_per_subgoal=4,
                         batch_size=64, progress=False, cache_dir=tmp_path / 'cache')
    h = res['tactical']
    assert h[-1]['train_loss'] < h[0]['train_loss'] and h[-1]['val_loss'] < h[0]['val_loss']
    again = train_tactical(tmp_path, episodes=4, seed=1, epochs=4, samples_per_subgoal=4,
                           batch_size=64, progress=False, cache_dir=tmp_path / 'cache')['tactical']
    assert len(again) == 4 and again[:3] == h     # resumed, not restarted


def test_strategic_training_losses_fall_and_checkpoints_round_trip(tmp_path, sim):
    from hybrid_vla_ros.planning.strategic_planner import StrategicPlanner
    from hybrid_vla_ros.training.train_planner import train_strategic
    res = train_strategic(tmp_path, episodes=3, seed=3, epochs_decoder=4, epochs_grounding=4,
                          grounding_batch=2, grounding_lr=1e-3, tasks=('pick_place', 'reach'),
                          progress=False, val_fraction=0.2, cache_dir=tmp_path / 'cache')
    for name in ('decoder', 'grounding'):
        h = res[name]
        assert h[-1]['train_loss'] < h[0]['train_loss'], (name, h)
        assert all(math.isfinite(r['val_loss']) for r in h)
    for f in ('decoder.safetensors', 'decoder.json', 'grounding.safetensors', 'grounding.json'):
        assert (tmp_path / f).is_file()
    assert not list(Path(tmp_path).glob('*.pt')) and not list(Path(tmp_path).glob('*.pkl'))
    a = StrategicPlanner.from_checkpoint(tmp_path)
    b = StrategicPlanner.from_checkpoint(tmp_path)
    sim.reset('pick_place', 5)
    img = sim.render()
    fa = a.vision.encode(img)
    x = __import__('hybrid_vla_ros.planning.backbones', fromlist=['x']).image_to_tensor(img)
    with torch.no_grad():
        da = a.grounding.dense(x, fa.stride4[None])
        db = b.grounding.dense(x, fa.stride4[None])
    assert torch.equal(da, db)
    tf = a.text.encode('put the red cube on the blue pad')
    assert a.backend.decoder.decode(tf, fa) == b.backend.decoder.decode(tf, fa)


def test_llm_backend_reports_missing_weights_clearly(tmp_path):
    from hybrid_vla_ros.planning.llm_backend import LLMBackend, LLMUnavailableError
    with pytest.raises(LLMUnavailableError):
        LLMBackend(model_path=tmp_path / 'missing.bin')


@pytest.mark.skipif(os.environ.get('HYBRID_VLA_TEST_LLM') != '1',
                    reason='loads SmolLM2 (~45 s); set HYBRID_VLA_TEST_LLM=1')
def test_llm_backend_output_is_parsed_or_refused():
    from hybrid_vla_ros.planning.llm_backend import LLMBackend
    llm = LLMBackend(max_new_tokens=120)
    try:
        steps, conf = llm.propose('put the red cube on the blue pad')
    except PlanningError:
        return                      # a refusal is fine: never an unvalidated action
    validate_steps(steps)
    assert len(conf) == len(steps)


def test_paraphrase_augmentation_never_uses_held_out_phrasings_or_words():
    """The decoder's training paraphrases are generated without the held-out phrasings: no
    held-out phrasing and no word that only a held-out phrasing uses ever appears."""
    import re

    from hybrid_vla_ros.planning.paraphrase import GRAMMAR, forbidden_words, paraphrases
    from hybrid_vla_ros.sim.tasks import get_task
    bad = forbidden_words()
    assert {'drop', 'grab', 'crown', 'bottom'} <= bad and not bad & {'put', 'pad', 'the'}
    assert set(GRAMMAR) == set(TASKS)
    for task in TASKS:
        t = get_task(task)
        for seed in range(15):
            fields = t.phrase_fields(t.sample(seed))
            held = {p.format(**fields) for p in t.held_out_phrases}
            texts = paraphrases(task, fields, 12, seed)
            assert len(texts) == 12 and len(set(texts)) == 12
            assert texts == paraphrases(task, fields, 12, seed)     # seeded
            for text in texts:
                assert text not in held
                assert not set(re.findall('[a-z]+', text)) & bad, text
                for v in fields.values():           # the scene's colours are named
                    assert v.split()[0] in text, (text, fields)


def test_target_marker_from_depth_is_sub_millimetre_accurate(sim):
    """Depth geometry alone (at the true pixel): the sphere fit of ``marker_fit``."""
    from hybrid_vla_ros.planning.marker_fit import marker_centre
    from hybrid_vla_ros.planning.strategic_planner import TARGET_MARKER_RADIUS
    errs = []
    for task in ('reach', 'detour'):
        for seed in range(300_000, 300_010):
            sim.reset(task, seed)
            cam = CameraModel.from_any(sim.camera_info())
            u, v = cam.project(sim.episode.target)
            p = marker_centre(cam, sim.render_depth(), u, v, TARGET_MARKER_RADIUS)
            errs.append(1000.0 * np.linalg.norm(p - np.asarray(sim.episode.target)))
    errs = np.array(errs)
    print('marker error mm', errs.round(3))
    assert np.median(errs) < 0.2 and np.mean(errs < 0.5) >= 0.9, errs.round(3)


def test_marker_fit_support_tells_the_sphere_from_other_surfaces(sim):
    """``fit_marker``'s inlier fraction: near 1 at the marker, low on a cube's top face."""
    from hybrid_vla_ros.planning.labels import scene_entities
    from hybrid_vla_ros.planning.marker_fit import fit_marker
    from hybrid_vla_ros.planning.strategic_planner import TARGET_MARKER_RADIUS
    on_marker, on_cube = [], []
    for seed in range(300_000, 300_005):
        sim.reset('reach', seed)
        cam, depth = CameraModel.from_any(sim.camera_info()), sim.render_depth()
        for name, pos, _ in scene_entities(sim):
            u, v = cam.project(pos)
            fit = fit_marker(cam, depth, u, v, TARGET_MARKER_RADIUS)
            if name == 'target':
                on_marker.append(fit.inlier_fraction)
            elif name.endswith('cube'):
                on_cube.append(fit.inlier_fraction)
    print('support on the marker', np.round(on_marker, 2), 'on cubes', np.round(on_cube, 2))
    assert on_cube and min(on_marker) >= 0.9 and max(on_cube) < 0.5


@needs_ckpt
def test_marker_grounding_checks_heatmap_peaks_against_the_depth(planner, sim):
    """The floating marker, grounded from RGB + depth: when the heatmap's best peak is not the
    marker (a finger or a cube edge outscores it), a later peak whose depth fits the sphere
    is taken, at full confidence, and where the nearest surface is a finger in front of the
    marker, the sphere behind it; a grounding the depth does not support (the marker hidden
    by the arm) is refused (confidence below the plan threshold), so no
    confident grounding is off the marker."""
    from hybrid_vla_ros.planning.backbones import image_to_tensor
    from hybrid_vla_ros.planning.grounding import locate
    from hybrid_vla_ros.planning.marker_fit import marker_centre
    from hybrid_vla_ros.planning.strategic_planner import TARGET_MARKER_RADIUS
    top_wrong = refused = behind = 0
    errs = []
    for seed in range(300_000, 300_060):
        sim.reset('reach', seed)
        img, info, depth = sim.render(), sim.camera_info(), sim.render_depth()
        target = np.asarray(sim.episode.target)
        got = planner.ground(['target'], img, info, depth=depth)['target']
        err = 1000.0 * np.linalg.norm(got['pos'] - target)
        if got['confidence'] < planner.min_plan_conf:
            refused += 1
            continue
        assert err < 1.0, (seed, err, got)
        errs.append(err)
        feats = planner.vision.encode(img)
        with torch.no_grad():
            dense = planner.grounding.dense(image_to_tensor(img), feats.stride4[None])
        u, v = CameraModel.from_any(info).project(target)
        top = locate(planner.grounding, dense, 'target')['pixel']
        top_wrong += float(np.hypot(top[0] - u, top[1] - v)) > 4.0   # pixels, 128 px image
        nearest = marker_centre(CameraModel.from_any(info), depth, *got['pixel'],
                                TARGET_MARKER_RADIUS)
        behind += float(np.linalg.norm(nearest - target)) > 1e-3   # behind a finger
    print(f'marker error mm median {np.median(errs):.3f} max {max(errs):.3f}; best peak '
          f'elsewhere {top_wrong}, partly hidden {behind}, refused {refused} of 60')
    assert refused <= 4
    assert top_wrong >= 1 and behind >= 1   # the depth checks are what grounded these
