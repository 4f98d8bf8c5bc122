"""Failure modes by rule, and the paired breakdown of what B fixes and what it breaks."""

import pandas as pd

from rllib_paper.evaluation.failure_modes import (
    MODES,
    FailureRules,
    failure_modes,
    format_breakdown,
    paired_failure_breakdown,
)


def _episodes(rows):
    columns = ["seed", "success", "success_once", "final_distance", "dr_paper_friction_scale", "dr_paper_x"]
    return pd.DataFrame(rows, columns=columns)


# seed, success, success_once, final distance (m), friction scale, start x (m)
A = _episodes(
    [
        (0, True, True, 0.001, 1.0, 0.25),
        (1, False, True, 0.030, 0.80, 0.25),  # crossed, slid out: not at rest (before low grip)
        (2, False, False, 0.050, 0.85, 0.30),  # low grip
        (3, False, False, 0.300, 1.00, 0.34),  # knocked away
        (4, False, False, 0.010, 1.00, 0.22),  # at the frame
        (5, False, False, 0.080, 1.10, 0.28),  # left short
        (6, True, True, 0.002, 1.10, 0.21),
    ]
)


def test_each_failure_gets_the_first_mode_whose_rule_holds():
    modes = [m if isinstance(m, str) else None for m in failure_modes(A)]  # a success has no mode
    assert modes == [None, "not_at_rest", "low_grip", "knocked_away", "at_frame", "left_short", None]
    # The thresholds are data: a stricter grip rule moves seed 2 to left_short.
    assert failure_modes(A, FailureRules(low_grip_friction=0.82)).tolist()[2] == "left_short"


def test_paired_breakdown_counts_fixes_and_new_failures_per_mode():
    b = A.copy()
    b.loc[b.seed == 2, ["success", "success_once", "final_distance"]] = [True, True, 0.001]  # fixes low grip
    b.loc[b.seed == 5, ["success", "success_once", "final_distance"]] = [True, True, 0.001]  # fixes left short
    b.loc[b.seed == 6, ["success", "success_once", "final_distance"]] = [False, False, 0.06]  # new: left short
    result = paired_failure_breakdown(A, b.sample(frac=1.0, random_state=0))  # row order does not matter
    modes = result["modes"]
    assert list(modes) == list(MODES) and result["episodes"] == 7
    assert modes["low_grip"] == {"a_failures": 1, "fixed_by_b": 1, "b_failures": 0, "new_in_b": 0}
    assert modes["left_short"] == {"a_failures": 1, "fixed_by_b": 1, "b_failures": 1, "new_in_b": 1}
    assert modes["knocked_away"] == {"a_failures": 1, "fixed_by_b": 0, "b_failures": 1, "new_in_b": 0}
    friction = result["by_dr_bin"]["paper_friction_scale"]
    assert sum(row["episodes"] for row in friction) == 7
    assert sum(row["success_a"] for row in friction) == 2 and sum(row["success_b"] for row in friction) == 3
    text = format_breakdown(result)
    assert "left_short" in text and "paper_friction_scale" in text
