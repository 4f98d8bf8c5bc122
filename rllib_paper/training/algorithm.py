"""The RLlib algorithm a TrainConfig describes: PPO or APPO on the new API stack over the residual env.

Everything RLlib-specific about a run is here, so the loop and the run directory never touch
RLlib's config API; each algorithm is one function setting its training options.
"""

from __future__ import annotations

from pathlib import Path

from rllib_paper.config import ConfigError
from rllib_paper.training.config import TrainConfig


def build_algorithm_config(config: TrainConfig):
    """The PPOConfig or APPOConfig for a TrainConfig (new API stack, residual env, task-metrics
    callback); both share the env, runners, learners, callbacks, seed and residual module."""
    import torch

    from rllib_paper.envs.registry import register_with_rllib
    from rllib_paper.training.callbacks import TaskMetricsCallback

    runners, learners = config.env_runners, config.learners
    use_gpu = learners.gpu == "yes" or (learners.gpu == "auto" and torch.cuda.is_available())
    if learners.gpu == "yes" and not torch.cuda.is_available():
        raise ConfigError("learners.gpu='yes': torch sees no GPU here; use 'auto' or 'no'")
    algo_config = _appo_training(config) if config.algorithm == "appo" else _ppo_training(config)
    return (
        algo_config.environment(register_with_rllib(), env_config=_env_config(config))
        .env_runners(
            num_env_runners=runners.num_env_runners,
            num_envs_per_env_runner=runners.num_envs_per_env_runner,
            num_cpus_per_env_runner=runners.num_cpus_per_env_runner,
            custom_resources_per_env_runner=dict(runners.custom_resources_per_env_runner),
            sample_timeout_s=runners.sample_timeout_s,
            gym_env_vectorize_mode="vector_entry_point" if runners.vectorize == "vector" else "sync",
        )
        .learners(num_learners=learners.num_learners, num_gpus_per_learner=1 if use_gpu else 0)
        .rl_module(rl_module_spec=_residual_module_spec(config))
        .callbacks(TaskMetricsCallback)
        .debugging(seed=config.seed, log_level="ERROR")
    )


def _env_config(config: TrainConfig) -> dict:
    """The task's EnvConfig as RLlib's env_config, plus the runner's paired-rollout setting (only
    when set, so that configs without it build the very env_config they always did)."""
    from rllib_paper.envs.registry import ROLLOUTS_PER_START_KEY

    env_config = config.env.to_dict()
    if config.env_runners.rollouts_per_start > 1:
        env_config[ROLLOUTS_PER_START_KEY] = config.env_runners.rollouts_per_start
    return env_config


def _ppo_training(config: TrainConfig):
    from ray.rllib.algorithms.ppo import PPOConfig

    from rllib_paper.residual.learner import CRITIC_LR_KEY, FOREACH_KEY, WARMUP_KEY, ResidualPPOTorchLearner

    ppo = config.ppo
    batch_per_learner = max(1, ppo.train_batch_size // max(1, config.learners.num_learners))
    return PPOConfig().training(
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
        learner_class=ResidualPPOTorchLearner,
        learner_config_dict={
            WARMUP_KEY: ppo.critic_warmup_steps,
            CRITIC_LR_KEY: ppo.critic_lr_scale,
            FOREACH_KEY: config.learners.foreach_update,
        },
    )


def _appo_training(config: TrainConfig):
    """APPO: runners sample continuously; the learner trains in its own thread (in the driver
    with num_learners=0) from a circular buffer of batches. One reported iteration is
    ppo.train_batch_size sampled env steps, as under PPO (RLlib's IMPALA default is 10 s)."""
    from ray.rllib.algorithms.appo import APPOConfig

    ppo, appo = config.ppo, config.appo
    return (
        APPOConfig()
        .training(
            lr=ppo.lr_schedule(),
            entropy_coeff=ppo.entropy_schedule(),
            gamma=ppo.gamma,
            clip_param=ppo.clip_param,
            vf_loss_coeff=ppo.vf_loss_coeff,
            grad_clip=ppo.grad_clip,
            use_kl_loss=ppo.use_kl_loss,
            kl_coeff=ppo.kl_coeff,
            kl_target=ppo.kl_target,
            train_batch_size_per_learner=appo.train_batch_size,
            minibatch_size=appo.minibatch_size,
            num_epochs=appo.num_epochs,
            circular_buffer_num_batches=appo.circular_buffer_num_batches,
            circular_buffer_iterations_per_batch=appo.circular_buffer_iterations_per_batch,
            target_network_update_freq=appo.target_network_update_freq,
            tau=appo.tau,
            broadcast_interval=appo.broadcast_interval,
            timeout_s_sampler_manager=appo.sampler_wait_s,
        )
        .env_runners(
            rollout_fragment_length=appo.rollout_fragment_length,
            max_requests_in_flight_per_env_runner=appo.max_requests_in_flight_per_env_runner,
        )
        .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=ppo.train_batch_size)
    )


def _residual_module_spec(config: TrainConfig):
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_paper.residual.rl_module import ResidualAPPOTorchRLModule, ResidualPPOTorchRLModule
    from rllib_paper.sim.observation import observation_normalizer

    center, scale = observation_normalizer(config.env)
    return RLModuleSpec(
        module_class=ResidualAPPOTorchRLModule if config.algorithm == "appo" else ResidualPPOTorchRLModule,
        model_config={
            "fcnet_hiddens": list(config.ppo.hiddens),
            "fcnet_activation": "tanh",
            "vf_share_layers": config.ppo.vf_share_layers,
            "free_log_std": True,
            "init_std": config.ppo.init_std,
            "obs_center": center,
            "obs_scale": scale,
        },
    )


def keep_trainable_logs_in(path: Path) -> None:
    """Ray's Trainable base class makes a log directory under ~/ray_results for every Algorithm
    built outside Tune, with no setting to move it: point that default at the run directory."""
    import ray.tune.trainable.trainable as trainable_module

    path.mkdir(parents=True, exist_ok=True)
    trainable_module.DEFAULT_STORAGE_PATH = str(path)
