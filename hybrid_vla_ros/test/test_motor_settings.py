"""The motor policy's run-time settings live in each checkpoint's config (``ensemble``; for
coarse_to_fine also ``temperature``), so the ``motor_policy`` node and the ROS-free loops run
an expert the same way; the node parameter / eval flag of the same name overrides them."""
import numpy as np
import pytest
import torch

from hybrid_vla_ros.models.checkpoint import load_checkpoint, save_checkpoint
from hybrid_vla_ros.models.configuration import ModelConfigError
from hybrid_vla_ros.models.registry import build_expert
from hybrid_vla_ros.motor.driver import MotorCore, PolicyDriver
from hybrid_vla_ros.motor.features import GOAL_DIM
from hybrid_vla_ros.motor.policy import MotorPolicy

ENC = {'state_dim': 8, 'goal_dim': GOAL_DIM, 'd_model': 16, 'hidden_dim': 16}
WP = np.array([0.4, 0.1, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0], np.float32)


def _experts(tmp_path):
    torch.manual_seed(0)
    c2f = build_expert('coarse_to_fine', horizon=4, n_bins=16, ensemble=3, temperature=0.0,
                       encoder=ENC)
    token = build_expert('token', horizon=4, n_bins=16, encoder=ENC)
    save_checkpoint(str(tmp_path / 'c2f'), c2f)
    save_checkpoint(str(tmp_path / 'token'), token)
    return {'coarse_to_fine': load_checkpoint(str(tmp_path / 'c2f')),
            'token': load_checkpoint(str(tmp_path / 'token'))}


def test_the_checkpoint_carries_the_run_time_settings(tmp_path):
    experts = _experts(tmp_path)
    policy = MotorPolicy(experts)
    assert policy.runtime() == {'coarse_to_fine': {'ensemble': 3, 'temperature': 0.0},
                                'token': {'ensemble': 1}}
    # temperature 0 from the checkpoint: the refined chunk is deterministic
    s = np.zeros(8)
    a, _, _ = policy.act('coarse_to_fine', s, WP, np.array([0.4, 0.0, 0.35]), WP[3:7])
    b, _, _ = policy.act('coarse_to_fine', s, WP, np.array([0.4, 0.0, 0.35]), WP[3:7])
    assert np.array_equal(a, b)
    # an override for every coarse_to_fine expert
    hot = MotorPolicy(_experts(tmp_path), temperature=1.0)
    assert hot.runtime()['coarse_to_fine']['temperature'] == 1.0
    c, _, _ = hot.act('coarse_to_fine', s, WP, np.array([0.4, 0.0, 0.35]), WP[3:7])
    d, _, _ = hot.act('coarse_to_fine', s, WP, np.array([0.4, 0.0, 0.35]), WP[3:7])
    assert not np.array_equal(c, d)
    for bad in (-0.1, float('nan'), 11.0):
        with pytest.raises(ValueError, match='temperature'):
            MotorPolicy(_experts(tmp_path), temperature=bad)
    with pytest.raises(ValueError, match='coarse_to_fine'):
        MotorPolicy({'token': experts['token']}, temperature=0.0)


def test_the_core_ensembles_each_expert_with_its_own_size_unless_overridden(tmp_path):
    policy = MotorPolicy(_experts(tmp_path))
    core = MotorCore(policy, 'coarse_to_fine', step_s=0.05)
    assert core.ensemble.size == 3
    core.on_waypoints('sg0', [WP], 0.0)
    pos, quat = np.array([0.4, 0.1, 0.3]), WP[3:7].copy()
    for k in range(4):
        core.act(np.zeros(8), pos, quat, now=0.05 * k)
    assert len(core.ensemble.history) == 3
    assert core.on_expert('token') and core.ensemble.size == 1
    assert core.ensemble.history == []  # another size: the earlier chunks are dropped
    chunk, _, _ = core.act(np.zeros(8), pos, quat, now=0.25)
    raw, _, _ = policy.act('token', np.zeros(8), core.tracker.update(pos), pos, quat)
    assert np.allclose(chunk, raw)  # size 1: the chunk itself
    assert core.on_expert('coarse_to_fine') and core.ensemble.size == 3
    # an override (the node's ensemble parameter, eval's --ensemble) for every expert
    for m, want in ((1, (1, 1)), (2, (2, 2)), (0, (3, 1)), (None, (3, 1)), (99, (4, 4))):
        c = MotorCore(policy, 'coarse_to_fine', ensemble=m)
        got = (c.ensemble.size,)
        c.on_expert('token')
        assert got + (c.ensemble.size,) == want, m
    with pytest.raises(ValueError, match='ensemble'):
        MotorCore(policy, 'token', ensemble=-1)
    driver = PolicyDriver(policy, lambda obs: 'coarse_to_fine')
    assert driver.core.ensemble.size == 3


