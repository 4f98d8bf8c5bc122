"""`rllib-paper bench eval`: evaluation throughput with 1 and 2 Ray workers, and their ratio.

Both runs evaluate the same seeds with warm workers (env and policy already built), so the
ratio measures how well episodes spread over the workers, not actor start-up. The two
settings alternate for a few rounds and each rate is total episodes over total time: on a
shared 2-core host the clock drifts by 20 % between runs a minute apart, and with a handful
of shards the last one decides the 2-worker time, so one short round of each swings the
ratio by +-0.1.
"""

from __future__ import annotations

import json
import time
from collections import deque

from rllib_paper.config import coerce_env_config
from rllib_paper.runtime.ray_start import start_ray


def _elapsed(workers: int, seeds: list[int], shard_size: int, env_config: dict) -> float:
    """Seconds for ``workers`` warm actors to run every seed, shards handed out as workers free up."""
    import ray

    from rllib_paper.evaluation.distributed import _worker_class

    actors = [_worker_class().remote(env_config, None) for _ in range(workers)]
    ray.get([a.pid.remote() for a in actors])  # wait until every env is built
    ray.get([a.run_shard.remote(seeds[:1]) for a in actors])  # warm caches
    queue = deque(seeds[i : i + shard_size] for i in range(0, len(seeds), shard_size))
    pending = {}
    start = time.perf_counter()
    for index, actor in enumerate(actors):
        if queue:
            pending[actor.run_shard.remote(queue.popleft())] = index
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready[0])
        ray.get(ready[0])
        if queue:
            pending[actors[index].run_shard.remote(queue.popleft())] = index
    elapsed = time.perf_counter() - start
    for actor in actors:
        ray.kill(actor)
    return elapsed


def run(episodes: int = 32, policy: str = "scripted", dr: str = "phase2", shard_size: int = 2, rounds: int = 2) -> dict:
    import ray

    for name, value, least in (("episodes", episodes, 2), ("rounds", rounds, 1), ("shard_size", shard_size, 1)):
        if value < least:
            raise ValueError(f"bench eval: {name}={value}, allowed >= {least}")
    started = False
    if not ray.is_initialized():
        start_ray(num_cpus=2)
        started = True
    try:
        env_config = coerce_env_config(None, dr=dr, residual={"base_policy": policy}).to_dict()
        seeds = list(range(episodes))
        one, two = [], []
        for _ in range(rounds):
            one.append(_elapsed(1, seeds, shard_size, env_config))
            two.append(_elapsed(2, seeds, shard_size, env_config))
    finally:
        if started:
            ray.shutdown()
    rate_one = episodes * rounds / sum(one)
    rate_two = episodes * rounds / sum(two)
    return {
        "episodes": episodes,
        "rounds": rounds,
        "policy": policy,
        "dr": dr,
        "episodes_per_s_1_worker": rate_one,
        "episodes_per_s_2_workers": rate_two,
        "ratio_2_vs_1": rate_two / rate_one,
        "ratio_per_round": [a / b for a, b in zip(one, two, strict=True)],
    }


def main(episodes: int = 32, rounds: int = 2) -> dict:
    result = run(episodes=episodes, rounds=rounds)
    rounds_text = ", ".join(f"{r:.2f}" for r in result["ratio_per_round"])
    print(f"{episodes} episodes x {rounds} rounds, ratio by round: {rounds_text}")
    print(f"1 worker : {result['episodes_per_s_1_worker']:.2f} episodes/s")
    print(
        f"2 workers: {result['episodes_per_s_2_workers']:.2f} episodes/s  ratio {result['ratio_2_vs_1']:.2f} "
        "(target >= 1.7)"
    )
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    rounded["ratio_per_round"] = [round(r, 4) for r in result["ratio_per_round"]]
    print(json.dumps({"bench": "eval", **rounded}))
    return result
