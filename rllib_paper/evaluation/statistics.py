"""Small statistics helpers: binomial intervals for success rates, equal-width bins.

Wilson intervals (via scipy) rather than the normal approximation, because success rates
near 0 or 1 on a few hundred episodes are exactly where the normal interval lies.
"""

from __future__ import annotations

import numpy as np
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


def equal_width_bins(values: np.ndarray, low: float, high: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of ``bins`` equal bins over [low, high] and each value's bin (ends clipped into the
    first and last bin, the top edge into the last)."""
    edges = np.linspace(low, high, bins + 1)
    index = np.clip(np.searchsorted(edges, np.asarray(values), side="right") - 1, 0, bins - 1)
    return edges, index
