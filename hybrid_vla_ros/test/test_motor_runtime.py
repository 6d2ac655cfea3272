"""Motor level runtime and training on real demonstrations (no ROS)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hybrid_vla_ros.hierarchy.subgoal_progress import SubgoalProgress
from hybrid_vla_ros.models.registry import build_expert
from hybrid_vla_ros.motor.features import GOAL_DIM, WaypointTracker, goal_features
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


def test_train_motor_on_real_demos_lowers_validation_loss_and_resumes(tmp_path):
    data, out = tmp_path / 'ds', tmp_path / 'ck'
    subprocess.run([sys.executable, '-m', 'hybrid_vla_ros.cli', 'collect', '--task', 'reach',
                    '--episodes', '6', '--out', str(data), '--image-stride', '0'],
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
