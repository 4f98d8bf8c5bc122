"""`rllib-paper bench train`: what a user waits for, whole training iterations, against the physics.

End to end: the shipped training config's iterations (sampling and learning, exactly as
`rllib-paper train` runs them: ``algo.train()``), timed after a warm-up iteration. In the same
run, the physics ceiling: every env counts the CPU seconds its thread spends inside ``mj_step``
(``PaperSquareEnv.physics_seconds``), so the same env steps give

    ceiling env steps/s = cores x env steps / physics seconds

the rate at which the cores would step if they did nothing but physics. The ratio
end-to-end / ceiling is the figure of merit (issue target 0.6). Also printed: sampling env
steps/s (the runners' sampling time alone, RLlib's timer), learner seconds per iteration, the
sampling-only rate of plain ``sample`` calls against the single-process env (the earlier
figure), and memory per env (MiB added by one more residual env, lean and rendering).
"""

from __future__ import annotations

import gc
import json
import os
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


def _rss() -> int:
    with open("/proc/self/statm", encoding="utf-8") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _env_growth_mib(env_config, count: int, render: bool) -> float:
    """Resident memory one more residual env adds (after a reset and a few steps), in this process."""
    from rllib_paper.envs.residual import ResidualPaperEnv

    warm = ResidualPaperEnv(env_config, render_mode="rgb_array" if render else None)  # once-per-process costs
    warm.reset(seed=0)
    gc.collect()
    before = _rss()
    envs = [ResidualPaperEnv(env_config, render_mode="rgb_array" if render else None) for _ in range(count)]
    for env in envs:
        env.reset(seed=1)
        for _ in range(5):
            env.step(np.zeros(6, dtype=np.float32))
    gc.collect()
    grown = _rss() - before
    del envs
    return grown / count / 2**20


