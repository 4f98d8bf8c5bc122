"""The base-policy protocol and the zero (hold) policy.

A base policy proposes *absolute* joint targets in radians, as GR00T and LeRobot
policies do, in chunks: ``act`` returns ``chunk_length`` future targets and the env
executes the first ``execution_horizon`` of them before asking again (GR00T returns 16
and the reference client executes 8). ``act`` is batched over environments so one model
call can serve many envs; observations arrive as a dict of arrays with a leading batch
axis, so camera frames or other inputs can be added without changing the signature:

* ``state``  (B, 25) float64: the PaperSquareEnv observation (layout: ``sim/observation.py``).
* ``target`` (B, 6) float64: the joint targets the env last commanded.

A policy that needs camera frames has a ``frames`` renderer and an ``extra_observations(env)``
method (GR00T); the env keeps its visual meshes only for such a policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


class BasePolicyUnavailable(RuntimeError):
    """A remote base policy (a server, a Ray actor) did not answer.

    The env retries such a call once, then ends the episode as a failure with
    ``info["base_policy_failed"]``. Any other exception from ``act`` is a bug in the policy
    and propagates.
    """


class BasePolicyFailed(ConnectionError):
    """A run stopped because its base policy failed: its server did not answer the start-up
    ping, or episodes ended with ``base_policy_failed``. Such episodes are not results of the
    policy; the CLI prints the message (one sentence naming the server) and exits 3.
    """


@runtime_checkable
class BasePolicy(Protocol):
    chunk_length: int
    execution_horizon: int

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; stochastic policies reseed from ``seed``."""

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return a (B, chunk_length, 6) array of absolute joint targets in radians."""


class ZeroBasePolicy:
    """Hold the previous target: the identity element for residual learning.

    'Zero' must mean 'stay where you were told to be', not 'target = current position',
    which under gravity walks the arm down onto the table one step at a time.
    """

    chunk_length = 1
    execution_horizon = 1

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        target = np.asarray(observations["target"], dtype=np.float64)
        return target[:, None, :].copy()


def validate_chunk(chunk: Any, batch: int, policy: object) -> np.ndarray:
    """Check a policy's output once, with an error that names the policy and the shape."""
    array = np.asarray(chunk, dtype=np.float64)
    if array.ndim != 3 or array.shape[0] != batch or array.shape[2] != 6 or array.shape[1] < 1:
        raise ValueError(f"{type(policy).__name__}.act returned shape {array.shape}; expected ({batch}, T>=1, 6)")
    if not np.isfinite(array).all():
        raise ValueError(f"{type(policy).__name__}.act returned non-finite joint targets")
    return array


class ConstantTargetPolicy:
    """Always propose the same joint targets (benchmarks and physics tests press with it)."""

    chunk_length = 1
    execution_horizon = 1

    def __init__(self, target: np.ndarray) -> None:
        self.target = np.asarray(target, dtype=np.float64).reshape(6)

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        chunk = np.empty((len(observations["state"]), 1, 6))
        chunk[:] = self.target  # plain assignment: np.broadcast_to's Python wrapper costs more
        return chunk
