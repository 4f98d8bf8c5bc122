"""Small statistics helpers: binomial intervals for success rates.

Wilson intervals (via scipy) rather than the normal approximation, because success rates
near 0 or 1 on a few hundred episodes are exactly where the normal interval lies.
"""

from __future__ import annotations

from scipy.stats import binomtest


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    if trials <= 0:
        return (0.0, 1.0)
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def format_rate(successes: int, trials: int, confidence: float = 0.95) -> str:
    low, high = wilson_interval(successes, trials, confidence)
    rate = successes / trials if trials else 0.0
    level = round(confidence * 100)
    return f"{100 * rate:.1f} % ({successes}/{trials}), {level} % Wilson CI [{100 * low:.1f}, {100 * high:.1f}]"
