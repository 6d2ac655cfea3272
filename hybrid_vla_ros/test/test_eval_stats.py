"""Success rates carry their episode count and a 95% Wilson interval."""
import pytest

from hybrid_vla_ros.evaluation.stats import (
    episode_errors,
    format_rate,
    intervals_overlap,
    success_summary,
    wilson_interval,
)


def test_wilson_interval_matches_known_values_and_stays_inside_0_1():
    lo, hi = wilson_interval(43, 50)   # 86%: the textbook Wilson interval is 73.8-93.0%
    assert lo == pytest.approx(0.7381, abs=1e-3) and hi == pytest.approx(0.9305, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-3)
    assert all(v != v for v in wilson_interval(0, 0))   # NaN: no episodes, no rate


def test_success_summary_and_overlap():
    s = success_summary([True] * 48 + [False] * 2)
    assert (s['successes'], s['episodes'], s['success_rate']) == (48, 50, 0.96)
    assert s['success_ci'][0] < 0.96 < s['success_ci'][1]
    assert format_rate(s) == '96% (48/50, CI 87-99%)'
    assert intervals_overlap([0.1, 0.5], [0.4, 0.9]) and not intervals_overlap([0.1, 0.3],
                                                                                [0.4, 0.9])
    assert episode_errors([0.123456, float('nan'), 3]) == [0.1235, None, 3.0]


def test_instruction_templates_are_filled_from_each_scene(tmp_path):
    from hybrid_vla_ros.evaluation.hierarchy_eval import fill_instruction, instruction_templates
    from hybrid_vla_ros.sim.tasks import get_task
    f = tmp_path / 'phrasings.tsv'
    f.write_text('# task<TAB>phrasing\npick_place\tset the {obj} down on the {pad} pad\n'
                 'stack\tput {a} on {b}\n')
    task = get_task('pick_place')
    (template,) = instruction_templates(str(f), task)
    texts = {fill_instruction(template, task, seed) for seed in range(1000000, 1000020)}
    for seed in (1000000, 1000001):
        fields = task.phrase_fields(task.sample(seed))
        assert fill_instruction(template, task, seed) == \
            f"set the {fields['obj']} down on the {fields['pad']} pad"
    assert len(texts) > 1   # the scenes differ, so do the sentences
    f.write_text('pick_place\tput the {thing} away\n')
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['thing'\]"):
        instruction_templates(str(f), task)
    f.write_text('pick_place\tput the {obj away\n')
    with pytest.raises(ValueError, match='phrasings.tsv'):
        instruction_templates(str(f), task)
    with pytest.raises(ValueError, match="no phrasing for task 'reach'"):
        instruction_templates(str(f), get_task('reach'))
