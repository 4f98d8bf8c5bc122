"""TrainConfig: one typed, validated description of a residual-PPO run.

A run is fully described by this object (YAML file + ``--set key=value`` overrides), and
its snapshot in the run directory is what ``--resume`` and the evaluation read back. It
holds no Ray objects so it can be validated, printed and diffed before anything starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rllib_paper.config import (
    ConfigError,
    EnvConfig,
    ResidualConfig,
    _check_range,
    apply_overrides,
    dr_preset,
    from_dict,
)
from rllib_paper.resources import shipped_dir


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        hi = "inf" if high is None else str(high)
        raise ConfigError(f"{name}={value!r}: allowed range is [{low}, {hi}] integers")


def _merge(default: Any, value: Any) -> Any:
    """``value`` over ``default`` for one env section: a mapping keeps the defaults it does not set
    (a preset name, or ``{preset: ...}``, replaces the randomization section as a whole)."""
    if isinstance(default, Mapping) and isinstance(value, Mapping) and "preset" not in value:
        return {**default, **value}
    return value


def default_train_env() -> EnvConfig:
    """A run's env unless its YAML says otherwise: phase-2 DR over the scripted pusher."""
    return EnvConfig(randomization=dr_preset("phase2"), residual=ResidualConfig(base_policy="scripted"))


@dataclass(frozen=True)
class PPOSection:
    """PPO and network settings. Seed defaults: lr 3e-4, 10 epochs, clip 0.2, entropy 0.005."""

    lr: float = 3e-4
    # Optional linear annealing of the learning rate to lr_final over lr_decay_steps env steps
    # (CleanRL's anneal_lr): large steps while the residual finds its corrections, small ones
    # while it refines them, so late updates stop undoing what earlier ones learned.
    lr_final: float | None = None
    lr_decay_steps: int = 1_000_000
    num_epochs: int = 10
    clip_param: float = 0.2
    entropy_coeff: float = 0.005
    # Optional linear decay of the entropy bonus to entropy_coeff_final over entropy_decay_steps
    # env steps: exploration early, no pressure to widen the noise once the residual refines.
    entropy_coeff_final: float | None = None
    entropy_decay_steps: int = 1_000_000
    gamma: float = 0.99
    lambda_: float = 0.95
    train_batch_size: int = 4000  # env steps per iteration (over all runners)
    minibatch_size: int = 256
    vf_loss_coeff: float = 0.5
    # RLlib clips the value loss at vf_clip_param; our returns reach tens, so a small clip would
    # zero the value gradient. Large by default, still configurable.
    vf_clip_param: float = 1000.0
    grad_clip: float = 0.5
    use_kl_loss: bool = True
    kl_coeff: float = 0.2
    kl_target: float = 0.01
    hiddens: tuple[int, ...] = (256, 256)
    # Separate hidden stacks for the mean and the value (false: what RLlib's PPOConfig puts in
    # every PPO model config, and what the 85.5 % headline runs trained with), or one shared
    # stack (true: the value loss, on returns of tens, then shapes the actor's features and,
    # under one global-norm clip, shrinks its gradient: the headline's settings learnt 78.0 %
    # with it against 85.5 %, docs/experiments.md "Shared layers").
    vf_share_layers: bool = False
    # Residual starts as the base: zero mean (last layer zero-initialised) and this std.
    init_std: float = 0.3
    # Critic first (residual/learner.py): until this many env steps are sampled, updates train
    # the value function only, on the base's own rollouts (plus the initial exploration noise).
    critic_warmup_steps: int = 0
    # The critic's own Adam optimizer at this multiple of lr (and its own gradient clipping);
    # None: one optimizer for both networks, as RLlib does.
    critic_lr_scale: float | None = None

    def __post_init__(self) -> None:
        _check_range("ppo.lr", self.lr, 0.0, 1.0, low_open=True)
        if self.lr_final is not None:
            _check_range("ppo.lr_final", self.lr_final, 0.0, 1.0, low_open=True)
        _check_int("ppo.lr_decay_steps", self.lr_decay_steps, 1)
        _check_int("ppo.num_epochs", self.num_epochs, 1, 1000)
        _check_range("ppo.clip_param", self.clip_param, 0.0, 10.0, low_open=True)
        _check_range("ppo.entropy_coeff", self.entropy_coeff, 0.0, 10.0)
        if self.entropy_coeff_final is not None:
            _check_range("ppo.entropy_coeff_final", self.entropy_coeff_final, 0.0, 10.0)
        _check_int("ppo.entropy_decay_steps", self.entropy_decay_steps, 1)
        _check_range("ppo.gamma", self.gamma, 0.0, 1.0)
        _check_range("ppo.lambda_", self.lambda_, 0.0, 1.0)
        _check_int("ppo.train_batch_size", self.train_batch_size, 1)
        _check_int("ppo.minibatch_size", self.minibatch_size, 1, self.train_batch_size)
        _check_range("ppo.vf_loss_coeff", self.vf_loss_coeff, 0.0, 1e3)
        _check_range("ppo.vf_clip_param", self.vf_clip_param, 0.0, 1e9, low_open=True)
        _check_range("ppo.grad_clip", self.grad_clip, 0.0, 1e9, low_open=True)
        if not isinstance(self.use_kl_loss, bool):
            raise ConfigError(f"ppo.use_kl_loss={self.use_kl_loss!r}: expected true or false")
        _check_range("ppo.kl_coeff", self.kl_coeff, 0.0, 1e3)
        _check_range("ppo.kl_target", self.kl_target, 0.0, 10.0, low_open=True)
        if not self.hiddens or any(not isinstance(h, int) or h < 1 for h in self.hiddens):
            raise ConfigError(f"ppo.hiddens={list(self.hiddens)!r}: expected a list of positive layer sizes")
        _check_range("ppo.init_std", self.init_std, 0.0, 10.0, low_open=True)
        _check_int("ppo.critic_warmup_steps", self.critic_warmup_steps, 0)
        if not isinstance(self.vf_share_layers, bool):
            raise ConfigError(f"ppo.vf_share_layers={self.vf_share_layers!r}: expected true or false")
        if self.critic_lr_scale is not None:
            _check_range("ppo.critic_lr_scale", self.critic_lr_scale, 0.0, 1e3, low_open=True)
            if self.vf_share_layers:
                raise ConfigError(
                    f"ppo.critic_lr_scale={self.critic_lr_scale!r} needs ppo.vf_share_layers=false: "
                    "a critic learning rate of its own needs a critic network of its own"
                )

    def entropy_schedule(self) -> float | list[list[float]]:
        """RLlib's entropy_coeff: a constant, or [[env_step, value], ...] interpolated linearly."""
        return _linear_schedule(self.entropy_coeff, self.entropy_coeff_final, self.entropy_decay_steps)

    def lr_schedule(self) -> float | list[list[float]]:
        """RLlib's lr: a constant, or [[env_step, value], ...] interpolated linearly."""
        return _linear_schedule(self.lr, self.lr_final, self.lr_decay_steps)


