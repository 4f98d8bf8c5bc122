"""rllib-paper: residual PPO on Ray RLlib for pushing an A5 sheet into a taped frame with an SO-101."""

from rllib_paper.envs.registry import PAPER_ENV_ID, RESIDUAL_ENV_ID, register_gym_envs, register_with_rllib

__version__ = "0.1.0"
__all__ = ["PAPER_ENV_ID", "RESIDUAL_ENV_ID", "__version__", "register_gym_envs", "register_with_rllib"]

register_gym_envs()
