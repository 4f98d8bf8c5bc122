"""Task metrics from inside RLlib: each finished episode's summary travels to the driver.

The env computes the whole-episode figures itself (``info["episode_summary"]`` at the last
step), so the callback is one dict copy per episode, not a Python hook per env step. The
summaries are logged as an item series: RLlib gathers them from every env runner into the
iteration's result, where the trainer turns them into this iteration's success rate, the
rolling success over the last N episodes, reward terms and placement. A summary with
``base_policy_failed`` (and ``base_policy_error``) makes the trainer stop the run.
"""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback

EPISODES_KEY = "task_episodes"


class TaskMetricsCallback(RLlibCallback):
    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        info = episode.get_infos(-1)
        summary = info.get("episode_summary") if isinstance(info, dict) else None
        if summary is not None and metrics_logger is not None:
            metrics_logger.log_value(EPISODES_KEY, dict(summary), reduce="item_series")
