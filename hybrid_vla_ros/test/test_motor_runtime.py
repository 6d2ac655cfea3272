"""Motor level runtime and training on real demonstrations (no ROS)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hybrid_vla_ros.hierarchy.subgoal_progress import SubgoalProgress
from hybrid_vla_ros.models.registry import build_expert
from hybrid_vla_ros.motor.features import (
    GOAL_DIM,
    GOAL_DIM_LOG,
    WaypointTracker,
    goal_features,
    log_error_for,
)
from hybrid_vla_ros.motor.policy import MotorPolicy

torch.set_num_threads(1)
WP = np.array([0.5, 0.0, 0.2, 0.0, 1.0, 0.0, 0.0, 0.0], np.float32)


def test_goal_features_expose_sub_millimetre_error():
    f = goal_features(WP, [0.5, 0.0, 0.2001], [0.0, -1.0, 0.0, 0.0])
    assert f.shape == (GOAL_DIM,)
    assert np.allclose(f[11:15], [0, 1, 0, 0])  # tool quat flipped onto the waypoint hemisphere
    assert f[-1] == pytest.approx(-0.0001 / 0.01, rel=1e-3)  # 0.1 mm -> 1% of the fine range
    with pytest.raises(ValueError, match='NaN'):
        goal_features(WP, [np.nan, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match='expected 8'):
        goal_features(WP[:7], [0, 0, 0], [0, 0, 0, 1])


def test_waypoint_tracker_passes_via_points_in_order():
    t = WaypointTracker(pass_tol=0.02)
    a, b = WP.copy(), WP.copy()
    b[:3] = [0.3, 0.2, 0.3]
    t.set_waypoints([a, b])
    assert np.array_equal(t.update([0.0, 0.0, 0.5]), a)
    assert np.array_equal(t.update([0.51, 0.0, 0.2]), b)  # via-point reached -> next
    assert np.array_equal(t.update([0.3, 0.2, 0.3]), b)   # the last one is never passed
    with pytest.raises(ValueError):
        t.set_waypoints([])


def test_policy_chunk_shape_and_nan_rejection():
    e = build_expert('coarse_to_fine', horizon=8, n_bins=16,
                     encoder={'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 32,
                              'hidden_dim': 32})
    pol = MotorPolicy({'coarse_to_fine': e}, capture=None)
    chunk, coarse, ms = pol.act('coarse_to_fine', np.zeros(8), WP, [0.4, 0, 0.3], [0, 1, 0, 0])
    assert chunk.shape == (8, 8) and coarse.shape == (8, 8) and ms > 0
    with pytest.raises(ValueError, match='finite'):
        pol.act('coarse_to_fine', [np.nan] * 8, WP, [0.4, 0, 0.3], [0, 1, 0, 0])
    with pytest.raises(ValueError, match='unknown expert'):
        pol.act('flow', np.zeros(8), WP, [0.4, 0, 0.3], [0, 1, 0, 0])


def test_subgoal_progress_needs_reach_and_settled_gripper():
    p = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=5.0)
    far, near = [0.5, 0, 0.3], [0.5, 0, 0.205]
    assert p.update(0.0, 'grasp', [0.5, 0, 0.2], far, 0.0) == 'active'
    assert p.update(0.1, 'grasp', [0.5, 0, 0.2], near, 0.2) == 'active'   # still closing
    assert p.update(0.2, 'grasp', [0.5, 0, 0.2], near, 0.6) == 'active'
    assert p.update(0.3, 'grasp', [0.5, 0, 0.2], near, 0.61) == 'active'  # settled once
    assert p.update(0.4, 'grasp', [0.5, 0, 0.2], near, 0.61) == 'done'
    q = SubgoalProgress(timeout=1.0)
    assert q.update(0.0, 'lift', [0, 0, 1], far, 0.0) == 'active'
    assert q.update(1.5, 'lift', [0, 0, 1], far, 0.0) == 'stale'


def test_a_motion_subgoal_is_done_once_the_tool_rests_or_has_stopped_closing_in():
    p = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=5.0, still_speed=0.001,
                        rest_window=0.2)
    target = np.array([0.5, 0.0, 0.2])
    # sweeping through the 1 cm ball at 5 cm/s: within reach_tol, never at rest
    for k in range(6):
        tool = target + [0.0, 0.0, 0.008 - 0.002 * k]
        assert p.update(0.1 + 0.04 * k, 'move_to', target, tool, 0.0) == 'active', k
    # converging at 0.5 mm/s (slower than still_speed): at rest once a whole 0.2 s window is
    # slow (from 0.60), done on the second such update (hold_steps 2)
    states = [p.update(t, 'move_to', target, target + [0, 0, z], 0.0) for t, z in
              ((0.40, 0.0003), (0.50, 0.00025), (0.60, 0.0002), (0.70, 0.00015))]
    assert states == ['active', 'active', 'active', 'done'], states
    # an oscillation (period 0.4 s, 3 mm amplitude) sampled at its turning points, where it is
    # slow between two updates: not at rest, so not done while its closest approach improves
    o = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=50.0, still_speed=0.001,
                        max_dwell=1.0, rest_window=0.2)
    pts = [0.003, 0.003, -0.003, -0.003]   # turning point, 50 ms there, the other one, ...
    states = [o.update(0.2 * (k // 2) + 0.05 * (k % 2), 'move_to', target,
                       target + [0.0, 0.0, pts[k % 4]], 0.0) for k in range(8)]
    assert 'done' not in states, states
    # dithering at 8 cm/s (a stochastic expert), in and out of the 1 cm ball, never closer than
    # 4 mm: done once it has spent max_dwell = 1 s within reach_tol since its closest approach
    q = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=50.0, still_speed=0.001,
                        max_dwell=1.0)
    offsets = [0.004, -0.004, 0.004, 0.012]  # three updates within, one outside, repeated
    states = [q.update(0.125 * k, 'move_to', target, target + [0.0, 0.0, offsets[k % 4]],
                       0.0) for k in range(24)]
    # within-time grows 0.25 s per 4 updates from the first (closest) one: 1 s at update 14
    # (then out of the ball at 15), within and dwelt at 16 and 17 (hold_steps 2)
    assert 'done' not in states[:17] and states[17] == 'done', states
    # converging slowly inside the ball (the distance shrinking 25% per 0.25 s, too fast for
    # rest): the dwell clock restarts at every closer approach, so it is never cut short
    c = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=50.0, still_speed=0.0001,
                        max_dwell=1.0)
    states = [c.update(0.25 * k, 'move_to', target, target + [0.0, 0.0, 0.008 * 0.75 ** k],
                       0.0) for k in range(16)]
    assert 'done' not in states, states
    # a gripper skill asks no rest of the tool: release is done once the gripper has opened
    r = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=50.0, still_speed=0.001)
    states = [r.update(0.1 * k, 'release', target, target + [0.0, 0.0, 0.004 * (-1) ** k],
                       0.0) for k in range(4)]
    assert states == ['active', 'active', 'done', 'done'], states
    # a transit skill (a way-station) is done on reaching the ball, sweeping into it at
    # 10 cm/s; the same sweep on a precision skill is not (it asks rest or a stopped approach)
    for skill, want in (('lift', 'done'), ('move_above', 'done'), ('retreat', 'done'),
                        ('descend', 'active'), ('place', 'active'), ('touch', 'active')):
        s = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=50.0, still_speed=0.001)
        states = [s.update(0.04 * k, skill, target, target + [0.0, 0.0, 0.012 - 0.004 * k],
                           0.0) for k in range(3)]
        assert states[:2] == ['active', 'active'] and states[2] == want, (skill, states)
    # with transit_rest it asks rest too
    s = SubgoalProgress(reach_tol=0.01, hold_steps=2, timeout=50.0, still_speed=0.001,
                        transit_rest=True)
    assert [s.update(0.04 * k, 'lift', target, target + [0.0, 0.0, 0.012 - 0.004 * k], 0.0)
            for k in range(3)] == ['active'] * 3


def test_slow_but_steady_progress_is_not_stale():
    # a loaded machine: the tool creeps towards the target, 1 cm per 0.9 s, for 9 s
    q = SubgoalProgress(timeout=1.0, progress_tol=0.005)
    target = np.array([0.5, 0.0, 0.1])
    for k in range(10):
        tool = target + [0.0, 0.0, 0.1 - 0.01 * k]
        assert q.update(0.9 * k, 'descend', target, tool, 0.0) == 'active', k
    # then stuck short of reach_tol (last progress at 8.1 s): no progress for 1 s -> stale
    assert q.update(8.9, 'descend', target, target + [0, 0, 0.012], 0.0) == 'active'
    assert q.update(9.2, 'descend', target, target + [0, 0, 0.012], 0.0) == 'stale'


def test_train_motor_on_real_demos_lowers_validation_loss_and_resumes(tmp_path):
    data, out = tmp_path / 'ds', tmp_path / 'ck'
    subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--task', 'reach',
                    '--episodes', '6', '--out', str(data), '--no-images'],
                   check=True, capture_output=True)
    base = [sys.executable, '-m', 'hybrid_vla_ros.cli', 'train', 'motor', '--expert', 'flow',
            '--data', str(data), '--out', str(out), '--d-model', '64', '--batch-size', '64',
            '--val-every', '40', '--threads', '1']
    r = subprocess.run(base + ['--steps', '80'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    hist = json.loads((out / 'training.json').read_text())['history']
    assert hist[-1]['val_loss'] < hist[0]['val_loss']
    r = subprocess.run(base + ['--steps', '120', '--resume'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'resuming at step 80' in r.stdout
    hist = json.loads((out / 'training.json').read_text())['history']
    assert [h['step'] for h in hist] == [40, 80, 120]


def test_train_motor_ddp_two_processes_stay_in_sync(tmp_path):
    """`torchrun --nproc_per_node 2`: gloo DDP, both ranks end with identical weights."""
    data, out = tmp_path / 'ds', tmp_path / 'ck'
    subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--task', 'reach',
                    '--episodes', '4', '--out', str(data), '--no-images'],
                   check=True, capture_output=True)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                        '--nproc_per_node', '2', '-m', 'hybrid_vla_ros.cli', 'train', 'motor',
                        '--expert', 'coarse_to_fine', '--data', str(data), '--out', str(out),
                        '--d-model', '32', '--batch-size', '32', '--steps', '30',
                        '--val-every', '30', '--threads', '1'],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert 'DDP: 2 processes' in r.stdout
    assert 'parameter checksums of the 2 processes differ by 0' in r.stdout
    assert json.loads((out / 'training.json').read_text())['history'][-1]['step'] == 30


def test_dagger_collection_labels_near_target_states(tmp_path):
    """The learner drives; states near the precise target carry the expert's settle chunk."""
    from hybrid_vla_ros.data.dataset import Dataset
    from hybrid_vla_ros.motor.policy import motor_checkpoint
    from hybrid_vla_ros.robot import load_robot
    from hybrid_vla_ros.training.motor_data import load_motor_samples

    out = tmp_path / 'dagger'
    r = subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--task',
                        'reach', '--episodes', '2', '--seed', '20000', '--out', str(out),
                        '--no-images', '--dagger', motor_checkpoint('coarse_to_fine'),
                        '--dagger-radius', '0.03'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ds = Dataset(str(out))
    assert len(ds) >= 1
    ep = ds.load(0)
    assert ep.meta['labels'] == 'dagger' and 'learner_error_mm' in ep.meta
    chunk, tool = ep.arrays['action_chunk'], ep.arrays['observation.tool_pose']
    target = np.asarray(ep.arrays['observation.waypoint'][:, :3])
    assert np.all(np.linalg.norm(tool[:, :3] - target, axis=1) < 0.03)
    # every label puts the tool on the target (the expert's IK), held over the chunk
    kin = load_robot().kinematics()
    for t in range(0, len(chunk), max(1, len(chunk) // 5)):
        p, _ = kin.fk(chunk[t, 0, :7].astype(float))
        assert np.linalg.norm(p - target[t]) < 1e-5
        assert np.allclose(chunk[t], chunk[t, :1])
    train, _ = load_motor_samples([str(out)], horizon=4, val_fraction=0.0)
    assert tuple(train['action'].shape[1:]) == (4, 8)
    with pytest.raises(ValueError, match='action_chunk has shape'):
        from hybrid_vla_ros.training.motor_data import episode_samples
        bad = dict(ep.arrays, action_chunk=chunk[:-1])
        episode_samples(bad, 4)


def test_log_error_features_resolve_every_scale():
    f = goal_features(WP, [0.5, 0.0, 0.2 - 5e-5], [0.0, -1.0, 0.0, 0.0], log_error=True)
    assert f.shape == (GOAL_DIM_LOG,)
    assert np.allclose(f[:GOAL_DIM], goal_features(WP, [0.5, 0.0, 0.2 - 5e-5],
                                                    [0.0, -1.0, 0.0, 0.0]))
    z = [goal_features(WP, [0.5, 0.0, 0.2 - e], [0.0, -1.0, 0.0, 0.0], log_error=True)[-4]
         for e in (5e-5, 1e-3, 0.1)]
    assert 0.04 < z[0] < 0.08 and 0.3 < z[1] < 0.4 and abs(z[2] - 1.0) < 1e-6
    # a 1 mrad tilt about x shows up in the log-scale rotation error, not in the position part
    c, s = np.cos(5e-4), np.sin(5e-4)  # half angle
    q = np.array([0.0, 1.0, 0.0, 0.0])  # WP's orientation (x, y, z, w)
    tilted = np.array([c * q[0] + s * q[3], c * q[1] - s * q[2], c * q[2] + s * q[1],
                       c * q[3] - s * q[0]])
    g = goal_features(WP, WP[:3], tilted, log_error=True)
    assert np.allclose(g[-6:-3], 0.0) and 0.2 < np.abs(g[-3:]).max() < 0.3
    assert log_error_for(GOAL_DIM) is False and log_error_for(GOAL_DIM_LOG) is True
    with pytest.raises(ValueError, match='goal_dim 5'):
        log_error_for(5)


def test_mu_law_bins_round_trip_and_are_fine_near_zero_motion():
    torch.manual_seed(0)
    e = build_expert('token', horizon=4, n_bins=64, mu_law=255.0,
                     encoder={'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 32,
                              'hidden_dim': 32})
    state = torch.randn(256, 8)
    delta = torch.randn(256, 4, 8) * 0.05
    action = delta.clone()
    action[..., :7] += state[:, None, :7]
    action[..., 7] = torch.rand(256, 4)
    e.fit_normalization({'state': state, 'goal': torch.randn(256, GOAL_DIM), 'action': action})
    x = e.action_norm.normalize(action, state)
    assert torch.allclose(e.action_norm.unnormalize(x, state), action, atol=1e-6)
    # a token's width around zero motion vs at the end of the range (joint dims)
    near = e.decode(e.encode(action, state), state) - action
    small = delta[..., :7].abs() < 1e-3
    scale = e.action_norm.symmetric_scale()[:, :7].expand(256, -1, -1)
    assert (near[..., :7].abs()[small] < 2e-3 * scale[small]).all()
    with pytest.raises(ValueError, match='mu_law'):
        build_expert('token', mu_law=10.0, delta_actions=False)


def test_temporal_ensemble_averages_what_past_chunks_predicted_for_now():
    from hybrid_vla_ros.motor.driver import PolicyDriver
    torch.manual_seed(0)
    expert = build_expert('token', horizon=4, n_bins=16,
                          encoder={'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 16,
                                   'hidden_dim': 16})
    policy = MotorPolicy({'token': expert})
    wp = {'pos': WP[:3].tolist(), 'quat': WP[3:7].tolist(), 'gripper': 0.0}
    rng = np.random.default_rng(0)
    obs_list = [{'subgoal_index': 0, 'waypoints': [wp], 'state': rng.normal(size=8) * 0.3,
                 'tool_pos': np.array([0.4, 0.1, 0.3]), 'tool_quat': WP[3:7].copy()}
                for _ in range(5)]
    driver = PolicyDriver(policy, lambda obs: 'token', ensemble=3)
    chunks, got = [], []
    for o in obs_list:
        q, g = driver(o)
        got.append(np.concatenate([q, [g]]))
        chunks.append(policy.act('token', o['state'], WP, o['tool_pos'], o['tool_quat'])[0])
    for t in range(5):
        past = chunks[max(0, t - 2):t + 1]  # oldest first
        preds = np.stack([c[len(past) - 1 - i] for i, c in enumerate(past)])
        w = np.exp(-0.1 * np.arange(len(preds)))
        want = (preds * w[:, None]).sum(0) / w.sum()
        want[7] = np.clip(want[7], 0.0, 1.0)
        assert np.allclose(got[t], want, atol=1e-6)


def test_the_ensemble_ages_chunks_by_their_time_and_a_new_subgoal_forgets_them():
    from hybrid_vla_ros.motor.driver import MotorCore
    from hybrid_vla_ros.motor.ensemble import TemporalEnsemble
    ens = TemporalEnsemble(3, step_s=0.05)
    a = np.arange(8, dtype=np.float32).reshape(4, 2)
    b = a + 100.0
    assert np.array_equal(ens(a, 1.0), a)
    # one step later: step j of b and step j+1 of a predict the same instant; a is older and
    # weighs 1, b weighs exp(-0.1); a's last step predicts nothing for b's last step
    got = ens(b, 1.05)
    w = np.exp(-0.1)
    assert np.allclose(got[:3], (a[1:] + w * b[:3]) / (1 + w))
    assert np.allclose(got[3], b[3])
    # a late chunk (two steps): a is two steps old; a chunk older than the horizon is dropped
    ens.reset()
    ens(a, 0.0)
    assert np.allclose(ens(b, 0.1)[0], (a[2] + w * b[0]) / (1 + w))
    assert np.array_equal(ens(b, 10.0), b)
    assert np.array_equal(TemporalEnsemble(1)(a, 0.0), a)
    with pytest.raises(ValueError, match='>= 1'):
        TemporalEnsemble(0)

    torch.manual_seed(0)
    expert = build_expert('token', horizon=4, n_bins=16,
                          encoder={'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 16,
                                   'hidden_dim': 16})
    core = MotorCore(MotorPolicy({'token': expert}), 'token', ensemble=3, step_s=0.05)
    core.on_waypoints('sg0', [WP], 0.0)
    state, pos, quat = np.zeros(8), np.array([0.4, 0.1, 0.3]), WP[3:7].copy()
    core.act(state, pos, quat, now=0.0)
    core.act(state, pos, quat, now=0.05)
    assert len(core.ensemble.history) == 2
    core.on_waypoints('sg0', [WP], 0.06)        # the same waypoints re-published: kept
    assert len(core.ensemble.history) == 2
    core.on_waypoints('sg1', [WP], 0.07)        # a new sub-goal: its chunks start afresh
    assert core.ensemble.history == []


@pytest.mark.parametrize('kind', ['coarse_to_fine', 'token'])
def test_mu_law_captured_paths_match_eager(kind):
    """The CPU kernel (batch <= 8) and the traced fused graph (larger batches) expand the
    mu-law like ``ActionNormalizer.unnormalize``: equal to eager within 1e-5, coarse and
    refined, and a NaN observation is an error naming its key, never a NaN chunk."""
    from hybrid_vla_ros.models.host_kernel import HostCoarseToFine
    torch.manual_seed(0)
    e = build_expert(kind, horizon=4, n_bins=32, mu_law=255.0,
                     encoder={'state_dim': 8, 'goal_dim': GOAL_DIM_LOG, 'd_model': 32,
                              'hidden_dim': 32})
    state = torch.randn(64, 8)
    action = torch.randn(64, 4, 8) * 0.05
    action[..., :7] += state[:, None, :7]
    e.fit_normalization({'state': state, 'goal': torch.randn(64, GOAL_DIM_LOG),
                         'action': action})
    e.eval()
    for b in (1, 3, 16):
        obs = {'state': torch.randn(b, 8), 'goal': torch.randn(b, GOAL_DIM_LOG)}
        e.set_capture(None)
        if kind == 'token':
            eager = e.sample(obs)
            e.set_capture('whole')
            assert torch.allclose(e.sample(obs), eager, atol=1e-5), b
        else:
            noise = torch.randn(b, 32)
            eager, eager_coarse = e.sample(obs, noise=noise, return_coarse=True)
            e.set_capture('whole')
            got, got_coarse = e.sample(obs, noise=noise, return_coarse=True)
            assert torch.allclose(got, eager, atol=1e-5), b
            assert torch.allclose(got_coarse, eager_coarse, atol=1e-5), b
            assert not torch.allclose(got, got_coarse, atol=1e-4), 'the refiner moved it'
        runner = next(iter(e._whole.values()))[1]
        if b <= 8:
            kernel = runner if kind == 'coarse_to_fine' else runner.kernel
            assert isinstance(kernel, HostCoarseToFine) and kernel.mu == 255.0
        for key in obs:
            bad = dict(obs, **{key: obs[key].clone()})
            bad[key][b // 2, 2] = float('nan')
            with pytest.raises(ValueError, match=f"'{key}' contains NaN/Inf"):
                e.sample(bad) if kind == 'token' else e.sample(bad, noise=noise)


def _whole_runner(expert):
    """The path ``set_capture('whole')`` built for the last call (one batch size)."""
    assert len(expert._whole) == 1
    return next(iter(expert._whole.values()))[1]


def _check_loop_kernel(e, obs_of, noise_dim):
    """Kernel (batch 1, 3) and traced graph (batch 16) equal eager within 1e-5 from the same
    noise; the kernel is the path at batch <= 8; a NaN observation is an error naming its key,
    NaN noise an error naming the noise."""
    from hybrid_vla_ros.models.capture import _FiniteChecked
    from hybrid_vla_ros.models.host_kernel import HostLoopExpert
    for b in (1, 3, 16):
        obs, noise = obs_of(b), torch.randn(b, noise_dim)
        e.set_capture(None)
        eager = e.sample(obs, noise=noise)
        e.set_capture('whole')
        got = e.sample(obs, noise=noise)
        assert torch.allclose(got, eager, atol=1e-5, rtol=0), (b, (got - eager).abs().max())
        assert torch.equal(e.sample(obs, noise=noise), got)  # static buffers reused
        runner = _whole_runner(e)
        if b <= 8:
            assert isinstance(runner, HostLoopExpert), type(runner)
        else:
            assert isinstance(runner, _FiniteChecked), type(runner)
        for key in obs:
            bad = dict(obs, **{key: obs[key].clone()})
            bad[key][b // 2, 2] = float('nan')
            with pytest.raises(ValueError, match=f"'{key}' contains NaN/Inf"):
                e.sample(bad, noise=noise)
        with pytest.raises(ValueError, match='noise contains NaN/Inf'):
            e.sample(obs, noise=torch.full_like(noise, float('nan')))


@pytest.mark.parametrize('kind,extra', [
    ('flow', {}), ('flow', {'method': 'midpoint', 'steps': 3}),
    ('flow', {'n_layers': 1, 'mu_law': 255.0}),
    ('diffusion', {}), ('diffusion', {'clip_sample': False, 'schedule': 'linear', 'steps': 7}),
    ('diffusion', {'n_layers': 2, 'mu_law': 50.0, 'delta_dims': 5}),
])
def test_loop_expert_cpu_kernel_matches_eager(kind, extra):
    """flow (Euler / midpoint) and diffusion (DDIM, clipped or not) run the numpy/BLAS kernel at
    batch <= 8 and the traced graph above, both equal to eager within 1e-5."""
    torch.manual_seed(0)
    cfg = {'horizon': 4, 'hidden_dim': 48, 'time_dim': 9,
           'encoder': {'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 32, 'hidden_dim': 40,
                       'n_layers': 3}}
    e = build_expert(kind, **{**cfg, **extra})
    state = torch.randn(64, 8)
    action = torch.randn(64, 4, 8) * 0.05
    action[..., :7] += state[:, None, :7]
    e.fit_normalization({'state': state, 'goal': torch.randn(64, GOAL_DIM), 'action': action})
    with torch.no_grad():  # away from the initialisation (skip = +-I, zero-mean LayerNorm)
        for p in e.parameters():
            p.add_(0.05 * torch.randn_like(p))
    e.eval()
    if kind == 'diffusion' and e.config.clip_sample:  # the clamp is really exercised here
        obs, noise = {'state': state[:3], 'goal': torch.randn(3, GOAL_DIM)}, torch.randn(3, 32)
        loop = e.sampler_loop(e.config.steps)
        clipped = e.sample(obs, noise=noise)
        loop.clip_sample = False
        assert not torch.allclose(e.sample(obs, noise=noise), clipped, atol=1e-3)
        loop.clip_sample = True
    _check_loop_kernel(e, lambda b: {'state': torch.randn(b, 8),
                                     'goal': torch.randn(b, GOAL_DIM)}, 32)


@pytest.mark.parametrize('robot', ['arm7', 'arm6'])
@pytest.mark.parametrize('kind', ['flow', 'diffusion'])
def test_shipped_loop_experts_run_the_cpu_kernel(kind, robot):
    """The shipped flow / diffusion checkpoints of both arms: kernel == eager within 1e-5, and
    the kernel is what MotorPolicy.act runs at batch 1."""
    from hybrid_vla_ros.models.checkpoint import load_checkpoint
    from hybrid_vla_ros.models.host_kernel import HostLoopExpert
    from hybrid_vla_ros.motor.policy import motor_checkpoint
    torch.manual_seed(0)
    e = load_checkpoint(motor_checkpoint(kind, robot=robot)).eval()
    norm = e.encoder.normalizer

    def obs_of(b):  # observations spread like the training data
        return {k: getattr(norm, f'{k}_mean') + getattr(norm, f'{k}_std') * torch.randn(b, d)
                for k, d in norm.dims.items()}
    _check_loop_kernel(e, obs_of, e.config.chunk_size)
    policy = MotorPolicy({kind: e})
    n = e.config.encoder.state_dim
    chunk, coarse, _ = policy.act(kind, np.zeros(n), WP, [0.4, 0, 0.3], [0, 1, 0, 0])
    assert chunk.shape == (e.config.horizon, n) and coarse is None
    assert isinstance(_whole_runner(e), HostLoopExpert)
    with pytest.raises(ValueError, match='finite'):
        policy.act(kind, [np.nan] * n, WP, [0.4, 0, 0.3], [0, 1, 0, 0])


def test_refiner_temperature_zero_starts_at_the_coarse_chunk():
    torch.manual_seed(0)
    e = build_expert('coarse_to_fine', horizon=4, n_bins=32,
                     encoder={'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 32,
                              'hidden_dim': 32}).eval()
    e.set_capture('whole')
    obs = {'state': torch.randn(1, 8), 'goal': torch.randn(1, GOAL_DIM)}
    a, b = e.sample(obs), e.sample(obs)
    assert not torch.allclose(a, b)  # temperature 1: fresh noise each call
    e.temperature = 0.0
    a, b = e.sample(obs), e.sample(obs)
    assert torch.equal(a, b)
    assert torch.allclose(a, e.sample(obs, noise=torch.zeros(1, 32)), atol=1e-6)


@pytest.mark.parametrize('flags', [['--bins', '64'], ['--refine-steps', '2'],
                                   ['--exec-steps', '2'],
                                   ['--levels', '3'], ['--expert', 'scripted']])
def test_eval_ros_refuses_the_flags_it_does_not_apply(flags, capsys):
    from hybrid_vla_ros.cli import main
    with pytest.raises(SystemExit) as e:  # an argparse error, before any node starts
        main(['eval', '--ros', '--task', 'reach', '--episodes', '1', *flags])
    assert e.value.code == 2
    assert flags[0] in capsys.readouterr().err or 'scripted' in flags


def test_eval_ros_ensemble_and_temperature_become_the_motor_node_parameters(monkeypatch, capsys):
    from hybrid_vla_ros.cli import main
    from hybrid_vla_ros.evaluation import ros_eval
    seen = {}
    monkeypatch.setattr(ros_eval, 'evaluate_ros',
                        lambda args: seen.update(args.ros_overrides) or {'ok': True})
    assert main(['eval', '--ros', '--task', 'reach', '--episodes', '1', '--ensemble', '4',
                 '--temperature', '0', '--ros-set', 'motor_policy:rate=25']) == 0
    assert seen['motor_policy'] == {'rate': 25, 'ensemble': 4, 'temperature': 0.0}
    assert isinstance(seen['motor_policy']['temperature'], float)  # the node's double parameter


def test_eval_hang_timeout_reaches_the_graph_session_and_needs_ros(monkeypatch, capsys):
    from hybrid_vla_ros.bringup import session
    from hybrid_vla_ros.cli import main
    seen = {}

    class StopError(Exception):
        pass

    def fake_session(**kwargs):
        seen.update(kwargs)
        raise StopError
    monkeypatch.setattr(session, 'GraphSession', fake_session)
    for flags, want in (([], 10.0), (['--hang-timeout', '60'], 60.0),
                        (['--hang-timeout', '0'], 0.0)):
        with pytest.raises(StopError):
            main(['eval', '--ros', '--task', 'reach', '--episodes', '1', *flags])
        assert seen['hang_timeout'] == want
    for flags in (['--hang-timeout', '5'], ['--ros', '--hang-timeout', '-1']):
        with pytest.raises(SystemExit) as e:
            main(['eval', '--task', 'reach', '--episodes', '1', *flags])
        assert e.value.code == 2 and '--hang-timeout' in capsys.readouterr().err


def test_eval_held_out_draws_the_phrasings_never_trained_on(capsys):
    import json

    from hybrid_vla_ros.cli import main
    from hybrid_vla_ros.domain.seeds import EVAL_SEED_START
    from hybrid_vla_ros.sim.tasks import get_task
    assert main(['eval', '--task', 'reach', '--levels', '3', '--episodes', '1',
                 '--held-out']) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out['instructions'] == 'held-out phrasings' and out['episodes'] == 1
    task = get_task('reach')
    assert task.instruction(EVAL_SEED_START, held_out=True) in \
        task.all_instructions(EVAL_SEED_START, held_out=True)
    assert main(['eval', '--task', 'reach', '--episodes', '1', '--held-out']) == 2
    assert '--held-out' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(['eval', '--task', 'reach', '--levels', '3', '--episodes', '1', '--held-out',
              '--instructions', 'x.txt'])
    assert e.value.code == 2


def test_eval_ros_passes_robot_expert_and_checkpoints_to_the_graph(tmp_path):
    import argparse

    from hybrid_vla_ros.evaluation.ros_eval import graph_overrides
    ns = argparse.Namespace(task='reach', seed=3, expert='flow', checkpoints=str(tmp_path))
    o = graph_overrides(ns)
    assert o['expert_router'] == {'fixed_expert': 'flow'}
    assert o['motor_policy'] == {'checkpoint_dir': str(tmp_path), 'experts': ['flow'],
                                 'default_expert': 'flow'}
    o = graph_overrides(argparse.Namespace(task='reach', seed=3, expert='router',
                                           checkpoints=str(tmp_path)))
    assert o['expert_router'] == {'checkpoint_dir': str(tmp_path)}
    assert o['motor_policy'] == {'checkpoint_dir': str(tmp_path)}
    with pytest.raises(FileNotFoundError):
        graph_overrides(argparse.Namespace(task='reach', seed=3, expert='flow',
                                           checkpoints=str(tmp_path / 'missing')))


def test_the_graph_refuses_checkpoints_of_another_robot_before_it_starts():
    from types import SimpleNamespace

    from hybrid_vla_ros.evaluation.ros_eval import check_graph_checkpoints
    from hybrid_vla_ros.models.checkpoint import CheckpointError
    from hybrid_vla_ros.motor.policy import shipped_motor_dir
    from hybrid_vla_ros.robot import load_robot
    check_graph_checkpoints(load_robot(), 'router')  # the shipped ones are the default arm's
    six = SimpleNamespace(name='six', joint_names=tuple(f'j{i}' for i in range(6)),
                          section=lambda node: {})
    with pytest.raises(FileNotFoundError, match='six'):   # it has no shipped suite
        check_graph_checkpoints(six, 'flow')
    with pytest.raises(CheckpointError, match='another robot'):
        check_graph_checkpoints(six, 'flow', checkpoints=shipped_motor_dir())
    with pytest.raises(FileNotFoundError, match='train motor --robot six'):
        check_graph_checkpoints(six, 'flow', checkpoints='/nonexistent/folder')
