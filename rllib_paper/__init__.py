"""rllib-paper: residual PPO on Ray RLlib for pushing an A5 sheet into a taped frame with an SO-101."""

from rllib_paper.runtime.process_env import apply_process_defaults

apply_process_defaults()  # before numpy and MuJoCo load: headless GL, CPU-independent BLAS kernels

from rllib_paper.envs.registry import PAPER_ENV_ID, RESIDUAL_ENV_ID, register_gym_envs, register_with_rllib  # noqa: E402

__version__ = "0.1.0"
__all__ = ["PAPER_ENV_ID", "RESIDUAL_ENV_ID", "__version__", "register_gym_envs", "register_with_rllib"]

register_gym_envs()
