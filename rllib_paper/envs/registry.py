"""Environment ids for gymnasium and RLlib/Tune.

``import rllib_paper`` registers the gymnasium ids; RLlib needs its own registry entry in
every process that builds envs, which ``register_with_rllib`` provides (call it before
building an AlgorithmConfig; Ray ships the registration to the workers).
"""

from __future__ import annotations

import gymnasium

PAPER_ENV_ID = "rllib_paper/PaperSquare-v0"
RESIDUAL_ENV_ID = "rllib_paper/ResidualPaperSquare-v0"
# The env_config key training adds (beside the EnvConfig fields) for the vector env's paired
# rollouts: env_runners.rollouts_per_start, which is a runner setting, not part of the task.
ROLLOUTS_PER_START_KEY = "rollouts_per_start"


def register_gym_envs() -> None:
    registered = gymnasium.registry
    if PAPER_ENV_ID not in registered:
        gymnasium.register(
            id=PAPER_ENV_ID, entry_point="rllib_paper.envs.paper_env:PaperSquareEnv", disable_env_checker=True
        )
    if RESIDUAL_ENV_ID not in registered:
        gymnasium.register(
            id=RESIDUAL_ENV_ID, entry_point="rllib_paper.envs.residual:ResidualPaperEnv", disable_env_checker=True
        )


class EpisodeSummaryInfo(gymnasium.Wrapper):
    """Pass on only what training reads from ``info``: the episode summary at the last step.

    Gymnasium's vector envs merge every info key of every env into arrays on every step; with
    the full per-step diagnostics that costs about 0.8 ms per env step here (a third of the
    physics). Training needs the summary alone (training/callbacks.py); evaluation and the
    gymnasium ids keep the full info.
    """

    def reset(self, **kwargs):
        obs, _ = self.env.reset(**kwargs)
        return obs, {}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        summary = info.get("episode_summary")
        return obs, reward, terminated, truncated, ({"episode_summary": summary} if summary is not None else {})


def make_residual_env(env_config):
    """RLlib's env creator: one residual env, or with ``num_envs`` (RLlib's vector entry point)
    the one-process ResidualVectorEnv of that many."""
    # RLlib passes an EnvContext (a dict with worker metadata attributes) or, for the vector entry
    # point, a plain dict (the runner index reaches the vector env through training/callbacks.py).
    env_config = dict(env_config)
    num_envs = env_config.pop("num_envs", None)
    rollouts_per_start = int(env_config.pop(ROLLOUTS_PER_START_KEY, 1))
    if num_envs is not None:
        from rllib_paper.envs.vector import ResidualVectorEnv

        return ResidualVectorEnv(env_config, int(num_envs), rollouts_per_start=rollouts_per_start)
    from rllib_paper.envs.residual import ResidualPaperEnv

    return EpisodeSummaryInfo(ResidualPaperEnv(env_config))


def register_with_rllib(name: str = RESIDUAL_ENV_ID) -> str:
    """Register the residual env with Ray Tune/RLlib under ``name`` and return the name.

    Use it as ``PPOConfig().environment(register_with_rllib(), env_config={...})`` where
    env_config is an EnvConfig as a dict (``EnvConfig().to_dict()``) or any part of it.
    """
    from ray.tune.registry import register_env

    register_env(name, make_residual_env)
    return name
