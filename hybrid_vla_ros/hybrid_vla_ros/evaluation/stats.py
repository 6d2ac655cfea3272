"""Success rates with their episode count and 95% Wilson interval, as every evaluation reports
them (``successes``, ``episodes``, ``success_rate``, ``success_ci`` in the JSON)."""
import math
from typing import Sequence


def wilson_interval(successes: int, n: int, z: float = 1.96):
    """95% Wilson score interval of a success rate (sound at 0/n and n/n, unlike +-1.96 se)."""
    if n <= 0:
        return [float('nan'), float('nan')]
    p = successes / n
    d = 1.0 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [float(max(0.0, c - h)), float(min(1.0, c + h))]


def success_summary(outcomes: Sequence[bool]) -> dict:
    """``successes``, ``episodes``, ``success_rate`` and ``success_ci`` of episode outcomes."""
    k, n = int(sum(bool(o) for o in outcomes)), len(outcomes)
    return {'successes': k, 'episodes': n, 'success_rate': k / n if n else float('nan'),
            'success_ci': wilson_interval(k, n)}


def episode_errors(errors_mm) -> list:
    """Every episode's final error (mm, in episode order; None where there was none), the
    ``errors_mm`` of an eval JSON, for distributions and plots."""
    return [round(float(x), 4) if math.isfinite(float(x)) else None for x in errors_mm]


def intervals_overlap(a, b) -> bool:
    """Whether two intervals [lo, hi] overlap (a difference the intervals do not support)."""
    return not (a[1] < b[0] or b[1] < a[0])


def format_rate(summary: dict) -> str:
    """'86% (43/50, CI 74-93%)'."""
    lo, hi = summary['success_ci']
    return (f"{100 * summary['success_rate']:.0f}% ({summary['successes']}/"
            f"{summary['episodes']}, CI {100 * lo:.0f}-{100 * hi:.0f}%)")
