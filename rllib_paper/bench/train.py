"""`rllib-paper bench train`: env steps/s RLlib samples against the ideal, from one run.

The ideal is what the same env (residual over the scripted base, the training config's DR
and residual gain, random residual actions) steps in one plain Python loop, times the
number of env runners: perfect scaling with zero framework cost. The RLlib figure is the
env runners sampling in parallel with the residual network in the loop (connectors, module
forward, episode bookkeeping), timed around the parallel ``sample`` calls only, after a
warm-up. The plain loop is timed before and after the RLlib rounds and averaged, so drift
in machine speed affects both sides alike.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rllib_paper.runtime.ray_start import start_ray
from rllib_paper.training.config import load_train_config


def single_process_rate(env_config, steps: int, seed: int = 0) -> float:
    from rllib_paper.envs.residual import ResidualPaperEnv

    env = ResidualPaperEnv(env_config)
    rng = np.random.default_rng(seed)
    actions = rng.normal(0.0, 0.3, size=(steps, 6)).clip(-1, 1).astype(np.float32)
    env.reset(seed=seed)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[i])
        if terminated or truncated:
            env.reset(seed=seed + i + 1)
    return steps / (time.perf_counter() - start)


def run(
    runners: int = 2, envs_per_runner: int = 8, steps_per_runner: int = 2400, rounds: int = 2, config: str | None = None
) -> dict:
    import ray

    from rllib_paper.training.algorithm import build_algorithm_config, keep_trainable_logs_in

    assignments = [
        f"env_runners.num_env_runners={runners}",
        f"env_runners.num_envs_per_env_runner={envs_per_runner}",
        "stop.iterations=1",
    ]
    train_config = load_train_config(config or "residual_scripted", assignments)
    env_config = train_config.env
    started = False
    if not ray.is_initialized():
        start_ray(num_cpus=runners)
        started = True
    try:
        single_before = single_process_rate(env_config, steps_per_runner // 2)
        logs = tempfile.TemporaryDirectory(prefix="rllib-paper-bench-")
        keep_trainable_logs_in(Path(logs.name))  # not ~/ray_results
        algo = build_algorithm_config(train_config).build_algo()
        group = algo.env_runner_group

        def sample(n: int) -> int:
            batches = group.foreach_env_runner(
                lambda runner: sum(len(e) for e in runner.sample(num_timesteps=n, random_actions=False)),
                local_env_runner=False,
            )
            return int(sum(batches))

        sample(envs_per_runner * 20)  # warm-up: envs built, first episodes started
        sampled, elapsed = 0, 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            sampled += sample(steps_per_runner)
            elapsed += time.perf_counter() - start
        algo.stop()
        logs.cleanup()
        single_after = single_process_rate(env_config, steps_per_runner // 2, seed=1)
    finally:
        if started:
            ray.shutdown()
    single = (single_before + single_after) / 2
    rllib_rate = sampled / elapsed
    return {
        "runners": runners,
        "envs_per_runner": envs_per_runner,
        "base_policy": env_config.residual.base_policy,
        "env_steps_sampled": sampled,
        "single_process_env_steps_per_s": single,
        "ideal_env_steps_per_s": runners * single,
        "rllib_env_steps_per_s": rllib_rate,
        "ratio_to_ideal": rllib_rate / (runners * single),
    }


def main(runners: int = 2, envs_per_runner: int = 8, steps_per_runner: int = 2400) -> dict:
    result = run(runners=runners, envs_per_runner=envs_per_runner, steps_per_runner=steps_per_runner)
    print(
        f"single process: {result['single_process_env_steps_per_s']:.0f} env steps/s; "
        f"ideal for {runners} runners: {result['ideal_env_steps_per_s']:.0f}"
    )
    print(
        f"RLlib sampling ({runners} runners x {envs_per_runner} envs): {result['rllib_env_steps_per_s']:.0f} "
        f"env steps/s -> ratio {result['ratio_to_ideal']:.2f} of ideal (target >= 0.6)"
    )
    print(json.dumps({"bench": "train", **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}))
    return result
