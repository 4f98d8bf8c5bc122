"""Distributed seeded evaluation: episodes sharded over Ray actors into Parquet + a JSON report.

Each worker actor builds its env and policy once and runs whole shards of seeds with the
same episode function as the serial rollout (``rollout.EpisodeRunner``), so a seed is the
same episode on any worker and node, and the report never depends on how many ran it.

Nothing is lost: every finished shard is written to ``DIR/shards/`` at once (atomically);
``resume`` runs only the seeds no shard holds; a shard whose worker dies is re-queued and a
fresh worker takes its place; the final ``episodes.parquet`` holds every requested seed
exactly once, and a run that stopped early is written with ``"complete": false``.

A base policy that fails is a failed run, not a bad policy: its server is pinged before any
episode (an unreachable one is refused with ``BasePolicyFailed``); an episode whose base failed
mid-run is kept in the table with ``base_policy_failed`` and its error, left out of the
results, listed in the report (marked incomplete), and rerun by ``resume``; no new shard is
started after one. ``eval_main`` then ends with ``BasePolicyFailed``: one sentence naming the
server and the error.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_paper.config import ConfigError, EnvConfig, ResidualConfig, dr_preset, preset_name
from rllib_paper.evaluation.episodes import base_failure_message, seeds_text
from rllib_paper.evaluation.report import (
    SCHEMA_VERSION,
    base_failed,
    base_failure_record,
    format_summary,
    summarize,
    write_markdown,
    write_plot,
)
from rllib_paper.evaluation.videos import DEFAULT_SIZE as VIDEO_SIZE
from rllib_paper.policies.base import BasePolicyFailed
from rllib_paper.policies.registry import base_policy_label, ping_base_policy, policy_identity, resolve_base_policy
from rllib_paper.residual.checkpoint import RESIDUAL_ACTIONS, check_checkpoint, read_trained_env
from rllib_paper.runtime.files import atomic_write, dump_json
from rllib_paper.runtime.provenance import provenance
from rllib_paper.runtime.ray_start import start_ray
from rllib_paper.runtime.shards import run_shards
from rllib_paper.runtime.storage import is_uri

SHARD_DIR = "shards"
PLOT_NAME = "success_by_dr_bin.png"
COMPARED_CONFIG_KEYS = ("policy", "checkpoint", "residual_actions", "env", "seeds")
SNAPSHOT_DEFAULTS = {"residual_actions": "mean"}  # keys a run written before them holds implicitly
DEFAULT_SETTLE_STEPS = 30  # 1 s at 30 Hz: evaluation's success is one that holds (TaskConfig)


def _first_difference(trained: dict[str, Any], now: dict[str, Any]) -> str:
    a, b = policy_identity(trained), policy_identity(now)
    if a[0] != b[0]:
        return f"kind {a[0]!r} there, {b[0]!r} here"
    keys = sorted(set(a[1]) | set(b[1]))
    key = next((k for k in keys if a[1].get(k) != b[1].get(k)), None)
    return f"{key}={a[1].get(key)!r} there, {b[1].get(key)!r} here"


def default_eval_env() -> EnvConfig:
    """What ``rllib-paper eval`` runs unless told otherwise: the pusher on phase-2 DR."""
    return EnvConfig(randomization=dr_preset("phase2"), residual=ResidualConfig(base_policy="scripted"))


def trained_env_config(checkpoint: str, dr: str | None = None) -> EnvConfig:
    """The env a checkpoint was trained in (its alpha, scale, reward, exact base), on preset ``dr``
    if given: where an evaluation of that checkpoint starts."""
    trained = read_trained_env(checkpoint)
    if trained is None:
        raise ConfigError(
            f"checkpoint={checkpoint!r}: no rllib_paper_env.json beside it, so its env and base policy are "
            "unknown; pass the checkpoint directory written by `rllib-paper train`"
        )
    env = EnvConfig.from_dict(trained.env)
    return env if dr is None else dataclasses.replace(env, randomization=dr_preset(dr))


@dataclass(frozen=True)
class EvalConfig:
    # What is evaluated: the base policy (env.residual.base_policy), the DR, the task. With a
    # checkpoint, start from its own env (read_trained_env) so alpha, scale and base match.
    env: EnvConfig = field(default_factory=default_eval_env)
    checkpoint: str | None = None  # a residual checkpoint: evaluates base + residual
    # The checkpoint's actions: its Gaussian's "mean", or "sample" (noise seeded by the episode).
    residual_actions: str = "mean"
    episodes: int = 200
    seed: int = 0  # episodes use seed .. seed + episodes - 1
    seeds_file: str | None = None  # one seed per line or a JSON list; overrides seed/episodes
    workers: int = 2  # Ray actors, one CPU each
    out: str = "results/eval"
    resume: bool = False
    shard_size: int = 8  # episodes per task; each finished shard is saved at once
    address: str | None = None  # Ray address; None starts (or reuses) a local Ray
    max_worker_failures: int = 5
    progress: bool = True
    # Evaluate a checkpoint over a base whose resolved parameters differ from the one it was
    # trained over (an ablation, not a reproduction); refused unless set.
    allow_base_mismatch: bool = False
    # Success that holds: control steps the episode continues after its first success before it is
    # judged (env.task.settle_after_success_steps, folded into env here); None keeps env's own value.
    settle_steps: int | None = DEFAULT_SETTLE_STEPS
    # Videos (evaluation/videos.py): the first `videos` failures and successes by seed, or exactly
    # `video_seeds`, re-run with rendering after all shards finish, into DIR/videos/.
    videos: int = 0
    video_seeds: tuple[int, ...] | None = None
    video_size: tuple[int, int] = VIDEO_SIZE  # per view (height, width)

    def __post_init__(self) -> None:
        if not isinstance(self.env, EnvConfig):
            raise ConfigError(f"env={self.env!r}: expected an EnvConfig")
        if self.settle_steps is not None:
            if not isinstance(self.settle_steps, int) or isinstance(self.settle_steps, bool) or self.settle_steps < 0:
                raise ConfigError(f"settle_steps={self.settle_steps!r}: allowed range is [0, 10000] integers")
            task = dataclasses.replace(self.env.task, settle_after_success_steps=self.settle_steps)
            object.__setattr__(self, "env", dataclasses.replace(self.env, task=task))
        if self.residual_actions not in RESIDUAL_ACTIONS:
            raise ConfigError(
                f"residual_actions={self.residual_actions!r}: allowed values are {list(RESIDUAL_ACTIONS)}"
            )
        if not isinstance(self.videos, int) or self.videos < 0:
            raise ConfigError(f"videos={self.videos!r}: allowed range is [0, inf) integers")
        size = tuple(self.video_size)
        if len(size) != 2 or any(not isinstance(v, int) or v < 16 or v % 2 for v in size):
            raise ConfigError(f"video_size={self.video_size!r}: expected (height, width), even, at least 16")
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes!r}: allowed range is [1, inf) integers")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers={self.workers!r}: allowed range is [1, inf) integers")
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ConfigError(f"shard_size={self.shard_size!r}: allowed range is [1, inf) integers")
        if self.checkpoint is not None and not is_uri(self.checkpoint) and not Path(self.checkpoint).exists():
            raise ConfigError(f"checkpoint={self.checkpoint!r}: no such file or directory")
        if self.seeds_file is not None and not Path(self.seeds_file).is_file():
            raise ConfigError(f"seeds_file={self.seeds_file!r}: no such file")

    @property
    def policy(self) -> str:
        return self.env.residual.base_policy

    @property
    def dr(self) -> str:
        """The DR preset's name, or "custom" for ranges no preset has (reports and plots)."""
        return preset_name(self.env.randomization)

    def check(self) -> None:
        """Refuse a bad base spec, or a checkpoint over a different base, before Ray starts."""
        record = resolve_base_policy(self.policy)
        if self.video_seeds is not None:
            unknown = sorted(set(self.video_seeds) - set(self.seeds()))
            if unknown:
                raise ConfigError(f"video_seeds: {unknown[:5]} are not among the evaluated seeds")
        if self.checkpoint is None:
            return
        check_checkpoint(self.checkpoint)
        trained = read_trained_env(self.checkpoint)
        if trained is None or self.allow_base_mismatch:
            return
        if policy_identity(trained.base_policy) != policy_identity(record):
            raise ConfigError(
                f"base policy {self.policy!r} is not the base the checkpoint's residual was trained over "
                f"({trained.base_policy['spec']!r}, parameters {_first_difference(trained.base_policy, record)}); "
                "evaluate without --policy to use the checkpoint's own base, or pass --allow-base-mismatch"
            )

    def seeds(self) -> list[int]:
        if self.seeds_file is None:
            return list(range(self.seed, self.seed + self.episodes))
        text = Path(self.seeds_file).read_text(encoding="utf-8").strip()
        try:
            values = json.loads(text) if text.startswith("[") else [int(v) for v in text.split()]
        except ValueError as exc:
            raise ConfigError(
                f"seeds_file={self.seeds_file!r}: expected integers, one per line or a JSON list"
            ) from exc
        if len(set(values)) != len(values):
            raise ConfigError(f"seeds_file={self.seeds_file!r}: seeds must be unique")
        if not values:
            raise ConfigError(f"seeds_file={self.seeds_file!r}: no seeds")
        return [int(v) for v in values]


