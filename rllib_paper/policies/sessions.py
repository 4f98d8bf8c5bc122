"""One base-policy instance per episode, for stateful policies served to many envs at once.

A batched ``act`` call on a shared server or actor mixes rows from different envs in any
order. Stateless policies (GR00T: its memory is the observation) take the whole batch in
one call; stateful ones (the scripted pusher keeps a stroke plan per row) get one instance
per episode id, the least recently used instance being reused for a new episode.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from rllib_paper.policies.base import BasePolicy, ConstantTargetPolicy, ZeroBasePolicy, validate_chunk

EPISODE_KEY = "episode_id"  # optional (B,) int64 in base-policy observations: which episode each row is


def is_stateless(policy: object) -> bool:
    """Policies whose output depends on the observation only may batch rows of any episodes."""
    return bool(getattr(policy, "stateless", False)) or isinstance(policy, (ZeroBasePolicy, ConstantTargetPolicy))


class SessionPool:
    def __init__(self, factory: Callable[[], BasePolicy], max_sessions: int = 256) -> None:
        self.factory = factory
        self.max_sessions = max_sessions
        self.prototype = factory()
        self.stateless = is_stateless(self.prototype)
        self._sessions: OrderedDict[Hashable, BasePolicy] = OrderedDict()

    @property
    def chunk_length(self) -> int:
        return self.prototype.chunk_length

    @property
    def execution_horizon(self) -> int:
        return self.prototype.execution_horizon

    def act(self, observations: Mapping[str, np.ndarray], episodes: Sequence[Hashable] | None = None) -> np.ndarray:
        """(B, T, 6) targets for a batch whose rows may belong to different episodes."""
        batch = len(observations["state"])
        if self.stateless:
            return validate_chunk(self.prototype.act(observations), batch, self.prototype)
        if episodes is None:
            raw = observations.get(EPISODE_KEY)
            episodes = [int(e) for e in np.asarray(raw).reshape(-1)] if raw is not None else ["default"] * batch
        rows = []
        for row, episode in enumerate(episodes):
            policy = self.session(episode)
            single = {k: np.asarray(v)[row : row + 1] for k, v in observations.items()}
            rows.append(validate_chunk(policy.act(single), 1, policy)[0])
        length = min(len(r) for r in rows)
        return np.stack([r[:length] for r in rows])

    def session(self, episode: Hashable) -> BasePolicy:
        sessions = self._sessions
        if episode in sessions:
            sessions.move_to_end(episode)
            return sessions[episode]
        if len(sessions) >= self.max_sessions:
            _, policy = sessions.popitem(last=False)
        elif not sessions:
            policy = self.prototype
        else:
            policy = self.factory()
        policy.reset(seed=episode if isinstance(episode, int) else None)
        sessions[episode] = policy
        return policy
