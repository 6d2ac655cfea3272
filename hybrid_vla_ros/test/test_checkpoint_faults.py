"""A bad checkpoint is a clear error at load (naming the file), never a crash during control:
truncated, corrupt, NaN weights, a config that does not match the weights, invalid JSON, and a
motor expert for another robot; the motor node refuses it at start and exits non-zero."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from hybrid_vla_ros.models.checkpoint import CheckpointError, load_checkpoint
from hybrid_vla_ros.motor.policy import motor_checkpoint

ARM7 = [f'joint_{i}' for i in range(1, 8)]


@pytest.fixture
def flow(tmp_path):
    """A copy of the shipped flow expert (small) to break."""
    d = tmp_path / 'flow'
    shutil.copytree(motor_checkpoint('flow'), d)
    return d


def test_the_shipped_checkpoint_loads_for_its_robot(flow):
    assert load_checkpoint(str(flow), joint_names=ARM7).config.action_dim == 8


def test_truncated_weights(flow):
    w = flow / 'model.safetensors'
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match='model.safetensors: not a readable safetensors'):
        load_checkpoint(str(flow))


def test_corrupt_header(flow):
    w = flow / 'model.safetensors'
    data = bytearray(w.read_bytes())
    data[8:40] = b'\xff' * 32   # inside the JSON header
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint(str(flow))


def test_nan_weights(flow):
    w = str(flow / 'model.safetensors')
    tensors = load_file(w)
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float('nan')
    save_file(tensors, w)
    with pytest.raises(CheckpointError, match=f"key '{key}' contains NaN/Inf"):
        load_checkpoint(str(flow))


def test_config_that_does_not_match_the_weights(flow):
    meta = json.loads((flow / 'config.json').read_text())
    meta['config']['encoder']['hidden_dim'] *= 2
    (flow / 'config.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='has shape'):
        load_checkpoint(str(flow))


@pytest.mark.parametrize('text,match', [('{"format": 1, "kind": "fl', 'unreadable'),
                                        ('[1, 2]', 'expected a JSON object'),
                                        ('{"format": 1, "kind": "flow", "config": '
                                         '{"horizon": -3}}', 'invalid')])
def test_invalid_config_json(flow, text, match):
    (flow / 'config.json').write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(str(flow))


def test_a_checkpoint_for_another_robot(flow):
    with pytest.raises(CheckpointError, match='6 arm joints .* another robot'):
        load_checkpoint(str(flow), joint_names=ARM7[:6])
    meta = json.loads((flow / 'config.json').read_text())
    meta['robot'] = {'name': 'other_arm', 'joint_names': [f'j{i}' for i in range(7)],
                     'gripper_joint': 'g'}
    (flow / 'config.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='trained for robot other_arm'):
        load_checkpoint(str(flow), joint_names=ARM7)
    assert load_checkpoint(str(flow), joint_names=[f'j{i}' for i in range(7)]).config


def test_motor_node_refuses_a_truncated_checkpoint_at_start(tmp_path):
    root = tmp_path / 'motor'
    shutil.copytree(os.path.dirname(motor_checkpoint('flow')), root,
                    ignore=shutil.ignore_patterns('coarse_to_fine_b*'))
    w = root / 'token' / 'model.safetensors'
    w.write_bytes(w.read_bytes()[:1000])
    proc = subprocess.run(
        [sys.executable, '-m', 'hybrid_vla_ros.nodes.motor_policy', '--ros-args',
         '-p', f'checkpoint_dir:={root}'], capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert 'token/model.safetensors: not a readable safetensors file' in out, out[-3000:]


@pytest.mark.parametrize('damage', ['truncated', 'nan', 'json'])
def test_planner_checkpoints_go_through_the_same_checks(tmp_path, damage):
    """The strategic and tactical planners' weights are read by the same reader as the motor
    experts (models/checkpoint.py): a damaged file is a CheckpointError naming it."""
    import torch

    from hybrid_vla_ros.planning.strategic_planner import DEFAULT_CHECKPOINT
    from hybrid_vla_ros.planning.tactical_planner import TacticalPlanner
    d = tmp_path / 'planner'
    shutil.copytree(DEFAULT_CHECKPOINT, d)
    w, j = d / 'tactical.safetensors', d / 'tactical.json'
    if damage == 'truncated':
        w.write_bytes(w.read_bytes()[:500])
        match = 'tactical.safetensors: not a readable safetensors file'
    elif damage == 'nan':
        t = load_file(str(w))
        k = next(k for k, v in t.items() if v.is_floating_point())
        t[k] = torch.full_like(t[k], float('nan'))
        save_file(t, str(w))
        match = 'contains NaN/Inf'
    else:
        j.write_text('{not json')
        match = 'tactical.json: unreadable or invalid JSON'
    with pytest.raises(CheckpointError, match=match):
        TacticalPlanner.from_checkpoint(d)