def _linear_schedule(start: float, final: float | None, steps: int) -> float | list[list[float]]:
    # RLlib holds the last value after the final point.
    return start if final is None else [[0, start], [steps, final]]


ALGORITHMS = ("appo", "ppo")


@dataclass(frozen=True)
class APPOSection:
    """APPO-only settings (``algorithm: appo``): asynchronous PPO (IMPACT) on RLlib's IMPALA machinery.

    Everything APPO shares with PPO comes from the ``ppo:`` section: lr (and its anneal),
    entropy_coeff (and its decay), gamma, clip_param, vf_loss_coeff, grad_clip, use_kl_loss,
    kl_coeff, kl_target, hiddens, init_std, and ``ppo.train_batch_size`` as the env steps that
    make one reported iteration (a metrics row, the checkpoint cadence), so iteration counts
    mean the same under both algorithms. APPO does not use ppo.lambda_ (V-trace has no lambda
    here), ppo.vf_clip_param, ppo.num_epochs or ppo.minibatch_size. V-trace is always on:
    RLlib 2.60 refuses vtrace=False.
    """

    # Each learner update is PPO's on a smaller batch: num_epochs passes in minibatches over
    # train_batch_size env steps (40 gradient steps per 1000 env steps, PPO's defaults' rate),
    # with V-trace and IMPACT's clipped target correcting the lag between runner and learner.
    train_batch_size: int = 1000  # env steps per update; a multiple of rollout_fragment_length
    rollout_fragment_length: int = 50  # steps each env samples per request; V-trace's trajectory length
    minibatch_size: int | None = 250  # a multiple of rollout_fragment_length; null: the whole batch
    num_epochs: int = 10
    # The learner's in-queue holds N batches, each drawn at most K times (IMPACT's replay).
    # K=1 with epochs above: RLlib 2.60 returns one result per update() call but its learner
    # thread queues one per gradient update, so K>1 grows that queue without bound (K-1 per batch).
    circular_buffer_num_batches: int = 4
    circular_buffer_iterations_per_batch: int = 1
    # The target ("old") policy that clip, IS ratio and KL refer to is refreshed once
    # freq * N * K * train_batch_size trained env steps have passed; RLlib counts a batch as
    # trained once per minibatch step, so 1 refreshes it at every batch (PPO's old policy).
    target_network_update_freq: float = 1.0
    tau: float = 1.0  # 1: the target is copied (IMPACT's hard update); <1: Polyak averaging
    broadcast_interval: int = 1  # training steps between pushes of the weights the runners pull
    # Sample requests queued per runner. Runners pull the newest weights when a request starts
    # (not when it is queued), so depth costs no policy lag; it keeps runners sampling while the
    # driver waits for the learner thread to finish an update (num_learners=0).
    max_requests_in_flight_per_env_runner: int = 8
    # How long the driver blocks waiting for samples per training step; RLlib's 0 busy-polls,
    # which on few cores takes CPU and the GIL from the learner thread in the same process.
    sampler_wait_s: float = 0.05

    def __post_init__(self) -> None:
        _check_int("appo.rollout_fragment_length", self.rollout_fragment_length, 1, 100_000)
        _check_int("appo.train_batch_size", self.train_batch_size, self.rollout_fragment_length)
        for name in ("train_batch_size", "minibatch_size"):
            value = getattr(self, name)
            if value is not None and isinstance(value, int) and value % self.rollout_fragment_length:
                raise ConfigError(
                    f"appo.{name}={value}: must be a multiple of "
                    f"appo.rollout_fragment_length={self.rollout_fragment_length}"
                )
        if self.minibatch_size is not None:
            _check_int("appo.minibatch_size", self.minibatch_size, 1, self.train_batch_size)
        _check_int("appo.num_epochs", self.num_epochs, 1, 1000)
        _check_int("appo.circular_buffer_num_batches", self.circular_buffer_num_batches, 1, 10_000)
        _check_int("appo.circular_buffer_iterations_per_batch", self.circular_buffer_iterations_per_batch, 1, 10_000)
        _check_range("appo.target_network_update_freq", self.target_network_update_freq, 0.0, 1e6, low_open=True)
        _check_range("appo.tau", self.tau, 0.0, 1.0, low_open=True)
        _check_int("appo.broadcast_interval", self.broadcast_interval, 1, 10_000)
        _check_int("appo.max_requests_in_flight_per_env_runner", self.max_requests_in_flight_per_env_runner, 1, 100)
        _check_range("appo.sampler_wait_s", self.sampler_wait_s, 0.0, 60.0)


