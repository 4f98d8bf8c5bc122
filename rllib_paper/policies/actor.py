"""BasePolicyActor: one base policy shared by many envs, batched, on a GPU node if there is one.

Env runners on any node find the actor by name (``ray.get_actor``), send observations and
get chunks back. Concurrent requests are gathered into one model call (up to ``max_batch``
requests, waiting at most ``max_wait_ms`` for stragglers once one arrives), so a GR00T model
serves a whole cluster of envs with few forward passes. The actor restarts on failure
(``max_restarts``); env-side calls time out (``timeout_s``), and ResidualPaperEnv retries a
failed call once, then ends the episode as a failure with ``info["base_policy_failed"]``.

Spec (``residual.base_policy``)::

    actor:INNER_SPEC[#name=N&num_gpus=1&num_cpus=0&resource=R&label=KEY=VALUE&max_batch=32
                      &max_wait_ms=5&max_restarts=3&timeout=60&per_node=0&detached=1&namespace=rllib_paper]

e.g. ``actor:groot:tcp://10.0.0.5:5555?config=arm0_dualcam#num_gpus=0`` or, on a GPU node,
``actor:groot-local:/models/paper_return?config=arm0_dualcam#num_gpus=1&resource=groot``.
``resource=R`` needs one unit of a custom resource (a node started with ``--resources``);
``label=KEY=VALUE[;KEY=VALUE]`` is a Ray label selector (a node started with ``--labels``).
The default name is derived from the inner spec, so every env with the same spec shares
one actor; ``per_node=1`` gives one actor per node (soft affinity to the caller's node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import ray

from rllib_paper.config import ConfigError, EnvConfig, coerce_env_config
from rllib_paper.policies.base import BasePolicy, BasePolicyUnavailable
from rllib_paper.policies.sessions import EPISODE_KEY, SessionPool
from rllib_paper.policies.spec import PolicySpec, parse_number, parse_policy_spec

# Builds the served policy from its spec inside the actor (the registry's make_base_policy,
# handed in so that this module does not import the registry that lists it).
InnerBuilder = Callable[[str, EnvConfig], BasePolicy]


class BasePolicyError(BasePolicyUnavailable):
    """A base-policy call through the actor failed or timed out."""


@dataclass(frozen=True)
class ActorOptions:
    name: str | None = None
    namespace: str = "rllib_paper"
    num_gpus: float = 0.0
    num_cpus: float = 0.0
    resource: str | None = None  # a custom resource the actor needs one unit of (e.g. "groot")
    label: str | None = None  # node labels the actor needs, "KEY=VALUE[;KEY=VALUE]" (Ray label_selector)
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_restarts: int = 3
    timeout: float = 60.0  # seconds per env-side call (covers an actor restart)
    per_node: bool = False
    detached: bool = True

    def __post_init__(self) -> None:
        checks = (
            ("num_gpus", self.num_gpus, 0, 64),
            ("num_cpus", self.num_cpus, 0, 256),
            ("max_batch", self.max_batch, 1, 100000),
            ("max_wait_ms", self.max_wait_ms, 0, 10000),
            ("max_restarts", self.max_restarts, -1, 1000),
            ("timeout", self.timeout, 0.001, 3600),
        )
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"actor option {name}={value!r}: allowed range is [{low}, {high}]")
        self.label_selector()  # a malformed label fails here, named

    def label_selector(self) -> dict[str, str]:
        selector: dict[str, str] = {}
        for item in (self.label or "").split(";"):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"actor option label={self.label!r}: expected KEY=VALUE[;KEY=VALUE]")
            selector[key.strip()] = value.strip()
        return selector

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> ActorOptions:
        types = {f.name: str(f.type) for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in spec.options:
            if key not in types:
                raise spec.error(f"unknown actor option {key!r}; allowed: {sorted(types)}")
            kind = types[key]
            if "bool" in kind:
                kwargs[key] = value.strip().lower() in ("1", "true", "yes")
            elif "int" in kind:
                kwargs[key] = parse_number(spec, key, value, int)
            elif "float" in kind:
                kwargs[key] = parse_number(spec, key, value)
            else:
                kwargs[key] = value.strip() or None
        return cls(**kwargs)


def parse_actor_spec(text: str | PolicySpec) -> tuple[str, ActorOptions]:
    spec = text if isinstance(text, PolicySpec) else parse_policy_spec(text)
    if spec.kind != "actor" or spec.inner is None:
        raise spec.error("expected 'actor:INNER_SPEC[#KEY=VALUE&...]'")
    return spec.inner.text, ActorOptions.from_spec(spec)


def resolve_actor(spec: PolicySpec) -> dict[str, Any]:
    return dataclasses.asdict(parse_actor_spec(spec)[1])


def default_actor_name(inner_spec: str) -> str:
    return "base-policy-" + hashlib.sha1(inner_spec.encode()).hexdigest()[:12]


class _BasePolicyActorImpl:
    """The actor body (an async actor: requests queue up while the model runs)."""

    def __init__(
        self, spec: str, env_config: Mapping[str, Any], max_batch: int, max_wait_ms: float, build: InnerBuilder
    ) -> None:
        config = coerce_env_config(dict(env_config))
        self.spec = spec
        self.pool = SessionPool(lambda: build(spec, config))
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="base-policy")
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._latencies: deque[float] = deque(maxlen=20000)
        self._requests = 0
        self._rows = 0
        self._calls = 0
        self._errors = 0
        self._started = time.time()

    def info(self) -> dict[str, Any]:
        frames = getattr(self.pool.prototype, "frames", None)
        return {
            "spec": self.spec,
            "chunk_length": int(self.pool.chunk_length),
            "execution_horizon": int(self.pool.execution_horizon),
            "stateless": self.pool.stateless,
            "frames": frames,  # EnvFrames (picklable, renders env-side) or None
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    async def act(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._batch_loop())
        start = time.perf_counter()
        future = loop.create_future()
        await self._queue.put((observations, future))
        try:
            return await future
        finally:
            self._latencies.append(time.perf_counter() - start)

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        batch.append(queue.get_nowait())
                    else:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            await self._run(loop, batch)

    async def _run(self, loop, batch: list[tuple[dict[str, np.ndarray], asyncio.Future]]) -> None:
        groups: dict[tuple[str, ...], list] = {}
        for item in batch:
            groups.setdefault(tuple(sorted(item[0])), []).append(item)
        for keys, items in groups.items():
            sizes = [len(obs["state"]) for obs, _ in items]
            merged = {k: np.concatenate([np.asarray(obs[k]) for obs, _ in items]) for k in keys}
            self._requests += len(items)
            self._rows += sum(sizes)
            self._calls += 1
            try:
                chunk = await loop.run_in_executor(self._executor, self.pool.act, merged)
            except Exception as exc:
                self._errors += len(items)
                for _, future in items:
                    if not future.done():
                        future.set_exception(BasePolicyError(f"base policy {self.spec!r} failed: {exc}"))
                continue
            start = 0
            for size, (_, future) in zip(sizes, items, strict=True):
                if not future.done():
                    future.set_result(chunk[start : start + size])
                start += size

    def stats(self) -> dict[str, Any]:
        latencies = np.asarray(self._latencies) * 1000.0
        pct = np.percentile(latencies, [50, 90, 99]).tolist() if len(latencies) else [float("nan")] * 3
        return {
            "requests": self._requests,
            "rows": self._rows,
            "model_calls": self._calls,
            "mean_batch_size": self._requests / self._calls if self._calls else 0.0,
            "mean_rows_per_call": self._rows / self._calls if self._calls else 0.0,
            "errors": self._errors,
            "latency_ms_p50": pct[0],
            "latency_ms_p90": pct[1],
            "latency_ms_p99": pct[2],
            "uptime_s": time.time() - self._started,
            "pid": os.getpid(),
        }

    def reset_stats(self) -> None:
        self._latencies.clear()
        self._requests = self._rows = self._calls = self._errors = 0

    def pid(self) -> int:
        return os.getpid()


BasePolicyActor = ray.remote(_BasePolicyActorImpl)


def get_or_create_actor(
    inner_spec: str, options: ActorOptions, env_config: EnvConfig | None, build_inner: InnerBuilder
):
    """The named actor for ``inner_spec``, created (once, cluster-wide) if it does not exist."""
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, logging_level="ERROR")
    name = options.name or default_actor_name(inner_spec)
    ray_options: dict[str, Any] = {
        "namespace": options.namespace,
        "get_if_exists": True,
        "max_restarts": options.max_restarts,
        "max_task_retries": 0,
        "num_gpus": options.num_gpus,
        "num_cpus": options.num_cpus,
        "max_concurrency": 1000,
    }
    if options.resource:
        ray_options["resources"] = {options.resource: 1}
    if options.label_selector():
        ray_options["label_selector"] = options.label_selector()
    if options.detached:
        ray_options["lifetime"] = "detached"
    if options.per_node:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node_id = ray.get_runtime_context().get_node_id()
        name = f"{name}-{node_id[:12]}"
        ray_options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=True)
    config = (env_config or EnvConfig()).to_dict()
    return BasePolicyActor.options(name=name, **ray_options).remote(
        inner_spec, config, options.max_batch, options.max_wait_ms, build_inner
    )


class ActorBasePolicy:
    """Env-side proxy: renders what the served policy needs here, sends it to the actor."""

    def __init__(
        self, inner_spec: str, options: ActorOptions, env_config: EnvConfig | None, build_inner: InnerBuilder
    ) -> None:
        self.inner_spec = inner_spec
        self.options = options
        self.env_config = env_config
        self.build_inner = build_inner
        self.handle = get_or_create_actor(inner_spec, options, env_config, build_inner)
        try:
            info = ray.get(self.handle.info.remote(), timeout=options.timeout)
        except Exception as exc:
            raise BasePolicyError(
                f"base-policy actor for {inner_spec!r} did not start within {options.timeout:g} s: {_short(exc)}"
            ) from None
        self.chunk_length = info["chunk_length"]
        self.execution_horizon = info["execution_horizon"]
        self.frames = info["frames"]
        self._episode = 0
        self._stale = False
        self.calls = 0

    def reset(self, seed: int | None = None) -> None:
        self._episode = secrets.randbits(62)

    def extra_observations(self, env) -> dict[str, np.ndarray]:
        if self.frames is None:
            return {}
        from rllib_paper.policies.groot.mapping import frame_key

        return {frame_key(camera): image[None] for camera, image in self.frames(env.model, env.data).items()}

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        if self._stale:  # the actor died for good last time: find or create it again
            self.handle = get_or_create_actor(self.inner_spec, self.options, self.env_config, self.build_inner)
            self._stale = False
        obs = {k: np.asarray(v) for k, v in observations.items()}
        obs[EPISODE_KEY] = np.full(len(obs["state"]), self._episode, dtype=np.int64)
        self.calls += 1
        deadline = time.monotonic() + self.options.timeout
        while True:
            ref = self.handle.act.remote(obs)
            try:
                return ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0))
            except ray.exceptions.ActorUnavailableError:
                # Ray is restarting the actor (max_restarts): wait for it, within the same timeout.
                if time.monotonic() >= deadline:
                    raise BasePolicyError(
                        f"base-policy actor for {self.inner_spec!r} was still restarting after "
                        f"{self.options.timeout:g} s"
                    ) from None
                time.sleep(0.2)
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref)
                raise BasePolicyError(
                    f"base-policy actor for {self.inner_spec!r} did not answer within {self.options.timeout:g} s"
                ) from None
            except ray.exceptions.RayActorError as exc:
                self._stale = True
                raise BasePolicyError(f"base-policy actor for {self.inner_spec!r} died: {_short(exc)}") from None
            except ray.exceptions.RayTaskError as exc:
                raise BasePolicyError(f"base-policy actor for {self.inner_spec!r} failed: {_short(exc)}") from None

    def stats(self) -> dict[str, Any]:
        return ray.get(self.handle.stats.remote(), timeout=self.options.timeout)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def make_actor_policy(spec: str | PolicySpec, config: EnvConfig | None, build_inner: InnerBuilder) -> ActorBasePolicy:
    inner, options = parse_actor_spec(spec)
    return ActorBasePolicy(inner, options, config, build_inner)
