"""ResidualPaperEnv: PPO's action is a small correction on top of a base policy's target.

target = base target + alpha * scale * residual, residual in [-1, 1]^6 (seed: alpha 0.7,
scale 0.02 rad). The observation is the 25-D task observation plus the base target the
residual is about to correct (31-D): a residual cannot correct what it cannot see.
With residual 0 the commanded targets are exactly the base policy's (tested).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rllib_paper.config import EnvConfig, coerce_env_config
from rllib_paper.envs.paper_env import REWARD_INFO_KEYS, REWARD_TERMS, PaperSquareEnv
from rllib_paper.policies.base import BasePolicy, BasePolicyUnavailable, validate_chunk
from rllib_paper.policies.registry import make_base_policy
from rllib_paper.sim.observation import BASE_ACTION, OBS_DIM, RESIDUAL_OBS_DIM, residual_obs_dim


class ResidualPaperEnv(gym.Env):
    """A PaperSquareEnv whose action is the residual in [-1, 1]^6 on a base policy's target.

    Observation (31, float32): the PaperSquareEnv observation, then the base target the
    residual is about to correct, laid out in ``sim/observation.py``:

    | index | meaning                                    | unit                     |
    |-------|--------------------------------------------|--------------------------|
    | 0     | shoulder_pan joint angle                   | angle (rad)              |
    | 1     | shoulder_lift joint angle                  | angle (rad)              |
    | 2     | elbow_flex joint angle                     | angle (rad)              |
    | 3     | wrist_flex joint angle                     | angle (rad)              |
    | 4     | wrist_roll joint angle                     | angle (rad)              |
    | 5     | gripper joint angle                        | angle (rad)              |
    | 6     | shoulder_pan joint velocity                | angular velocity (rad/s) |
    | 7     | shoulder_lift joint velocity               | angular velocity (rad/s) |
    | 8     | elbow_flex joint velocity                  | angular velocity (rad/s) |
    | 9     | wrist_flex joint velocity                  | angular velocity (rad/s) |
    | 10    | wrist_roll joint velocity                  | angular velocity (rad/s) |
    | 11    | gripper joint velocity                     | angular velocity (rad/s) |
    | 12    | sheet centre x                             | position (m)             |
    | 13    | sheet centre y                             | position (m)             |
    | 14    | sheet centre z                             | position (m)             |
    | 15    | sheet orientation quaternion w             | unitless                 |
    | 16    | sheet orientation quaternion x             | unitless                 |
    | 17    | sheet orientation quaternion y             | unitless                 |
    | 18    | sheet orientation quaternion z             | unitless                 |
    | 19    | goal vector x: frame centre - sheet centre | position (m)             |
    | 20    | goal vector y: frame centre - sheet centre | position (m)             |
    | 21    | goal vector z: frame centre - sheet centre | position (m)             |
    | 22    | fingertip site x                           | position (m)             |
    | 23    | fingertip site y                           | position (m)             |
    | 24    | fingertip site z                           | position (m)             |
    | 25    | base policy's shoulder_pan joint target    | angle (rad)              |
    | 26    | base policy's shoulder_lift joint target   | angle (rad)              |
    | 27    | base policy's elbow_flex joint target      | angle (rad)              |
    | 28    | base policy's wrist_flex joint target      | angle (rad)              |
    | 29    | base policy's wrist_roll joint target      | angle (rad)              |
    | 30    | base policy's gripper joint target         | angle (rad)              |

    ``env.residual.observe`` appends, in its order, ``time_left`` (the share of
    ``task.max_steps`` still to run, 1 at reset, 0 from the last step on) and ``chunk_step``
    (how many targets of the base's current chunk were executed before this one, over its
    execution horizon: 0 right after a query), both unitless in [0, 1]; ``pad_force`` (the
    fingertip pads' normal force on the sheet at the last physics step, N, 0 without contact)
    and ``sheet_velocity`` (x, y velocity of the sheet centre in m/s and its yaw rate in rad/s).
    """

    metadata = PaperSquareEnv.metadata

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        base_policy: BasePolicy | None = None,
        **overrides: Any,
    ) -> None:
        self.config = coerce_env_config(config, **overrides)
        self.base_policy = base_policy or make_base_policy(self.config.residual.base_policy, self.config)
        # The arm's visual meshes only if something renders this env (a GR00T base's cameras,
        # render_mode): without them an env holds a quarter of the memory, same physics.
        frames = getattr(self.base_policy, "frames", None)
        renders = render_mode is not None or frames is not None
        detail = frames.detail if frames is not None and render_mode is None else 1.0
        self.env = PaperSquareEnv(self.config, render_mode=render_mode, visual=renders, render_detail=detail)
        self.render_mode = render_mode
        self._gain = self.config.residual.alpha * self.config.residual.scale
        self._residual_weight = self.config.reward.residual
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
        self._observe = self.config.residual.observe
        dim = residual_obs_dim(self.config)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self._chunk: np.ndarray | None = None
        self._chunk_index = 0
        self._base_target = np.zeros(6)
        self._obs = np.zeros(dim, dtype=np.float32)
        self.base_calls = 0
        self.base_failures = 0  # failed base-policy calls (each retried once)
        self._base_failed = False  # the retry failed too: the episode ends as a failure
        self._base_error = ""
        self.node_id = _ray_node_id()
        self._totals = dict.fromkeys(REWARD_TERMS, 0.0)
        self._residual_abs_sum = 0.0
        self._return = 0.0

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
        self._base_failed = False
        self._advance_base()
        self._totals = dict.fromkeys(REWARD_TERMS, 0.0)
        self._residual_abs_sum = 0.0
        self._return = 0.0
        info["node_id"] = self.node_id
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
        reward += penalty
        self._accumulate(info, reward)
        if not (terminated or truncated or self._base_failed):
            self._advance_base()
        if self._base_failed:  # no base action to continue with: end the episode as a failure
            terminated, truncated = True, False
            info["base_policy_failed"] = True
            info["base_policy_error"] = self._base_error
        if terminated or truncated:
            info["episode_summary"] = self._episode_summary(info)
        return self._observation(obs), reward, terminated, truncated, info

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def _accumulate(self, info: dict[str, Any], reward: float) -> None:
        totals = self._totals
        for term, key in REWARD_INFO_KEYS.items():
            totals[term] += info[key]
        self._residual_abs_sum += info["residual_abs_mean"]
        self._return += reward

    def _episode_summary(self, info: dict[str, Any]) -> dict[str, Any]:
        """Whole-episode figures at the last step, so trainers need no per-step callbacks."""
        steps = info["step"]
        return {
            "success": bool(info["success"]),
            "length": int(steps),
            "return": float(self._return),
            "residual_abs_mean": self._residual_abs_sum / max(steps, 1),
            "final_distance": float(info["distance"]),
            "final_yaw_error": float(abs(info["yaw_error"])),
            "sim_unstable": bool(info["sim_unstable"]),
            "base_policy_failed": self._base_failed,
            "base_policy_error": self._base_error if self._base_failed else None,
            "node_id": self.node_id,
            **{f"reward_{term}": float(value) for term, value in self._totals.items()},
        }

    def _advance_base(self) -> None:
        """Take the next target from the cached chunk, querying the policy when it runs out."""
        if self._chunk is None or self._chunk_index >= self._execution_horizon():
            observations = {"state": self.env.state[None, :], "target": self.env.current_target[None, :]}
            extra = getattr(self.base_policy, "extra_observations", None)  # e.g. GR00T's camera frames
            for attempt in (0, 1):  # a failed call (server, actor) is retried once
                try:
                    if extra is not None:
                        observations.update(extra(self.env))
                    self.base_calls += 1
                    self._chunk = validate_chunk(self.base_policy.act(observations), 1, self.base_policy)[0]
                    break
                except (BasePolicyUnavailable, TimeoutError, ConnectionError) as exc:
                    self.base_failures += 1
                    if attempt:
                        self._base_failed, self._base_error = True, f"{type(exc).__name__}: {exc}"
                        self._chunk, self._base_target = None, self.env.current_target.copy()  # hold
                        return
            self._chunk_index = 0
        self._base_target = self._chunk[self._chunk_index]
        self._chunk_index += 1

    @property
    def physics_seconds(self) -> float:
        """CPU seconds this env spent inside mj_step (the physics ceiling of `bench train`)."""
        return self.env.physics_seconds

    @property
    def physics_steps(self) -> int:
        return self.env.physics_steps

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        self._obs[:OBS_DIM] = obs
        self._obs[BASE_ACTION] = self._base_target
        i = RESIDUAL_OBS_DIM
        for name in self._observe:
            values = self._optional(name)
            self._obs[i : i + len(values)] = values
            i += len(values)
        return self._obs.copy()

    def _optional(self, name: str) -> tuple[float, ...] | np.ndarray:
        if name == "time_left":
            return (self._time_left(),)
        if name == "chunk_step":
            return (self._chunk_step(),)
        if name == "pad_force":
            return (self.env.pad_force,)
        return self.env.sheet_velocity

    def _time_left(self) -> float:
        max_steps = self.config.task.max_steps
        return max(0.0, (max_steps - self.env.steps) / max_steps)

    def _chunk_step(self) -> float:
        # _advance_base has already moved past the target this step executes.
        return (self._chunk_index - 1) / self._execution_horizon() if self._chunk is not None else 0.0

    def _execution_horizon(self) -> int:
        """Targets of a chunk executed before the base is asked again."""
        return min(self.base_policy.execution_horizon, self.base_policy.chunk_length)


def _ray_node_id() -> str:
    """The Ray node this env lives on ("local" outside Ray): lets training report placement."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return "local"