def mib_per_env(env_config, count: int = 4, render: bool = False) -> float:
    """Resident memory one more residual env adds, measured in a fresh spawned process.

    Why a child: in a long-lived process (a test session, a driver that already ran Ray) the
    allocator reuses memory freed earlier, so new envs may barely grow the resident set, and
    other threads allocate while we measure; a fresh interpreter measures the env alone.
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_env_growth_mib, (env_config, count, render)))


def _physics(group) -> tuple[float, int]:
    """(CPU seconds inside mj_step, env steps) summed over every env of every runner."""

    def runner_physics(runner) -> tuple[float, int]:
        vector = getattr(runner.env, "unwrapped", runner.env)
        envs = [env.unwrapped for env in vector.envs]
        return float(sum(e.physics_seconds for e in envs)), int(sum(e.physics_steps for e in envs))

    parts = group.foreach_env_runner(runner_physics, local_env_runner=False)
    return float(sum(p[0] for p in parts)), int(sum(p[1] for p in parts))


def run(
    runners: int | None = None,
    envs_per_runner: int | None = None,
    iterations: int = 5,
    steps_per_runner: int = 2400,
    config: str | None = None,
    assignments: tuple[str, ...] = (),
    warmup: int = 2,
) -> dict:
    import ray

    from rllib_paper.training.algorithm import build_algorithm_config, keep_trainable_logs_in

    train_config = load_train_config(
        config or "residual_scripted",
        [
            *([f"env_runners.num_env_runners={runners}"] if runners is not None else []),
            *([f"env_runners.num_envs_per_env_runner={envs_per_runner}"] if envs_per_runner is not None else []),
            "stop.iterations=1",
            *assignments,
        ],
    )
    # What is timed is the config's own runner layout unless the caller changed it.
    runners = train_config.env_runners.num_env_runners
    envs_per_runner = train_config.env_runners.num_envs_per_env_runner
    env_config = train_config.env
    # Memory first, each figure in a fresh process (mib_per_env says why).
    memory = {"lean": mib_per_env(env_config, count=8), "rendering": mib_per_env(env_config, count=2, render=True)}
    started = False
    if not ray.is_initialized():
        start_ray(num_cpus=runners)
        started = True
    try:
        cores = float(ray.cluster_resources().get("CPU", runners))
        single_before = single_process_rate(env_config, steps_per_runner // 2)
        logs = tempfile.TemporaryDirectory(prefix="rllib-paper-bench-")
        keep_trainable_logs_in(Path(logs.name))  # not ~/ray_results
        algo = build_algorithm_config(train_config).build_algo()
        group = algo.env_runner_group
        for _ in range(warmup):  # envs built, first episodes started, torch warmed, APPO's queues full
            algo.train()
        physics_before, steps_before = _physics(group)
        reported = sample_s = learn_s = 0.0
        start = time.perf_counter()
        for _ in range(iterations):
            result = algo.train()
            reported += result["env_runners"]["num_env_steps_sampled"]
            timers = result.get("timers", {})
            sample_s += float(timers.get("env_runner_sampling_timer", 0.0))
            learn_s += float(timers.get("learner_update_timer", 0.0))
        wall = time.perf_counter() - start
        physics_after, steps_after = _physics(group)
        # The steps the envs themselves took in the window: an asynchronous algorithm reports the
        # samples it drained from its queues, which may have been taken before the window.
        physics, steps = physics_after - physics_before, steps_after - steps_before

        def sample(n: int) -> int:
            batches = group.foreach_env_runner(
                lambda runner: sum(len(e) for e in runner.sample(num_timesteps=n, random_actions=False)),
                local_env_runner=False,
            )
            return int(sum(batches))

        sampled, elapsed = 0, 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            sampled += sample(steps_per_runner)
            elapsed += time.perf_counter() - t0
        algo.stop()
        logs.cleanup()
        single_after = single_process_rate(env_config, steps_per_runner // 2, seed=1)
    finally:
        if started:
            ray.shutdown()
    single = (single_before + single_after) / 2
    end_to_end = steps / wall
    ceiling = cores * steps / physics
    return {
        "runners": runners,
        "envs_per_runner": envs_per_runner,
        "iterations": iterations,
        "train_batch_size": train_config.ppo.train_batch_size,
        "base_policy": env_config.residual.base_policy,
        "cores": cores,
        "env_steps_timed": int(steps),
        "env_steps_reported": int(reported),
        "end_to_end_env_steps_per_s": end_to_end,
        "sample_env_steps_per_s": reported / sample_s if sample_s else float("nan"),
        "learner_s_per_iter": learn_s / iterations,
        "iteration_s": wall / iterations,
        "physics_ms_per_env_step": 1000 * physics / steps,
        "ceiling_env_steps_per_s": ceiling,
        "end_to_end_ratio": end_to_end / ceiling,
        "sampling_only_env_steps_per_s": sampled / elapsed,
        "single_process_env_steps_per_s": single,
        "sampling_only_ratio_to_ideal": (sampled / elapsed) / (runners * single),
        "mib_per_env": memory["lean"],
        "mib_per_rendering_env": memory["rendering"],
    }


def main(
    runners: int | None = None,
    envs_per_runner: int | None = None,
    iterations: int = 5,
    steps_per_runner: int = 2400,
    config: str | None = None,
    assignments: tuple[str, ...] = (),
) -> dict:
    r = run(
        runners=runners,
        envs_per_runner=envs_per_runner,
        iterations=iterations,
        steps_per_runner=steps_per_runner,
        config=config,
        assignments=assignments,
    )
    print(
        f"{r['iterations']} training iterations of {r['train_batch_size']} env steps ({r['runners']} runners x "
        f"{r['envs_per_runner']} envs, {r['base_policy']}): {r['iteration_s']:.2f} s each, "
        f"learner {r['learner_s_per_iter']:.2f} s of it"
    )
    print(
        f"end to end {r['end_to_end_env_steps_per_s']:.0f} env steps/s; sampling {r['sample_env_steps_per_s']:.0f}; "
        f"physics {r['physics_ms_per_env_step']:.3f} ms a step -> ceiling {r['ceiling_env_steps_per_s']:.0f} on "
        f"{r['cores']:g} cores; ratio {r['end_to_end_ratio']:.2f} (target >= 0.6)"
    )
    print(
        f"sampling only: {r['sampling_only_env_steps_per_s']:.0f} env steps/s vs "
        f"{r['single_process_env_steps_per_s']:.0f} single-process x {r['runners']} -> "
        f"{r['sampling_only_ratio_to_ideal']:.2f}; memory {r['mib_per_env']:.1f} MiB "
        f"per env ({r['mib_per_rendering_env']:.1f} rendering; target <= 30)"
    )
    print(json.dumps({"bench": "train", **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}}))
    return r
