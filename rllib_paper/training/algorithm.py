"""The RLlib algorithm a TrainConfig describes: PPO on the new API stack over the residual env.

Everything RLlib-specific about a run is here, so the loop and the run directory never touch
RLlib's config API, and a second algorithm is a second function beside this one.
"""

from __future__ import annotations

from pathlib import Path

from rllib_paper.config import ConfigError
from rllib_paper.training.config import TrainConfig


def build_algorithm_config(config: TrainConfig):
    """The PPOConfig for a TrainConfig (new API stack, residual env, task-metrics callback)."""
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_paper.envs.registry import register_with_rllib
    from rllib_paper.residual.rl_module import ResidualPPOTorchRLModule
    from rllib_paper.sim.observation import observation_normalizer
    from rllib_paper.training.callbacks import TaskMetricsCallback

    env_config = config.env
    center, scale = observation_normalizer(env_config)
    runners, ppo, learners = config.env_runners, config.ppo, config.learners
    use_gpu = learners.gpu == "yes" or (learners.gpu == "auto" and torch.cuda.is_available())
    if learners.gpu == "yes" and not torch.cuda.is_available():
        raise ConfigError("learners.gpu='yes': torch sees no GPU here; use 'auto' or 'no'")
    batch_per_learner = max(1, ppo.train_batch_size // max(1, learners.num_learners))
    return (
        PPOConfig()
        .environment(register_with_rllib(), env_config=env_config.to_dict())
        .env_runners(
            num_env_runners=runners.num_env_runners,
            num_envs_per_env_runner=runners.num_envs_per_env_runner,
            num_cpus_per_env_runner=runners.num_cpus_per_env_runner,
            custom_resources_per_env_runner=dict(runners.custom_resources_per_env_runner),
            sample_timeout_s=runners.sample_timeout_s,
            gym_env_vectorize_mode="vector_entry_point" if runners.vectorize == "vector" else "sync",
        )
        .learners(num_learners=learners.num_learners, num_gpus_per_learner=1 if use_gpu else 0)
        .training(
            lr=ppo.lr_schedule(),
            num_epochs=ppo.num_epochs,
            clip_param=ppo.clip_param,
            entropy_coeff=ppo.entropy_schedule(),
            gamma=ppo.gamma,
            lambda_=ppo.lambda_,
            train_batch_size_per_learner=batch_per_learner,
            minibatch_size=min(ppo.minibatch_size, batch_per_learner),
            vf_loss_coeff=ppo.vf_loss_coeff,
            vf_clip_param=ppo.vf_clip_param,
            grad_clip=ppo.grad_clip,
            use_kl_loss=ppo.use_kl_loss,
            kl_coeff=ppo.kl_coeff,
            kl_target=ppo.kl_target,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=ResidualPPOTorchRLModule,
                model_config={
                    "fcnet_hiddens": list(ppo.hiddens),
                    "fcnet_activation": "tanh",
                    "free_log_std": True,
                    "init_std": ppo.init_std,
                    "obs_center": center,
                    "obs_scale": scale,
                },
            )
        )
        .callbacks(TaskMetricsCallback)
        .debugging(seed=config.seed, log_level="ERROR")
    )


def keep_trainable_logs_in(path: Path) -> None:
    """Ray's Trainable base class makes a log directory under ~/ray_results for every Algorithm
    built outside Tune, with no setting to move it: point that default at the run directory."""
    import ray.tune.trainable.trainable as trainable_module

    path.mkdir(parents=True, exist_ok=True)
    trainable_module.DEFAULT_STORAGE_PATH = str(path)
