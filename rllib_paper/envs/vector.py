"""N residual envs stepped in one process, as one gymnasium VectorEnv: what an RLlib env runner holds.

RLlib's default wraps single envs in gymnasium's SyncVectorEnv, which on every step merges
each env's info dict key by key and re-concatenates observations through the generic space
utilities. Here the arrays are preallocated once and filled in place, and the info carries
only what training reads: ``episode_summary`` on the step an episode ends (the task metrics
callback's input). Autoreset is gymnasium's NEXT_STEP mode, as RLlib's env runner expects:
the step after an episode ended resets that env and ignores its action.

Seeding: ``reset(seed=s)`` starts env ``i`` at the episode seed ``env_seeds(s, N, stream)[i]``,
a 63-bit seed NumPy's SeedSequence derives from (s, stream, i); each env's later episodes follow
from its own generator. ``stream`` is the RLlib runner's worker index (set by the training
callback's ``on_environment_created``, before the first reset). Why not SyncVectorEnv's
``s + i``: RLlib seeds runner k with ``config.seed + k``, so under ``s + i`` runner k's env i + 1
and runner k + 1's env i play the same episodes (2 runners x 8 envs gave 9 distinct episode
streams, not 16), training seed 1's runner 1 repeated training seed 0's runner 2, and the first
episodes used the small integers that evaluation seeds are. An env's episodes are the same, bit
for bit, as the single env's with its seed (tests/test_vector_env.py compares them step by step).

Paired rollouts (``rollouts_per_start`` g > 1): the N envs form N / g groups, and the g envs of
a group start from the same seed, so they play the same sequence of episodes (same sheet start,
same DR draw) under different exploration noise (the noise is the policy's, not the env's).
Each update then sees g outcomes of one start: a common-random-numbers comparison of actions.
The old ``s + i`` seeding did this by accident for 7 of its 9 streams; this does it on purpose.

Use with RLlib: ``.env_runners(gym_env_vectorize_mode="vector_entry_point")`` and an env
creator that builds this class when RLlib passes ``num_envs`` (``envs/registry.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from rllib_paper.config import EnvConfig
from rllib_paper.envs.residual import ResidualPaperEnv

SUMMARY_KEY = "episode_summary"


def env_seeds(seed: int, num_envs: int, stream: int = 0, rollouts_per_start: int = 1) -> list[int]:
    """The first-episode seeds ``reset(seed=seed)`` gives a vector's envs on runner ``stream``:
    distinct for every (seed, stream, group) and never a small integer like an evaluation seed;
    the ``rollouts_per_start`` envs of a group (consecutive envs) share theirs."""
    _check_rollouts_per_start(rollouts_per_start, num_envs)
    groups = [
        int(np.random.SeedSequence([seed, stream, g]).generate_state(1, np.uint64)[0] >> np.uint64(1))
        for g in range(num_envs // rollouts_per_start)
    ]
    return [groups[i // rollouts_per_start] for i in range(num_envs)]


def _check_rollouts_per_start(rollouts_per_start: Any, num_envs: int) -> None:
    if not isinstance(rollouts_per_start, int) or rollouts_per_start < 1 or num_envs % rollouts_per_start:
        raise ValueError(
            f"rollouts_per_start={rollouts_per_start!r}: allowed values are the divisors of num_envs={num_envs}"
        )


class ResidualVectorEnv(gym.vector.VectorEnv):
    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any] | None,
        num_envs: int,
        stream: int = 0,
        rollouts_per_start: int = 1,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r}: allowed range is [1, inf) integers")
        if not isinstance(stream, int) or stream < 0:
            raise ValueError(f"stream={stream!r}: allowed range is [0, inf) integers")
        _check_rollouts_per_start(rollouts_per_start, num_envs)
        self.stream = stream
        self.rollouts_per_start = rollouts_per_start
        self.envs = [ResidualPaperEnv(config) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._obs = np.zeros((num_envs, *self.single_observation_space.shape), dtype=np.float32)
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._terminated = np.zeros(num_envs, dtype=np.bool_)
        self._truncated = np.zeros(num_envs, dtype=np.bool_)
        self._autoreset = np.zeros(num_envs, dtype=np.bool_)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = list(env_seeds(seed, self.num_envs, self.stream, self.rollouts_per_start))
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=...): {len(seeds)} seeds for {self.num_envs} envs")
        for i, (env, env_seed) in enumerate(zip(self.envs, seeds, strict=True)):
            self._obs[i], _ = env.reset(seed=env_seed, options=options)
        self._autoreset[:] = False
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray):
        summaries: list[Any] = [None] * self.num_envs
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:
                self._obs[i], _ = env.reset()
                self._rewards[i], self._terminated[i], self._truncated[i] = 0.0, False, False
                continue
            obs, reward, terminated, truncated, info = env.step(actions[i])
            self._obs[i], self._rewards[i] = obs, reward
            self._terminated[i], self._truncated[i] = terminated, truncated
            summaries[i] = info.get(SUMMARY_KEY)
        np.logical_or(self._terminated, self._truncated, out=self._autoreset)
        infos: dict[str, Any] = {}
        ended = np.array([s is not None for s in summaries])
        if ended.any():  # gymnasium's vector info layout: values and a mask of the envs that set them
            values = np.empty(self.num_envs, dtype=object)
            values[:] = summaries
            infos = {SUMMARY_KEY: values, f"_{SUMMARY_KEY}": ended}
        return self._obs.copy(), self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos

    def close_extras(self, **kwargs: Any) -> None:
        for env in getattr(self, "envs", ()):  # absent when __init__ rejected its arguments
            env.close()
