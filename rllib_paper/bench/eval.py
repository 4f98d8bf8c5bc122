"""`rllib-paper bench eval`: evaluation throughput with 1 and 2 Ray workers, and their ratio.

Both runs evaluate the same seeds with warm workers (env and policy already built), so the
ratio measures how well episodes spread over the workers, not actor start-up.
"""

from __future__ import annotations

import json
import time
from collections import deque

from rllib_paper.config import coerce_env_config


def _throughput(workers: int, seeds: list[int], shard_size: int, env_config: dict, policy: str) -> float:
    import ray

    from rllib_paper.evaluate import _worker_class

    actors = [_worker_class().remote(env_config, policy, None) for _ in range(workers)]
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
    return len(seeds) / elapsed


def run(episodes: int = 16, policy: str = "scripted", dr: str = "phase2", shard_size: int = 2) -> dict:
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        started = True
    try:
        env_config = coerce_env_config(None, dr=dr, residual={"base_policy": policy}).to_dict()
        seeds = list(range(episodes))
        one = _throughput(1, seeds, shard_size, env_config, policy)
        two = _throughput(2, seeds, shard_size, env_config, policy)
    finally:
        if started:
            ray.shutdown()
    return {
        "episodes": episodes,
        "policy": policy,
        "dr": dr,
        "episodes_per_s_1_worker": one,
        "episodes_per_s_2_workers": two,
        "ratio_2_vs_1": two / one,
    }


def main(episodes: int = 16) -> dict:
    result = run(episodes=episodes)
    print(f"1 worker : {result['episodes_per_s_1_worker']:.2f} episodes/s")
    print(
        f"2 workers: {result['episodes_per_s_2_workers']:.2f} episodes/s  ratio {result['ratio_2_vs_1']:.2f} "
        "(target >= 1.7)"
    )
    print(json.dumps({"bench": "eval", **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}))
    return result
