"""Training metrics: one row per iteration from RLlib's result, to CSV, TensorBoard and the console.

The rolling success rate is ours (over the last ``success_window`` episodes, from the task
callback's per-episode summaries), not RLlib's smoothed episode return: it is the number a
user compares with an evaluation. An episode whose base policy failed is logged (episodes.csv,
``base_policy_failed`` in the row) but is no result: it stays out of the window and the means,
and the trainer stops the run on it (``loop.py``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rllib_paper.envs.paper_env import REWARD_TERMS
from rllib_paper.training.callbacks import EPISODES_KEY
from rllib_paper.training.run_dir import append_csv

# Per-iteration task metrics (metrics.csv columns a sweep may optimise).
METRIC_COLUMNS = (
    "success_rate",
    "success_rolling",
    "episode_return",
    "episode_length",
    "residual_abs_mean",
    "final_distance",
    "env_steps_total",
)
EPISODE_FIELDS = (
    "iteration",
    "success",
    "length",
    "return",
    "residual_abs_mean",
    "final_distance",
    "final_yaw_error",
    "sim_unstable",
    "base_policy_failed",
    "node_id",
    *(f"reward_{t}" for t in REWARD_TERMS),
)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class MetricsLog:
    """The run's metrics so far; ``record`` adds an iteration and writes it everywhere at once."""

    def __init__(self, root: Path, success_window: int) -> None:
        self.root = root
        self.window: deque[bool] = deque(maxlen=success_window)
        self.rows: list[dict[str, Any]] = []
        self.episode_rows: list[dict[str, Any]] = []
        self.base_failures: list[dict[str, Any]] = []  # the last recorded iteration's failed-base episodes
        self.env_steps = 0
        self.wall_seconds = 0.0  # summed over all sessions of this run
        self._tb = None

    def restore(self, rows: Sequence[dict[str, Any]], episode_rows: Sequence[dict[str, Any]]) -> None:
        """Continue from the rows a resumed checkpoint covers (as read back from the CSVs)."""
        self.rows, self.episode_rows = list(rows), list(episode_rows)
        if self.rows:
            self.env_steps = int(float(self.rows[-1]["env_steps_total"]))
            self.wall_seconds = float(self.rows[-1]["wall_seconds_total"])
        for row in self.episode_rows:
            self.window.append(row["success"] in ("True", "1", "true"))

    def open_tensorboard(self, first_iteration: int) -> None:
        from tensorboardX import SummaryWriter

        # purge_step hides events a killed session logged past the restored iteration.
        purge = first_iteration + 1 if first_iteration > 0 else None
        self._tb = SummaryWriter(str(self.root / "tensorboard"), purge_step=purge)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    @property
    def window_full(self) -> bool:
        return len(self.window) == self.window.maxlen

    def record(self, result: dict[str, Any], iteration: int) -> dict[str, Any]:
        runners = result.get("env_runners", {})
        episodes = runners.get(EPISODES_KEY) or []
        if isinstance(episodes, dict):  # an aggregated series arrives as {"items": [...]}
            episodes = episodes.get("items", [])
        for episode in episodes:
            if not episode.get("base_policy_failed"):
                self.window.append(bool(episode["success"]))
            self.episode_rows.append({"iteration": iteration, **episode})
        ended, n = episodes, len(episodes)
        self.base_failures = [e for e in ended if e.get("base_policy_failed")]
        episodes = [e for e in ended if not e.get("base_policy_failed")]  # the results
        sampled = int(runners.get("num_env_steps_sampled", 0) or 0)
        self.env_steps += sampled
        learner = result.get("learners", {}).get("default_policy", {})
        # PPO times its synchronous sampling phase; APPO's runners sample through the whole
        # iteration (there is no such phase), so its sampling time is the iteration's.
        timers = result.get("timers", {})
        sample_seconds = _to_float(timers.get("env_runner_sampling_timer", result.get("time_this_iter_s")))
        # Each runner's own smoothed means per sample request: time sampling, and time waiting
        # for the next request (under PPO: the learner update; under APPO: ~0).
        busy, idle = _to_float(runners.get("sample")), _to_float(runners.get("time_between_sampling"))

        def mean(key: str) -> float:
            return float(np.mean([e[key] for e in episodes])) if episodes else float("nan")

        row: dict[str, Any] = {
            "iteration": iteration,
            "env_steps": sampled,
            "env_steps_total": self.env_steps,
            "episodes": n,
            "base_policy_failed": len(self.base_failures),
            "success_rate": mean("success"),
            "success_rolling": float(np.mean(self.window)) if self.window else float("nan"),
            "rolling_episodes": len(self.window),
            "episode_return": mean("return"),
            "episode_length": mean("length"),
            "residual_abs_mean": mean("residual_abs_mean"),
            "final_distance": mean("final_distance"),
            **{f"reward_{t}": mean(f"reward_{t}") for t in REWARD_TERMS},
            "policy_loss": _to_float(learner.get("policy_loss")),
            "vf_loss": _to_float(learner.get("vf_loss")),
            "entropy": _to_float(learner.get("entropy")),
            "mean_kl": _to_float(learner.get("mean_kl_loss")),
            "lr": _to_float(learner.get("default_optimizer_learning_rate")),
            "sample_seconds": sample_seconds,
            "sample_steps_per_s": sampled / sample_seconds if sample_seconds and sample_seconds > 0 else float("nan"),
            "runner_idle_fraction": idle / (idle + busy) if idle + busy > 0 else float("nan"),
            "iteration_seconds": _to_float(result.get("time_this_iter_s")),
            "wall_seconds_total": round(self.wall_seconds, 3),
            "nodes": len({e["node_id"] for e in ended}),
        }
        self.rows.append(row)
        append_csv(self.root / "metrics.csv", [row], list(row))
        append_csv(self.root / "episodes.csv", self.episode_rows[-n:] if n else [], EPISODE_FIELDS)
        if self._tb is not None:
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}", value, iteration)
            self._tb.flush()
        return row

    @staticmethod
    def line(row: dict[str, Any]) -> str:
        """The console line of one iteration."""
        head = f"iter {row['iteration']:4d} | steps {row['env_steps_total']:>9,} | {row['iteration_seconds']:5.1f} s | "
        tail = f"{row['sample_steps_per_s']:.0f} steps/s sampled"
        rolling = (
            f"{row['success_rolling']:.2f} last {row['rolling_episodes']}" if row["rolling_episodes"] else "none yet"
        )
        if not row["episodes"]:
            # Long episodes and a small batch: say so rather than print a row of nan.
            return f"{head}no episode ended this iteration, success {rolling} | {tail}"
        if row.get("base_policy_failed"):  # the trainer stops on it; the figures would mean nothing
            return f"{head}BASE POLICY FAILED in {row['base_policy_failed']} of {row['episodes']} episodes | {tail}"
        terms = " ".join(f"{t[:4]} {row[f'reward_{t}']:.1f}" for t in REWARD_TERMS)
        return (
            f"{head}success {row['success_rate']:.2f} it, {rolling} | "
            f"return {row['episode_return']:7.1f} | len {row['episode_length']:5.1f} | "
            f"|res| {row['residual_abs_mean']:.3f} | {terms} | {tail}"
        )
