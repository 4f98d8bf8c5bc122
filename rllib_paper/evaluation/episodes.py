"""Seeded episodes of a base policy: one function the serial rollout and the distributed
evaluation both call, so a seed means the same episode everywhere.

``EpisodeRunner`` builds the env and the policy once and runs many seeds with them (an
evaluation worker holds one); ``run_episode`` is the one-shot form. An episode whose base
policy failed (``base_policy_failed``: its server stopped answering) is recorded with the
error but is not a result of the policy: success rates leave it out and the run that met it
stops with ``BasePolicyFailed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rllib_paper.config import EnvConfig, coerce_env_config
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.policies.base import BasePolicy

ResidualFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EpisodeRecord:
    seed: int
    success: bool  # success at termination (the env terminates on success)
    success_step: int | None
    steps: int
    episode_return: float
    final_corner_error_mm: float
    final_corner_excess_mm: float
    final_distance: float
    final_yaw_error: float
    residual_abs_mean: float
    residual_abs_max: float
    sim_unstable: bool
    base_policy_failed: bool  # the base policy did not answer (twice): not a result of the policy
    base_policy_error: str | None  # what it raised, when it failed
    wall_seconds: float
    dr: dict[str, float] = field(default_factory=dict)
    # Success that holds (task.settle_after_success_steps > 0): ``success`` is judged after the
    # settle phase (success_at_end); success_once is the first crossing into the frame.
    success_once: bool = False
    final_sheet_speed: float = 0.0  # m/s, planar, at the last step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EpisodeRunner:
    """One env + base policy (+ optional residual function), reused across seeds."""

    def __init__(
        self,
        env_config: EnvConfig | Mapping[str, Any] | None,
        policy_spec: str | None = None,
        residual_fn: ResidualFn | None = None,
        base_policy: BasePolicy | None = None,
        render_mode: str | None = None,
    ) -> None:
        """``base_policy``: an already built policy instead of the one the config names (the
        recorder wraps it); ``render_mode="rgb_array"`` keeps the visual meshes for cameras."""
        config = coerce_env_config(env_config)
        if policy_spec is not None:
            config = coerce_env_config(config, residual={**asdict(config.residual), "base_policy": policy_spec})
        self.config = config
        self.env = ResidualPaperEnv(config, render_mode=render_mode, base_policy=base_policy)
        self.residual_fn = residual_fn

    def run(self, seed: int, on_frame: Callable[[Any, dict[str, Any]], None] | None = None) -> EpisodeRecord:
        """One seeded episode; ``on_frame(env, info)`` (a video) sees the env after reset and every step."""
        start = time.perf_counter()
        obs, info = self.env.reset(seed=int(seed))
        reset_residual = getattr(self.residual_fn, "reset", None)
        if reset_residual is not None:  # a sampled residual: its noise seeded by the episode
            reset_residual(int(seed))
        if on_frame is not None:
            on_frame(self.env, info)
        dr = info["dr"]
        zero = np.zeros(6, dtype=np.float32)
        total, steps, success_step = 0.0, 0, None
        residual_sum, residual_max = 0.0, 0.0
        while True:
            action = zero if self.residual_fn is None else self.residual_fn(obs)
            obs, reward, terminated, truncated, info = self.env.step(action)
            steps += 1
            total += reward
            residual_sum += info["residual_abs_mean"]
            residual_max = max(residual_max, info["residual_abs_max"])
            if on_frame is not None:
                on_frame(self.env, info)
            if info.get("success_once", info["success"]) and success_step is None:
                success_step = steps
            if terminated or truncated:
                break
        return EpisodeRecord(
            seed=int(seed),
            success=bool(info["success"]),
            success_step=success_step,
            steps=steps,
            episode_return=float(total),
            final_corner_error_mm=float(info["corner_error_mm"]),
            final_corner_excess_mm=float(info["corner_excess_mm"]),
            final_distance=float(info["distance"]),
            final_yaw_error=float(info["yaw_error"]),
            residual_abs_mean=residual_sum / steps,
            residual_abs_max=residual_max,
            sim_unstable=bool(info["sim_unstable"]),
            base_policy_failed=bool(info.get("base_policy_failed", False)),
            base_policy_error=info.get("base_policy_error") if info.get("base_policy_failed") else None,
            wall_seconds=time.perf_counter() - start,
            dr=dict(dr),
            success_once=success_step is not None,
            final_sheet_speed=self.env.env.sheet_speed,
        )


def run_episode(env_spec: EnvConfig | Mapping[str, Any] | None, policy_spec: str, seed: int) -> EpisodeRecord:
    """Run one seeded episode of base policy ``policy_spec`` (residual 0) and return its record."""
    return EpisodeRunner(env_spec, policy_spec).run(seed)


def summarize(records: list[EpisodeRecord]) -> dict[str, Any]:
    """Success rate with its Wilson interval, plus mean final errors, over the episodes whose
    base policy did not fail; those that failed are counted and listed, not rated."""
    from rllib_paper.evaluation.statistics import wilson_interval

    failed = [r for r in records if r.base_policy_failed]
    records = [r for r in records if not r.base_policy_failed]
    n = len(records)
    successes = sum(r.success for r in records)
    low, high = wilson_interval(successes, n)
    return {
        "episodes": n,
        "successes": successes,
        "success_rate": successes / n if n else None,
        "success_ci95": [low, high],
        "mean_return": float(np.mean([r.episode_return for r in records])) if n else None,
        "mean_final_distance": float(np.mean([r.final_distance for r in records])) if n else None,
        "mean_final_corner_error_mm": float(np.mean([r.final_corner_error_mm for r in records])) if n else None,
        "sim_unstable": sum(r.sim_unstable for r in records),
        "base_policy_failed": len(failed),
        "base_policy_failures": [{"seed": r.seed, "error": r.base_policy_error} for r in failed],
    }


def base_failure_message(label: str, errors: list[str | None], episodes: str, where: str) -> str:
    """The one sentence a run whose base policy failed stops with: the server, how many of which
    ``episodes`` (e.g. "2 episodes run (seeds 0, 1)"), the first error, and what became of the run."""
    return f"base policy {label} failed on {len(errors)} of {episodes}: {errors[0]}; {where}"


def seeds_text(seeds: list[int]) -> str:
    """``seed 3`` or ``seeds 3, 4, 7, ...`` (the first five)."""
    shown = ", ".join(map(str, seeds[:5])) + (", ..." if len(seeds) > 5 else "")
    return f"seed{'s' if len(seeds) > 1 else ''} {shown}"


def rollout_main(
    env: EnvConfig,
    episodes: int,
    seed: int,
    json_out: str | None = None,
    quiet: bool = False,
    video: str | None = None,
    video_size: tuple[int, int] | None = None,
) -> int:
    """Serial seeded rollout of a base policy: per-episode lines, then the success rate.

    The base policy's server is pinged first (an unreachable one is refused before any episode);
    an episode whose base fails stops the rollout, is left out of the rate, and the command
    ends with ``BasePolicyFailed`` after the summary (and ``json_out``) are written.
    ``video``: also write the first episode (seed ``seed``) as an MP4 there (evaluation/videos.py)."""
    import json

    from tqdm import tqdm

    from rllib_paper.evaluation.statistics import format_rate
    from rllib_paper.policies.base import BasePolicyFailed
    from rllib_paper.policies.registry import base_policy_label, ping_base_policy

    if episodes < 1:
        from rllib_paper.config import ConfigError

        raise ConfigError(f"episodes={episodes}: allowed range is [1, inf)")
    from rllib_paper.config import preset_name

    policy, dr = env.residual.base_policy, preset_name(env.randomization)
    ping_base_policy(policy)
    runner = EpisodeRunner(env)
    records = []
    bar = tqdm(
        range(seed, seed + episodes), desc=f"{policy} on {dr}", unit="ep", disable=True if quiet else None, leave=False
    )
    for s in bar:
        if video and s == seed:
            from pathlib import Path

            from rllib_paper.evaluation.videos import DEFAULT_SIZE, render_episode

            rendered = render_episode(runner, s, video_size or DEFAULT_SIZE)
            Path(video).parent.mkdir(parents=True, exist_ok=True)
            Path(video).write_bytes(rendered.mp4)
            record = rendered.record
            print(
                f"wrote {video}: seed {s}, {rendered.frames} frames (reset + {record.steps} steps), "
                f"render {rendered.render_seconds:.1f} s, encode {rendered.encode_seconds:.1f} s"
            )
        else:
            record = runner.run(s)
        records.append(record)
        if record.base_policy_failed:
            tqdm.write(f"seed {s:6d}  BASE POLICY FAILED after {record.steps} steps: {record.base_policy_error}")
            break  # its server is gone: the next episodes would fail the same way
        if not quiet:
            tqdm.write(
                f"seed {s:6d}  {'SUCCESS' if record.success else 'fail   '}  steps {record.steps:3d}  "
                f"return {record.episode_return:8.2f}  distance {100 * record.final_distance:5.1f} cm  "
                f"corner error {record.final_corner_error_mm:6.1f} mm"
                f"{'  SIM UNSTABLE' if record.sim_unstable else ''}"
            )
    bar.close()
    summary = summarize(records)
    summary["complete"] = summary["episodes"] == episodes
    head = f"policy={policy} dr={dr} seeds {seed}..{seed + episodes - 1}: "
    failed = summary["base_policy_failed"]
    excluded = f" ({failed} excluded: base policy failed)" if failed else ""
    if summary["episodes"]:
        print(
            f"{head}success {format_rate(summary['successes'], summary['episodes'])}{excluded}; "
            f"mean final distance {100 * summary['mean_final_distance']:.1f} cm; "
            f"mean corner error {summary['mean_final_corner_error_mm']:.1f} mm"
        )
    else:
        print(f"{head}no episode has a result{excluded}")
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            json.dump({"summary": summary, "episodes": [r.to_dict() for r in records]}, fh, indent=1)
    print(json.dumps({"rollout": policy, "dr": dr, **summary}))
    if summary["base_policy_failed"]:
        failures = summary["base_policy_failures"]
        raise BasePolicyFailed(
            base_failure_message(
                base_policy_label(policy),
                [f["error"] for f in failures],
                f"{len(records)} episodes run ({seeds_text([f['seed'] for f in failures])})",
                "the rollout stopped there and those episodes are excluded from the success rate",
            )
        )
    return 0
