"""The router's labels come from measured per-phase outcomes (``training/router_fit.py``)."""
import json
import os

from hybrid_vla_ros.training.router_fit import best_expert, fit_router, situations


def _r(successes, median, ms=0.5):
    return {'successes': successes, 'episodes': 10, 'median_error_mm': median,
            'inference_ms_p50': ms}


def test_best_expert_ranks_success_then_error_then_latency():
    assert best_expert({'a': _r(9, 5.0), 'b': _r(8, 0.1)}) == 'a'
    assert best_expert({'a': _r(9, 5.0), 'b': _r(9, 0.1)}) == 'b'
    assert best_expert({'a': _r(9, 1.0, 0.9), 'b': _r(9, 1.0, 0.3)}) == 'b'


def test_situations_are_the_starts_of_each_subgoal():
    found = situations('pick_place', [5000], 'arm7')
    assert [k for k, _, _ in found] == list(range(8))
    skills = [text.split()[0] for _, text, _ in found]
    assert skills[:3] == ['move_above', 'descend', 'grasp']
    # the states differ: each is where the arm was when that sub-goal began
    assert len({tuple(s.round(4)) for _, _, s in found}) == 8


def test_fit_router_labels_each_phase_from_its_own_runs(tmp_path):
    out = str(tmp_path / 'router')
    lines = []
    report = fit_router(['reach'], ['token', 'flow'], 1, out, robot='arm7', log=lines.append)
    # one run per expert on the task, then the non-base expert on the task's one phase
    assert len(lines) == 3 and sum('phase (0,' in x for x in lines) == 1
    base = report['base']['reach']
    assert base in ('token', 'flow')
    table = report['phase_table']['reach'][0]
    assert set(table) == {'token', 'flow'}
    assert report['labels']['reach'] == [best_expert(table)]
    assert os.path.isfile(os.path.join(out, 'model.safetensors'))
    with open(os.path.join(out, 'labels.json')) as f:
        assert json.load(f)['labels'] == report['labels']
