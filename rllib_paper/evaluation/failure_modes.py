"""Why episodes fail, and which failures a residual fixes: the phase-2 failure modes as rules.

The modes are the ones docs/pusher.md found by tracing the scripted pusher's phase-2 failures
(and the settle phase added one). Each failed episode gets the first mode whose rule holds,
in this order:

| mode           | rule (episodes.parquet columns)       | what happened                                      |
|----------------|---------------------------------------|----------------------------------------------------|
| `not_at_rest`  | `success_once` and not `success`      | crossed in, then slid out or still moving at the end |
| `low_grip`     | `dr_paper_friction_scale` < 0.88      | the finger slid over the sheet, not dragging it      |
| `knocked_away` | `final_distance` > 0.20 m             | pushed away (at full reach the fingertip strikes it) |
| `at_frame`     | `final_distance` <= 0.02 m            | at the frame, turned or an edge over the tape        |
| `left_short`   | anything else                         | 2 to 20 cm from the centre when the steps ran out    |

A paired breakdown over the same seeds says, per mode, how many of A's failures B fixes and
how many new failures B makes; per DR bin, both rates. The thresholds are ``FailureRules``
fields, so a task with other numbers changes data, not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rllib_paper.evaluation.statistics import equal_width_bins

MODES = ("not_at_rest", "low_grip", "knocked_away", "at_frame", "left_short")
DR_COLUMNS = ("dr_paper_friction_scale", "dr_paper_x", "dr_paper_yaw")  # the draws the modes point to
PAIRED_BINS = 4


@dataclass(frozen=True)
class FailureRules:
    low_grip_friction: float = 0.88  # paper friction scale below which the pusher's finger slides (docs/pusher.md)
    knocked_away_m: float = 0.20  # final centre distance beyond which the sheet was pushed away
    at_frame_m: float = 0.02  # final centre distance within which the sheet reached the frame


def failure_modes(episodes: pd.DataFrame, rules: FailureRules | None = None) -> pd.Series:
    """Each episode's failure mode (missing, ``isna``, for a success), by the rules in the module docstring."""
    rules = rules or FailureRules()
    success = episodes["success"].astype(bool).to_numpy()
    once = episodes["success_once"].astype(bool).to_numpy() if "success_once" in episodes else success
    distance = episodes["final_distance"].to_numpy()
    friction = episodes.get("dr_paper_friction_scale", pd.Series(np.ones(len(episodes)))).to_numpy()
    conditions = [
        once & ~success,
        friction < rules.low_grip_friction,
        distance > rules.knocked_away_m,
        distance <= rules.at_frame_m,
    ]
    mode = np.select(conditions, list(MODES[:-1]), default=MODES[-1]).astype(object)
    mode[success] = None
    return pd.Series(mode, index=episodes.index, name="failure_mode")


def paired_failure_breakdown(a: pd.DataFrame, b: pd.DataFrame, rules: FailureRules | None = None) -> dict[str, Any]:
    """Per mode: A's failures, how many B fixes, B's failures, how many are new (A succeeded);
    per DR bin of the draws the modes point to: both rates. Paired by seed over the seeds both
    hold (mcnemar checks they are the same); the DR draws are the seed's, so A's are used."""
    a, b = a.set_index("seed"), b.set_index("seed")
    seeds = a.index.intersection(b.index)
    a, b = a.loc[seeds], b.loc[seeds]
    mode_a, mode_b = failure_modes(a, rules), failure_modes(b, rules)
    success_a, success_b = mode_a.isna(), mode_b.isna()
    modes = {
        m: {
            "a_failures": int((mode_a == m).sum()),
            "fixed_by_b": int(((mode_a == m) & success_b).sum()),
            "b_failures": int((mode_b == m).sum()),
            "new_in_b": int(((mode_b == m) & success_a).sum()),
        }
        for m in MODES
    }
    return {"episodes": len(seeds), "modes": modes, "by_dr_bin": _paired_bins(a, success_a, success_b)}


def _paired_bins(draws: pd.DataFrame, success_a: pd.Series, success_b: pd.Series) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for column in DR_COLUMNS:
        if column not in draws or draws[column].nunique() < 2:
            continue
        values = draws[column].to_numpy()
        edges, index = equal_width_bins(values, values.min(), values.max(), PAIRED_BINS)
        out[column.removeprefix("dr_")] = [
            {
                "bin": [float(edges[i]), float(edges[i + 1])],
                "episodes": int((index == i).sum()),
                "success_a": int(success_a[index == i].sum()),
                "success_b": int(success_b[index == i].sum()),
            }
            for i in range(PAIRED_BINS)
        ]
    return out


def format_breakdown(result: dict[str, Any]) -> str:
    lines = [
        f"failure modes over {result['episodes']} paired seeds (rules: evaluation/failure_modes.py)",
        f"  {'mode':<13} {'A fails':>7} {'B fixes':>7} {'B fails':>7} {'new in B':>8}",
    ]
    for mode, row in result["modes"].items():
        lines.append(
            f"  {mode:<13} {row['a_failures']:>7} {row['fixed_by_b']:>7} {row['b_failures']:>7} {row['new_in_b']:>8}"
        )
    if result["by_dr_bin"]:
        lines.append("  successes by DR bin, A -> B of the bin's episodes:")
    for name, rows in result["by_dr_bin"].items():
        cells = [
            f"[{r['bin'][0]:.3g}, {r['bin'][1]:.3g}] {r['success_a']}->{r['success_b']}/{r['episodes']}" for r in rows
        ]
        lines.append(f"    {name}: " + "; ".join(cells))
    return "\n".join(lines)