def _episode_row(record, node_id: str, pid: int) -> dict[str, Any]:
    row = record.to_dict()
    dr = row.pop("dr")
    row["success_once"] = row["success_step"] is not None
    row["success_at_end"] = row["success"]
    row["success_step"] = float(row["success_step"]) if row["success_step"] is not None else float("nan")
    row.update({f"dr_{k}": v for k, v in dr.items()})
    row["node_id"] = node_id
    row["worker_pid"] = pid
    return row


class _EvalWorkerImpl:
    """One env + policy per worker process, reused for every shard it is given."""

    def __init__(self, env_config: dict[str, Any], checkpoint: str | None, residual_actions: str = "mean") -> None:
        import ray

        from rllib_paper.evaluation.episodes import EpisodeRunner

        residual_fn = None
        if checkpoint is not None:
            from rllib_paper.residual.checkpoint import load_residual_policy

            residual_fn = load_residual_policy(checkpoint, residual_actions)
        self.runner = EpisodeRunner(env_config, residual_fn=residual_fn)
        self.node_id = ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        return os.getpid()

    def run_shard(self, seeds: Sequence[int]) -> list[dict[str, Any]]:
        return [_episode_row(self.runner.run(seed), self.node_id, os.getpid()) for seed in seeds]

    def render_video(self, seed: int, size: Sequence[int]) -> dict[str, Any]:
        from rllib_paper.evaluation.videos import render_episode

        rendered = render_episode(self.runner, seed, size)
        return {
            "row": _episode_row(rendered.record, self.node_id, os.getpid()),
            "mp4": rendered.mp4,
            "frames": rendered.frames,
            "render_seconds": rendered.render_seconds,
            "encode_seconds": rendered.encode_seconds,
        }