def test_bad_run_time_settings_are_refused_by_the_config():
    with pytest.raises(ModelConfigError, match='ensemble'):
        build_expert('token', horizon=4, ensemble=5, encoder=ENC)
    with pytest.raises(ModelConfigError, match='ensemble'):
        build_expert('token', horizon=4, ensemble=0, encoder=ENC)
    with pytest.raises(ModelConfigError, match='temperature'):
        build_expert('coarse_to_fine', horizon=4, temperature=-1.0, encoder=ENC)


def test_eval_runs_the_checkpoint_settings_and_its_flags_override_them(tmp_path):
    from hybrid_vla_ros.evaluation.motor_eval import evaluate_motor
    from hybrid_vla_ros.robot import load_robot
    robot = load_robot('arm7')
    torch.manual_seed(0)
    c2f = build_expert('coarse_to_fine', horizon=4, n_bins=16, ensemble=3, temperature=0.0,
                       encoder=ENC)
    save_checkpoint(str(tmp_path / 'coarse_to_fine'), c2f,
                    robot={'name': robot.name, 'joint_names': list(robot.joint_names),
                           'gripper_joint': robot.gripper_joint})
    kw = dict(checkpoints=str(tmp_path), progress=False, robot=robot)
    out = evaluate_motor('reach', 'coarse_to_fine', 1, 1000000, **kw)
    assert out['runtime'] == {'coarse_to_fine': {'ensemble': 3, 'temperature': 0.0}}
    out = evaluate_motor('reach', 'coarse_to_fine', 1, 1000000, ensemble=1, temperature=0.5,
                         **kw)
    assert out['runtime'] == {'coarse_to_fine': {'ensemble': 1, 'temperature': 0.5}}


def test_the_recorded_training_command_keeps_zero_values():
    import argparse

    from hybrid_vla_ros.training.train_motor import command_line
    args = argparse.Namespace(target='motor', expert='coarse_to_fine', temperature=0.0,
                              seed=0, bins=None, log_error=True, resume=False)
    cmd = command_line(args)
    assert '--temperature 0.0' in cmd and '--seed 0' in cmd and '--log-error' in cmd
    assert '--bins' not in cmd and '--resume' not in cmd


def test_balanced_tasks_weigh_every_task_equally_whatever_its_step_count():
    from hybrid_vla_ros.training.motor_data import task_balanced_weights
    from hybrid_vla_ros.training.train_motor import _batches
    # reach: 3 short episodes (12 steps), stack: 1 long one (60 steps)
    w = task_balanced_weights(['reach', 'stack', 'reach', 'reach'], [4, 60, 4, 4])
    assert w.shape == (72,) and np.isclose(w.sum(), 1.0)
    is_reach = np.r_[np.ones(4), np.zeros(60), np.ones(8)].astype(bool)
    assert np.isclose(w[is_reach].sum(), 0.5) and np.isclose(w[~is_reach].sum(), 0.5)
    with pytest.raises(ValueError, match='episode lengths'):
        task_balanced_weights(['reach'], [4, 5])
    # the sampler follows the weights: about half of the draws are the 12 reach samples
    data = {'state': torch.arange(72.0)[:, None]}
    batches = _batches(data, 72, torch.Generator().manual_seed(0),
                       weights=torch.from_numpy(w))
    drawn = torch.cat([next(batches)['state'][:, 0] for _ in range(50)]).long().numpy()
    share = is_reach[drawn].mean()
    assert 0.45 < share < 0.55, share
    # unweighted: the reach samples are drawn in proportion to their count (12/72)
    plain = _batches(data, 72, torch.Generator().manual_seed(0))
    drawn = torch.cat([next(plain)['state'][:, 0] for _ in range(50)]).long().numpy()
    assert np.isclose(is_reach[drawn].mean(), 12 / 72)