@dataclass(frozen=True)
class EnvRunnersSection:
    """Where sampling runs: each runner is a Ray actor with its own MuJoCo envs."""

    num_env_runners: int = 2
    num_envs_per_env_runner: int = 1
    num_cpus_per_env_runner: float = 1.0
    # e.g. {"cpu_node": 0.01} pins runners to nodes started with --resources '{"cpu_node": N}'.
    custom_resources_per_env_runner: dict[str, float] = field(default_factory=dict)
    sample_timeout_s: float = 300.0
    # How a runner steps its envs: "vector" is our one-process ResidualVectorEnv (arrays filled
    # in place, infos trimmed to the episode summary); "sync" is gymnasium's SyncVectorEnv.
    # Same episodes either way (tests/test_vector_env.py).
    vectorize: str = "vector"
    # Paired rollouts: each episode start (sheet pose and DR draw) is played by this many envs of a
    # runner at once, under different exploration noise (envs/vector.py). 1: every env its own
    # episodes. Must divide num_envs_per_env_runner; needs vectorize "vector".
    rollouts_per_start: int = 1

    def __post_init__(self) -> None:
        _check_int("env_runners.num_env_runners", self.num_env_runners, 0, 10_000)
        _check_int("env_runners.num_envs_per_env_runner", self.num_envs_per_env_runner, 1, 1024)
        _check_int("env_runners.rollouts_per_start", self.rollouts_per_start, 1, 1024)
        if self.num_envs_per_env_runner % self.rollouts_per_start:
            raise ConfigError(
                f"env_runners.rollouts_per_start={self.rollouts_per_start}: must divide "
                f"env_runners.num_envs_per_env_runner={self.num_envs_per_env_runner}"
            )
        if self.rollouts_per_start > 1 and self.vectorize != "vector":
            raise ConfigError(
                f"env_runners.rollouts_per_start={self.rollouts_per_start} needs env_runners.vectorize='vector' "
                f"(got {self.vectorize!r})"
            )
        _check_range("env_runners.num_cpus_per_env_runner", self.num_cpus_per_env_runner, 0.0, 1024.0)
        for name, amount in self.custom_resources_per_env_runner.items():
            _check_range(f"env_runners.custom_resources_per_env_runner.{name}", amount, 0.0, 1e6)
        _check_range("env_runners.sample_timeout_s", self.sample_timeout_s, 0.0, 1e6, low_open=True)
        if self.vectorize not in ("vector", "sync"):
            raise ConfigError(f"env_runners.vectorize={self.vectorize!r}: allowed values are ['sync', 'vector']")


