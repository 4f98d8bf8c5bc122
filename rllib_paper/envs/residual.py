"""ResidualPaperEnv: PPO's action is a small correction on top of a base policy's target.

target = base target + alpha * scale * residual, residual in [-1, 1]^6 (seed: alpha 0.7,
scale 0.02 rad). The observation is the 25-D task observation plus the base target the
residual is about to correct (31-D): a residual cannot correct what it cannot see.
With residual 0 the commanded targets are exactly the base policy's (tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rllib_paper.config import EnvConfig, coerce_env_config
from rllib_paper.envs.paper_env import OBS_DIM, PaperSquareEnv
from rllib_paper.policies.base import BasePolicy, make_base_policy, validate_chunk

RESIDUAL_OBS_DIM = OBS_DIM + 6


class ResidualPaperEnv(gym.Env):
    metadata = PaperSquareEnv.metadata

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        base_policy: BasePolicy | None = None,
        **overrides: Any,
    ) -> None:
        self.config = coerce_env_config(config, **overrides)
        self.env = PaperSquareEnv(self.config, render_mode=render_mode)
        self.render_mode = render_mode
        self.base_policy = base_policy or make_base_policy(self.config.residual.base_policy, self.config)
        self._gain = self.config.residual.alpha * self.config.residual.scale
        self._residual_weight = self.config.reward.residual
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(RESIDUAL_OBS_DIM,), dtype=np.float32)
        self._chunk: np.ndarray | None = None
        self._chunk_index = 0
        self._base_target = np.zeros(6)
        self._obs = np.zeros(RESIDUAL_OBS_DIM, dtype=np.float32)
        self.base_calls = 0

    @property
    def base_target(self) -> np.ndarray:
        """The base policy's target for the coming step."""
        return self._base_target

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**63 - 1))
        obs, info = self.env.reset(seed=seed, options=options)
        self.base_policy.reset(seed=info["episode_seed"])
        self._chunk = None
        self._advance_base()
        info["base_target"] = self._base_target.copy()
        return self._observation(obs), info

    def step(self, action):
        residual = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -1.0), 1.0)
        target = self._base_target + self._gain * residual
        obs, reward, terminated, truncated, info = self.env.step(target)
        penalty = self._residual_weight * float(residual @ residual)
        info["reward_residual"] = penalty
        magnitude = np.abs(residual)
        info["residual_abs_mean"] = float(magnitude.sum()) / 6.0
        info["residual_abs_max"] = float(magnitude.max())
        info["base_target"] = self._base_target.copy()
        if not (terminated or truncated):
            self._advance_base()
        return self._observation(obs), reward + penalty, terminated, truncated, info

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def _advance_base(self) -> None:
        """Take the next target from the cached chunk, querying the policy when it runs out."""
        horizon = min(self.base_policy.execution_horizon, self.base_policy.chunk_length)
        if self._chunk is None or self._chunk_index >= horizon:
            observations = {"state": self.env.state[None, :], "target": self.env.current_target[None, :]}
            self._chunk = validate_chunk(self.base_policy.act(observations), 1, self.base_policy)[0]
            self._chunk_index = 0
            self.base_calls += 1
        self._base_target = self._chunk[self._chunk_index]
        self._chunk_index += 1

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        self._obs[:OBS_DIM] = obs
        self._obs[OBS_DIM:] = self._base_target
        return self._obs.copy()
