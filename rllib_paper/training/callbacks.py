"""Task metrics from inside RLlib: each finished episode's summary travels to the driver.

The env computes the whole-episode figures itself (``info["episode_summary"]`` at the last
step), so the callback is one dict copy per episode, not a Python hook per env step. The
summaries are logged as an item series: RLlib gathers them from every env runner into the
iteration's result, where the trainer turns them into this iteration's success rate, the
rolling success over the last N episodes, reward terms and placement. A summary with
``base_policy_failed`` (and ``base_policy_error``) makes the trainer stop the run.

It also tells each runner's vector env which runner it is on (``on_environment_created``, before
the first reset): RLlib seeds runner k with ``config.seed + k`` and hands the env creator a plain
dict, so the runner index has to arrive here for every env to get its own episode stream
(envs/vector.py).
"""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback

EPISODES_KEY = "task_episodes"


class TaskMetricsCallback(RLlibCallback):
    def on_environment_created(self, *, env_runner=None, metrics_logger=None, env=None, env_context=None, **kwargs):
        from rllib_paper.envs.vector import ResidualVectorEnv

        if isinstance(env, ResidualVectorEnv) and env_context is not None:
            env.stream = int(env_context.worker_index or 0)

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        info = episode.get_infos(-1)
        summary = info.get("episode_summary") if isinstance(info, dict) else None
        if summary is not None and metrics_logger is not None:
            metrics_logger.log_value(EPISODES_KEY, dict(summary), reduce="item_series")
