"""Success rates carry their episode count and a 95% Wilson interval."""
import pytest

from hybrid_vla_ros.evaluation.stats import (format_rate, intervals_overlap, success_summary,
                                             wilson_interval)


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