@dataclass(frozen=True)
class LearnersSection:
    """num_learners 0 = one learner in the driver process; gpu "auto" uses a GPU when torch sees one."""

    num_learners: int = 0
    gpu: str = "auto"  # "auto" | "yes" | "no"
    torch_threads: int = 2
    # The same PPO update in fewer tensor operations (residual/learner.py): one NaN check for all
    # gradients, foreach clipping and Adam. False: RLlib's per-tensor update, to the bit.
    foreach_update: bool = True

    def __post_init__(self) -> None:
        _check_int("learners.num_learners", self.num_learners, 0, 1024)
        if not isinstance(self.foreach_update, bool):
            raise ConfigError(f"learners.foreach_update={self.foreach_update!r}: expected true or false")
        if self.gpu not in ("auto", "yes", "no"):
            raise ConfigError(f"learners.gpu={self.gpu!r}: allowed values are ['auto', 'no', 'yes']")
        _check_int("learners.torch_threads", self.torch_threads, 1, 1024)


@dataclass(frozen=True)
class StopSection:
    """The run stops at the first limit reached; 0 means no limit of that kind."""

    iterations: int = 0
    env_steps: int = 0
    wall_minutes: float = 0.0

    def __post_init__(self) -> None:
        _check_int("stop.iterations", self.iterations, 0)
        _check_int("stop.env_steps", self.env_steps, 0)
        _check_range("stop.wall_minutes", self.wall_minutes, 0.0, 1e6)
        if not (self.iterations or self.env_steps or self.wall_minutes):
            raise ConfigError("stop: set at least one of iterations, env_steps, wall_minutes (all are 0)")


@dataclass(frozen=True)
class TrainConfig:
    env: EnvConfig = field(default_factory=default_train_env)  # the same schema as every command's env
    algorithm: str = "ppo"  # "ppo" (synchronous) | "appo" (learns while sampling; settings in appo:)
    ppo: PPOSection = field(default_factory=PPOSection)  # PPO, and what APPO shares with it
    appo: APPOSection = field(default_factory=APPOSection)
    env_runners: EnvRunnersSection = field(default_factory=EnvRunnersSection)
    learners: LearnersSection = field(default_factory=LearnersSection)
    stop: StopSection = field(default_factory=lambda: StopSection(iterations=10))
    seed: int = 0
    checkpoint_every: int = 10  # iterations; the best (by success over 100 episodes) and final are kept too
    success_window: int = 100  # episodes in the rolling success rate
    address: str | None = None  # Ray address ("auto" joins a running cluster); None: local Ray or RAY_ADDRESS

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm={self.algorithm!r}: allowed values are {sorted(ALGORITHMS)}")
        if self.algorithm == "appo" and (self.ppo.critic_warmup_steps or self.ppo.critic_lr_scale is not None):
            raise ConfigError(
                "ppo.critic_warmup_steps / ppo.critic_lr_scale: PPO's learner options; algorithm='appo' "
                "does not support them (set algorithm: ppo, or leave them at 0 / null)"
            )
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        _check_int("success_window", self.success_window, 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrainConfig:
        """From YAML: the ``env`` section is laid over the run defaults (``default_train_env``)."""
        data = dict(data or {})
        env = data.get("env", {})
        if isinstance(env, Mapping):
            defaults = default_train_env().to_dict()
            data["env"] = {**defaults, **{k: _merge(defaults.get(k), v) for k, v in env.items()}}
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PACKAGED_CONFIGS = shipped_dir("configs")


def resolve_config_path(name: str | Path) -> Path:
    """A YAML path, or the name of a config shipped in rllib_paper/configs/ (e.g. residual_scripted)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{path.stem}.yaml"
    if path.suffix in ("", ".yaml") and packaged.is_file() and path.parent == Path("."):
        return packaged
    shipped = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))
    raise ConfigError(f"config={str(name)!r}: no such file, and not one of the shipped configs {shipped}")


def load_train_config(path: str | Path | None = None, assignments: Sequence[str] = ()) -> TrainConfig:
    data: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    return TrainConfig.from_dict(apply_overrides(data, assignments))


def stop_reached(stop: StopSection, iteration: int, env_steps: int, minutes: float) -> str | None:
    """Which stop criterion fired, or None."""
    if stop.iterations and iteration >= stop.iterations:
        return f"iterations {iteration} >= {stop.iterations}"
    if stop.env_steps and env_steps >= stop.env_steps:
        return f"env_steps {env_steps} >= {stop.env_steps}"
    if stop.wall_minutes and minutes >= stop.wall_minutes and not math.isclose(stop.wall_minutes, 0.0):
        return f"wall time {minutes:.1f} min >= {stop.wall_minutes}"
    return None
