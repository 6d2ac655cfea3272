"""Achieved rate and deadline misses of one periodic output (ROS-free; the nodes report it in
``/diagnostics`` and ``hybrid-vla eval --ros`` sums it into its JSON).

The deadline, precisely: a node owes one output per period ``T`` (1 / its ``rate``). A period
counts as **missed** when

* the gap ``g`` between two consecutive outputs exceeds ``1.5 T`` (the output came more than
  half a period late, or a period produced nothing): that gap holds ``max(1, round(g / T) - 1)``
  missed periods; or
* the work of a cycle (from its trigger to its output being published) took longer than ``T``.

``deadline_miss = missed / periods``, where ``periods`` = gaps measured + the periods missed
inside over-long gaps (about the active time / T). Gaps into or out of an *idle* spell (the node
had nothing to do: no plan, no waypoints) are not measured: :meth:`idle` ends a spell. The
achieved rate is ``gaps / active_s`` (active_s = the summed measured gaps).
"""
from typing import Dict, Optional

# The cumulative counters published in /diagnostics (keys prefixed ``rate_``).
COUNTERS = ('cycles', 'gaps', 'periods', 'missed', 'overruns', 'active_s', 'max_gap_ms')


class RateMonitor:
    def __init__(self, rate_hz: float):
        if rate_hz <= 0:
            raise ValueError(f'rate must be > 0, got {rate_hz}')
        self.target_hz = float(rate_hz)
        self.period = 1.0 / self.target_hz
        self.last: Optional[float] = None
        self.cycles = self.gaps = self.periods = self.missed = self.overruns = 0
        self.active_s = 0.0
        self.max_gap = 0.0

    def tick(self, now: float, work_s: float = 0.0) -> None:
        """One output at ``now`` (s) whose work took ``work_s`` (s)."""
        missed = 0
        if self.last is not None:
            gap = max(0.0, now - self.last)
            self.gaps += 1
            self.active_s += gap
            self.max_gap = max(self.max_gap, gap)
            missed = max(1, round(gap / self.period) - 1) if gap > 1.5 * self.period else 0
            self.periods += 1 + missed
        if work_s > self.period:
            self.overruns += 1
            missed = max(missed, 1)
        self.missed += missed
        self.cycles += 1
        self.last = now

    def idle(self) -> None:
        """Nothing to do this period: the next output starts a new spell (no gap measured)."""
        self.last = None

    def counters(self) -> Dict[str, float]:
        return {'target_hz': self.target_hz, 'cycles': self.cycles, 'gaps': self.gaps,
                'periods': self.periods, 'missed': self.missed, 'overruns': self.overruns,
                'active_s': round(self.active_s, 4), 'max_gap_ms': round(self.max_gap * 1e3, 2)}


def summarize(target_hz: float, delta: Dict[str, float]) -> Dict[str, float]:
    """The JSON row of one level from counter differences over an evaluation."""
    periods = delta.get('periods', 0)
    active = delta.get('active_s', 0.0)
    return {'target_hz': target_hz,
            'achieved_hz': round(delta.get('gaps', 0) / active, 3) if active > 0 else None,
            'deadline_miss': round(delta.get('missed', 0) / periods, 5) if periods else None,
            'missed_periods': int(delta.get('missed', 0)), 'periods': int(periods),
            'work_overruns': int(delta.get('overruns', 0)),
            'max_gap_ms': delta.get('max_gap_ms')}


def rate_values(monitor: RateMonitor) -> list:
    """The monitor's counters as diagnostic_msgs/KeyValue (keys ``rate_<counter>``)."""
    from diagnostic_msgs.msg import KeyValue
    return [KeyValue(key=f'rate_{k}', value=str(v)) for k, v in monitor.counters().items()]


def parse_rate_values(values) -> Dict[str, float]:
    """Inverse of :func:`rate_values` for a DiagnosticStatus's values ({} if none)."""
    out = {}
    for kv in values:
        if kv.key.startswith('rate_') and (kv.key[5:] in COUNTERS or kv.key == 'rate_target_hz'):
            try:
                out[kv.key[5:]] = float(kv.value)
            except ValueError:
                pass
    return out
