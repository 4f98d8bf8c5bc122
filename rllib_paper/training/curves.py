"""Learning curves as PNG (matplotlib, Agg): a training run's ``curves.png`` and a sweep's.

A run's figure has four panels against env steps: the rolling success rate (the last
``success_window`` episodes, 100 by default), the mean episode return, the mean |residual|
and the policy entropy, one point per iteration. The Trainer redraws it whenever it writes a
checkpoint. A sweep's figure has every trial's rolling success curve on one axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CURVES_NAME = "curves.png"
PANELS = (
    ("success_rolling", "success, last {window} episodes"),
    ("episode_return", "episode return (mean)"),
    ("residual_abs_mean", "mean |residual|"),
    ("entropy", "policy entropy"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        try:
            x, y = float(row["env_steps_total"]), float(row.get(key, "nan"))
        except (TypeError, ValueError, KeyError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def write_training_curves(
    rows: Sequence[Mapping[str, Any]], path: str | Path, window: int = 100, title: str = ""
) -> Path:
    """Draw a run's metrics rows (MetricsLog.rows, or metrics.csv read back) into ``path``."""
    from rllib_paper.runtime.files import atomic_write

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    for ax, (key, label) in zip(axes.flat, PANELS, strict=True):
        xs, ys = _series(rows, key)
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None, color="#4878a8")
        ax.set_title(label.format(window=window), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if key == "success_rolling":
            ax.set_ylim(-0.02, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("env steps", fontsize=8)
    fig.suptitle(title or "training", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def write_sweep_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, metric: str = "success_rolling"
) -> Path:
    """Every trial's ``metric`` against env steps on one axis (``histories``: trial label -> rows)."""
    from rllib_paper.runtime.files import atomic_write

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, rows in sorted(histories.items()):
        xs, ys = _series(rows, metric)
        if xs:
            ax.plot(xs, ys, label=str(label), linewidth=1.2)
    ax.set_xlabel("env steps", fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    if metric == "success_rolling":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if histories:
        ax.legend(fontsize=7, ncol=2 if len(histories) > 8 else 1)
    ax.set_title(f"sweep: {len(histories)} trials", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path
