"""Figures without training: a run's curves, a sweep's curves and the paired comparison figure."""

import matplotlib.image
import pandas as pd

from rllib_paper.evaluation.compare_plot import write_compare_plot
from rllib_paper.evaluation.report import mcnemar
from rllib_paper.training.curves import write_sweep_curves, write_training_curves


def _rows(n, offset=0.0):
    return [
        {
            "env_steps_total": 1000 * (i + 1),
            "success_rolling": min(1.0, offset + 0.1 * i),
            "episode_return": -50 + i,
            "residual_abs_mean": 0.3 - 0.01 * i,
            "entropy": "nan" if i == 0 else 8.0 - 0.1 * i,  # as read back from metrics.csv, with a gap
        }
        for i in range(n)
    ]


def test_training_and_sweep_curves_are_pngs(tmp_path):
    write_training_curves(_rows(5), tmp_path / "curves.png", window=100, title="t")
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[2] in (3, 4)
    write_training_curves([], tmp_path / "empty.png")  # before the first iteration: empty axes, no error
    write_sweep_curves({"a": _rows(4), "b": _rows(6, 0.2)}, tmp_path / "sweep.png")
    assert matplotlib.image.imread(tmp_path / "sweep.png").shape[0] > 100
    assert not list(tmp_path.glob("*.tmp"))


def test_paired_figure_of_a_comparison(tmp_path):
    a = pd.DataFrame({"seed": range(6), "success": [True, False, False, True, False, False]})
    b = pd.DataFrame({"seed": range(6), "success": [True, True, True, False, True, False]})
    result = mcnemar(a, b, "base", "base + residual")
    assert result["table"] == {"both": 1, "only_a": 1, "only_b": 3, "neither": 1}
    write_compare_plot(result, tmp_path / "cmp.png")
    assert matplotlib.image.imread(tmp_path / "cmp.png").shape[1] > 500
