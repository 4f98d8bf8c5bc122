"""Wilson intervals against published and closed-form values, as the reports print them."""

import math

import pytest
from scipy.stats import norm

from rllib_paper.evaluation.report import rate
from rllib_paper.evaluation.statistics import format_rate, wilson_interval


def _closed_form(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Wilson (1927) score interval: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    z = norm.ppf(0.5 + confidence / 2)
    p = successes / trials
    scale = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score, no correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_wilson_matches_published_values(successes, trials, low, high):
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


def test_wilson_of_the_committed_pusher_rate():
    """148/200 is the scripted pusher's committed phase-2 rate: [67.5, 79.6] %."""
    low, high = wilson_interval(148, 200)
    assert (round(100 * low, 1), round(100 * high, 1)) == (67.5, 79.6)
    assert format_rate(148, 200) == "74.0 % (148/200), 95 % Wilson CI [67.5, 79.6]"
    assert rate(148, 200) == {"rate": 0.74, "successes": 148, "episodes": 200, "ci95": [low, high]}


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
@pytest.mark.parametrize(("successes", "trials"), [(0, 1), (1, 1), (3, 7), (138, 200), (171, 200), (999, 1000)])
def test_wilson_matches_the_closed_form(successes, trials, confidence):
    expected = _closed_form(successes, trials, confidence)
    assert wilson_interval(successes, trials, confidence) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_no_trials_is_the_whole_unit_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)