@functools.cache
def _worker_class():
    """The Ray actor class, made once per process (ray.remote is not free)."""
    import ray

    return ray.remote(num_cpus=1, max_restarts=0)(_EvalWorkerImpl)


def _shard_name(seeds: Sequence[int]) -> str:
    digest = hashlib.sha1(",".join(map(str, seeds)).encode()).hexdigest()[:10]
    return f"shard-{min(seeds):010d}-{len(seeds):04d}-{digest}.parquet"


def _write_atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _read_shards(shard_dir: Path) -> pd.DataFrame:
    files = sorted(shard_dir.glob("shard-*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


class Evaluator:
    """Runs one EvalConfig. ``on_shard_done(n_done, n_total)`` is called after each shard is saved."""

    def __init__(self, config: EvalConfig, on_shard_done: Callable[[int, int], None] | None = None) -> None:
        self.config = config
        self.on_shard_done = on_shard_done
        self.out = Path(config.out)
        self.shard_dir = self.out / SHARD_DIR
        self.workers: list[Any] = []
        self.worker_failures = 0
        self.episodes_run = 0  # episodes this invocation ran (not counting resumed ones)
        self.base_failed = False  # an episode's base policy failed: no new shard is started

    # ---------------------------------------------------------------- public
    def run(self) -> dict[str, Any]:
        config = self.config
        seeds = config.seeds()
        config.check()
        env_config = config.env
        self._prepare_directory(seeds, env_config.to_dict())
        existing = _read_shards(self.shard_dir)
        # An episode whose base policy failed is no result: a resumed run runs it again.
        done = set(existing.loc[~base_failed(existing), "seed"]) if len(existing) else set()
        todo = [s for s in seeds if s not in done]
        if todo:
            ping_base_policy(config.policy)  # an unreachable server: refused before Ray or any episode
        try:
            if todo:
                self._run_shards(todo, env_config.to_dict(), total=len(seeds), already=len(seeds) - len(todo))
            if config.videos or config.video_seeds:
                from rllib_paper.evaluation.video_pass import render_videos

                render_videos(self, _read_shards(self.shard_dir), seeds, env_config.to_dict())
        finally:
            report = self.finalize(seeds)
        return report

    def finalize(self, seeds: Sequence[int]) -> dict[str, Any]:
        """Merge the shards into episodes.parquet and write report.json, summary.md and the plot."""
        requested = set(seeds)
        episodes = _read_shards(self.shard_dir)
        if len(episodes):
            episodes = episodes[episodes["seed"].isin(requested)]
            episodes = episodes.assign(base_policy_failed=base_failed(episodes))  # old shards lack the column
            if "base_policy_error" not in episodes:
                episodes = episodes.assign(base_policy_error=None)
            # A seed rerun after its base failed keeps the rerun's row.
            episodes = episodes.sort_values(["seed", "base_policy_failed"], kind="stable")
            episodes = episodes.drop_duplicates("seed", keep="first").reset_index(drop=True)
        failed = episodes[base_failed(episodes)] if len(episodes) else episodes
        valid = episodes[~base_failed(episodes)] if len(episodes) else episodes
        complete = len(valid) == len(requested)
        if len(episodes):
            _write_atomic_parquet(episodes, self.out / "episodes.parquet")
        ranges = {k: tuple(v) for k, v in dataclasses.asdict(self.config.env.randomization).items()}
        report = {
            "schema_version": SCHEMA_VERSION,
            "complete": complete,
            "episodes_requested": len(requested),
            "episodes_done": len(valid),  # episodes with a result: their base policy did not fail
            "base_policy_failures": base_failure_record(failed) if len(failed) else {"count": 0, "episodes": []},
            "missing_seeds": sorted(requested - set(episodes["seed"]))[:50]
            if len(episodes)
            else sorted(requested)[:50],
            "config": self._config_snapshot(seeds),
            "results": summarize(valid, ranges) if len(valid) else None,
            "provenance": provenance(),
            "run": {
                "workers": self.config.workers,
                "worker_failures": self.worker_failures,
                "nodes": sorted(set(episodes["node_id"])) if len(episodes) else [],
                "episode_wall_seconds_total": float(episodes["wall_seconds"].sum()) if len(episodes) else 0.0,
            },
        }
        from rllib_paper.evaluation.video_pass import read_video_index

        report["videos"] = read_video_index(self.out, requested)
        dump_json(report, self.out / "report.json")
        plot = None
        if report["results"] is not None:
            try:
                write_plot(report, self.out / PLOT_NAME)
                plot = PLOT_NAME
            except Exception as exc:  # a plotting backend problem must not lose the report
                print(f"warning: could not draw {PLOT_NAME}: {exc}")
        if len(episodes):
            write_markdown(report, self.out / "summary.md", plot)
        from rllib_paper.evaluation.html import write_html

        write_html(report, self.out, plot if report["results"] is not None else None, episodes)
        return report

    # ---------------------------------------------------------------- internals
    def _config_snapshot(self, seeds: Sequence[int]) -> dict[str, Any]:
        c = self.config
        return {
            "policy": c.policy,
            "checkpoint": c.checkpoint,
            "residual_actions": c.residual_actions,
            "dr": c.dr,
            "env": c.env.to_dict(),
            "seeds": {
                "first": min(seeds),
                "last": max(seeds),
                "count": len(seeds),
                "sha1": hashlib.sha1(",".join(map(str, seeds)).encode()).hexdigest(),
            },
            "seeds_file": c.seeds_file,
            "base_policy": resolve_base_policy(c.policy),
        }

    def _prepare_directory(self, seeds: Sequence[int], env_config: dict[str, Any]) -> None:
        snapshot_path = self.out / "eval_config.json"
        snapshot = self._config_snapshot(seeds)
        if self.shard_dir.exists() and any(self.shard_dir.glob("shard-*.parquet")):
            if not self.config.resume:
                raise ConfigError(
                    f"out={str(self.out)!r} already holds evaluation shards: pass --resume to "
                    "continue that run, or choose a new --out"
                )
            if snapshot_path.is_file():
                previous = json.loads(snapshot_path.read_text(encoding="utf-8"))
                for key in COMPARED_CONFIG_KEYS:
                    before = previous.get(key, SNAPSHOT_DEFAULTS.get(key))
                    if before != json.loads(json.dumps(snapshot[key])):
                        raise ConfigError(
                            f"--resume: {key} differs from the run in {self.out} "
                            f"({before!r} there, {snapshot[key]!r} now)"
                        )
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        dump_json(snapshot, snapshot_path)

    def _start_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            start_ray(self.config.address, logging_level="WARNING")

    def _new_worker(self, env_config: dict[str, Any]):
        return _worker_class().remote(env_config, self.config.checkpoint, self.config.residual_actions)

    def _run_shards(self, todo: list[int], env_config: dict[str, Any], total: int, already: int) -> None:
        from tqdm import tqdm

        self._start_ray()
        size = self.config.shard_size
        bar = tqdm(
            total=total,
            initial=already,
            unit="ep",
            desc=f"eval {self.config.policy}/{self.config.dr}",
            disable=not self.config.progress,
            smoothing=0.1,
        )
        shards_done = 0

        def save(shard: list[int], rows: list[dict[str, Any]]) -> bool:
            nonlocal shards_done
            _write_atomic_parquet(pd.DataFrame(rows), self.shard_dir / _shard_name(shard))
            self.episodes_run += len(rows)
            shards_done += 1
            bar.update(len(rows))
            if self.on_shard_done is not None:
                self.on_shard_done(shards_done, len(todo))
            # Its server stopped answering: the next shards would fail the same way, each
            # episode after two timeouts. Let the running shards finish, start no new one.
            self.base_failed = self.base_failed or any(row["base_policy_failed"] for row in rows)
            return not self.base_failed

        try:
            self.worker_failures += run_shards(
                [todo[i : i + size] for i in range(0, len(todo), size)],
                lambda: self._new_worker(env_config),
                lambda worker, shard: worker.run_shard.remote(shard),
                save,
                workers=self.config.workers,
                max_worker_failures=self.config.max_worker_failures,
                pool=self.workers,
            )
        finally:
            bar.close()


def evaluate(config: EvalConfig, on_shard_done: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) an evaluation and return its report (also written under config.out)."""
    return Evaluator(config, on_shard_done).run()


def raise_for_base_failures(report: dict[str, Any], out: str | Path) -> None:
    """BasePolicyFailed (one sentence: the server, the episodes, the first error) when any
    episode of the report's evaluation ended because its base policy failed."""
    failures = report["base_policy_failures"]
    if not failures["count"]:
        return
    where = (
        f"those episodes are excluded from the success rate and {Path(out) / 'report.json'} is marked "
        "incomplete (--resume reruns them once the server answers)"
    )
    if report["missing_seeds"]:
        where = f"the evaluation stopped, {where}"
    run = report["episodes_done"] + failures["count"]
    seeds = seeds_text([f["seed"] for f in failures["episodes"]])
    raise BasePolicyFailed(
        base_failure_message(
            base_policy_label(report["config"]["policy"]),
            [f["error"] for f in failures["episodes"]] + [None] * (failures["count"] - len(failures["episodes"])),
            f"{run} episodes run ({seeds})",
            where,
        )
    )


def eval_main(config: EvalConfig) -> int:
    start = time.perf_counter()
    try:
        report = evaluate(config)
    except KeyboardInterrupt:
        report = json.loads((Path(config.out) / "report.json").read_text(encoding="utf-8"))
        print(
            f"interrupted: {report['episodes_done']}/{report['episodes_requested']} episodes saved in "
            f"{config.out}; the report there is marked incomplete. Continue with --resume."
        )
        return 130
    print(format_summary(report))
    print(f"wrote {config.out}/episodes.parquet, report.json, summary.md in {time.perf_counter() - start:.1f} s")
    success = report["results"]["success"] if report["results"] is not None else {"rate": None, "ci95": None}
    print(
        json.dumps(
            {
                "eval": config.policy,
                "checkpoint": config.checkpoint,
                "dr": config.dr,
                "complete": report["complete"],
                "episodes": report["episodes_done"],
                "base_policy_failed": report["base_policy_failures"]["count"],
                "success_rate": success["rate"],
                "success_ci95": success["ci95"],
            }
        )
    )
    raise_for_base_failures(report, config.out)  # exit 3 with one sentence naming the server
    return 0 if report["complete"] else 1
