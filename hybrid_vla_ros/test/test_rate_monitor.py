"""The deadline bookkeeping of the nodes (rate_monitor) and the executor's re-sync on a jump."""
import numpy as np

from hybrid_vla_ros.execution.chunk_stream import ChunkStream, ExecutorLimits
from hybrid_vla_ros.execution.rate_monitor import RateMonitor, summarize

J = [f'joint_{i}' for i in range(1, 8)]


def test_on_time_outputs_miss_nothing():
    m = RateMonitor(20.0)
    for k in range(101):
        m.tick(k * 0.05 + (0.01 if k % 2 else 0.0))  # jitter below 1.5 periods
    c = m.counters()
    assert (c['cycles'], c['gaps'], c['periods'], c['missed']) == (101, 100, 100, 0)
    row = summarize(20.0, c)
    assert abs(row['achieved_hz'] - 20.0) < 0.01 and row['deadline_miss'] == 0.0


def test_long_gaps_and_overruns_count_as_missed_periods():
    m = RateMonitor(10.0)
    m.tick(0.0)
    m.tick(0.1)
    m.tick(0.4)  # a 3-period gap: 2 periods produced nothing
    m.tick(0.5, work_s=0.2)  # on time, but its work took 2 periods
    c = m.counters()
    assert c['missed'] == 3 and c['overruns'] == 1 and c['periods'] == 5


def test_idle_spells_are_not_gaps():
    m = RateMonitor(5.0)
    m.tick(0.0)
    m.idle()
    m.tick(10.0)
    assert m.counters()['gaps'] == 0 and m.counters()['missed'] == 0


def _stream(tol):
    lim = ExecutorLimits(np.full(7, -3.0), np.full(7, 3.0), np.full(7, 2.0))
    return ChunkStream(J, lim, chunk_timeout=0.3, resync_tolerance=tol)


def test_hold_restarts_from_the_measured_position_after_a_jump():
    for tol, expect in ((0.0, 0.5), (0.3, 0.0)):
        s = _stream(tol)
        s.tick(0.0, np.full(7, 0.5))  # holding at 0.5
        q, _ = s.tick(0.01, np.zeros(7))  # the arm was moved (e.g. a sim reset)
        assert np.allclose(q, expect), (tol, q)
        assert s.n_resyncs == (tol > 0)


def test_small_tracking_errors_do_not_resync():
    s = _stream(0.3)
    s.tick(0.0, np.full(7, 0.5))
    q, _ = s.tick(0.01, np.full(7, 0.45))
    assert np.allclose(q, 0.5) and s.n_resyncs == 0


def test_clear_holds_at_the_next_measured_position():
    s = _stream(0.0)
    s.tick(0.0, np.full(7, 0.5))
    s.clear()
    q, _ = s.tick(0.01, np.full(7, 0.05))  # within any tolerance: still re-anchored
    assert np.allclose(q, 0.05) and s.hold_reason == 'no chunk yet'
