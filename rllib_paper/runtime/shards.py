"""Shards of seeds over a pool of Ray actors, surviving the death of any of them.

The evaluation and the dataset recorder both run "this list of seeds, a shard at a time, on
``workers`` actors that each build their env once". What they share is the bookkeeping that is
easy to get wrong: a shard whose actor died goes back to the front of the queue and a fresh
actor takes the dead one's place (up to ``max_worker_failures``); an actor that cannot even
start is a configuration error, not bad luck, and is not retried; an exception inside an
episode is a bug and stops the run; the caller decides after each shard whether new shards
may start (a base-policy server that stopped answering would fail every later one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


def run_shards(
    shards: Sequence[list[int]],
    new_worker: Callable[[], Any],
    call: Callable[[Any, list[int]], Any],
    on_result: Callable[[list[int], Any], bool],
    *,
    workers: int,
    max_worker_failures: int,
    what: str = "evaluation",
    pool: list[Any] | None = None,
) -> int:
    """Run every shard; ``call(worker, shard)`` returns the ObjectRef of one shard's result and
    ``on_result(shard, result)`` saves it, returning False to start no further shard. Returns the
    number of workers that died (and were replaced). ``pool``: a list the live actors are kept
    in while the shards run (a caller may look at them); every actor is killed on the way out."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    queue = deque(shards)
    pool = [] if pool is None else pool
    pool[:] = [new_worker() for _ in range(min(workers, len(queue)))]
    pending: dict[Any, tuple[int, list[int]]] = {}
    failures = 0
    accepting = True

    def assign(index: int) -> None:
        if queue and accepting:
            shard = queue.popleft()
            pending[call(pool[index], shard)] = (index, shard)

    for index in range(len(pool)):
        assign(index)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index, shard = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except (RayActorError, WorkerCrashedError) as exc:
                if getattr(exc, "actor_init_failed", False):  # a bad env/policy/checkpoint: retrying cannot help
                    raise RuntimeError(f"an {what} worker could not start: {exc}") from None
                failures += 1
                if failures > max_worker_failures:
                    raise RuntimeError(f"{failures} {what} workers died; last: {exc}") from exc
                queue.appendleft(shard)  # retried on the replacement worker (or any free one)
                pool[index] = new_worker()
                assign(index)
                continue
            except RayTaskError as exc:
                raise RuntimeError(f"an {what} episode failed on seeds {shard}: {exc}") from exc
            accepting = on_result(shard, result) and accepting
            assign(index)
    finally:
        # Pending shards are actor tasks: killing their workers ends them (ray.cancel's force
        # mode refuses actor tasks and would hide the error that brought us here).
        for worker in pool:
            ray.kill(worker)
        pool.clear()
    return failures
