"""Residual PPO on Ray RLlib (new API stack): config -> Algorithm -> run directory.

The training loop is ours, not Tune's, so one run directory holds everything a user needs
and ``--resume`` has one obvious meaning:

    RUN_DIR/config.yaml         the TrainConfig (what --resume reuses)
    RUN_DIR/run_info.json       git commit, seeds, package versions, starts and resumes
    RUN_DIR/metrics.csv         one row per iteration (task metrics, PPO stats, throughput)
    RUN_DIR/episodes.csv        one row per training episode (the rolling success rate's source)
    RUN_DIR/tensorboard/        the same scalars for TensorBoard
    RUN_DIR/checkpoints/        iter_NNNNNN (the last few), best/, final/, latest.json

Checkpoints are written to a temporary directory and renamed into place, then
``latest.json`` is replaced atomically; metrics rows past the restored iteration are dropped
on resume. A run killed at any moment therefore resumes from its last checkpoint with the
iteration counter, weights, optimizer state and metrics history of that checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rllib_paper.config import ConfigError
from rllib_paper.envs.paper_env import REWARD_TERMS
from rllib_paper.residual.checkpoint import ENV_SNAPSHOT
from rllib_paper.runtime.files import write_text_atomic as _atomic_write
from rllib_paper.runtime.provenance import provenance
from rllib_paper.runtime.ray_start import start_ray
from rllib_paper.training.callbacks import EPISODES_KEY
from rllib_paper.training.config import TrainConfig, stop_reached

CHECKPOINTS = "checkpoints"
# Per-iteration task metrics (metrics.csv columns a sweep may optimise).
METRIC_COLUMNS = (
    "success_rate",
    "success_rolling",
    "episode_return",
    "episode_length",
    "residual_abs_mean",
    "final_distance",
    "env_steps_total",
)
KEEP_PERIODIC = 3
EPISODE_FIELDS = (
    "iteration",
    "success",
    "length",
    "return",
    "residual_abs_mean",
    "final_distance",
    "final_yaw_error",
    "sim_unstable",
    "node_id",
    *(f"reward_{t}" for t in REWARD_TERMS),
)


def build_algorithm_config(config: TrainConfig):
    """The PPOConfig for a TrainConfig (new API stack, residual env, task-metrics callback)."""
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_paper.envs.registry import register_with_rllib
    from rllib_paper.residual.rl_module import ResidualPPOTorchRLModule
    from rllib_paper.sim.observation import observation_normalizer
    from rllib_paper.training.callbacks import TaskMetricsCallback

    env_config = config.env.env_config()
    center, scale = observation_normalizer(env_config)
    runners, ppo, learners = config.env_runners, config.ppo, config.learners
    use_gpu = learners.gpu == "yes" or (learners.gpu == "auto" and torch.cuda.is_available())
    if learners.gpu == "yes" and not torch.cuda.is_available():
        raise ConfigError("learners.gpu='yes': torch sees no GPU here; use 'auto' or 'no'")
    batch_per_learner = max(1, ppo.train_batch_size // max(1, learners.num_learners))
    return (
        PPOConfig()
        .environment(register_with_rllib(), env_config=env_config.to_dict())
        .env_runners(
            num_env_runners=runners.num_env_runners,
            num_envs_per_env_runner=runners.num_envs_per_env_runner,
            num_cpus_per_env_runner=runners.num_cpus_per_env_runner,
            custom_resources_per_env_runner=dict(runners.custom_resources_per_env_runner),
            sample_timeout_s=runners.sample_timeout_s,
        )
        .learners(num_learners=learners.num_learners, num_gpus_per_learner=1 if use_gpu else 0)
        .training(
            lr=ppo.lr_schedule(),
            num_epochs=ppo.num_epochs,
            clip_param=ppo.clip_param,
            entropy_coeff=ppo.entropy_schedule(),
            gamma=ppo.gamma,
            lambda_=ppo.lambda_,
            train_batch_size_per_learner=batch_per_learner,
            minibatch_size=min(ppo.minibatch_size, batch_per_learner),
            vf_loss_coeff=ppo.vf_loss_coeff,
            vf_clip_param=ppo.vf_clip_param,
            grad_clip=ppo.grad_clip,
            use_kl_loss=ppo.use_kl_loss,
            kl_coeff=ppo.kl_coeff,
            kl_target=ppo.kl_target,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=ResidualPPOTorchRLModule,
                model_config={
                    "fcnet_hiddens": list(ppo.hiddens),
                    "fcnet_activation": "tanh",
                    "free_log_std": True,
                    "init_std": ppo.init_std,
                    "obs_center": center,
                    "obs_scale": scale,
                },
            )
        )
        .callbacks(TaskMetricsCallback)
        .debugging(seed=config.seed, log_level="ERROR")
    )


# ---------------------------------------------------------------------- run directory


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _rewrite_csv(path: Path, rows: list[dict[str, Any]], fieldnames: Sequence[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fieldnames), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    pointer = Path(run_dir) / CHECKPOINTS / "latest.json"
    if not pointer.is_file():
        return None
    path = Path(run_dir) / CHECKPOINTS / json.loads(pointer.read_text(encoding="utf-8"))["name"]
    return path if path.is_dir() else None


def _keep_trainable_logs_in(path: Path) -> None:
    """Ray's Trainable base class makes a log directory under ~/ray_results for every Algorithm
    built outside Tune, with no setting to move it: point that default at the run directory."""
    import ray.tune.trainable.trainable as trainable_module

    path.mkdir(parents=True, exist_ok=True)
    trainable_module.DEFAULT_STORAGE_PATH = str(path)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class Trainer:
    """Runs one TrainConfig in one run directory.

    ``on_iteration(row, checkpoint)`` sees every metrics row after the iteration's checkpoints
    are on disk (``checkpoint`` is the directory saved this iteration, or None): Tune trials
    report through it. ``restore_from`` resumes from a checkpoint outside the run directory
    (a Tune checkpoint on shared storage, or a PBT donor's).
    """

    def __init__(
        self,
        config: TrainConfig,
        out: str | Path,
        resume: bool = False,
        on_iteration: Callable[[dict[str, Any], Path | None], None] | None = None,
        quiet: bool = False,
        restore_from: str | Path | None = None,
        restore_weights_only: bool = False,
    ) -> None:
        self.config = config
        # PBT: build from *this* config (its mutated lr, entropy, clip), take weights and
        # optimizer moments from the donor; Algorithm.from_checkpoint would bring the donor's config.
        self.restore_weights_only = restore_weights_only
        self.restore_from = Path(restore_from) if restore_from is not None else None
        self.out = Path(out)
        self.resume = resume
        self.on_iteration = on_iteration
        self.quiet = quiet
        self.algo = None
        self.metrics_rows: list[dict[str, Any]] = []
        self.episode_rows: list[dict[str, Any]] = []
        self.window: deque[bool] = deque(maxlen=config.success_window)
        self.best: dict[str, Any] | None = None  # set when a full success window first yields a best checkpoint
        self.env_steps = 0
        self.wall_seconds = 0.0  # summed over all sessions of this run
        self._tb = None

    # ------------------------------------------------------------------ setup
    def _prepare(self) -> Path | None:
        ckpt_dir = self.out / CHECKPOINTS
        config_path = self.out / "config.yaml"
        restore = None
        if self.resume:
            if not config_path.is_file():
                raise ConfigError(f"--resume: {self.out} holds no config.yaml; start a new run without --resume")
            restore = self.restore_from or latest_checkpoint(self.out)
        elif config_path.exists() or ckpt_dir.exists():
            raise ConfigError(
                f"out={str(self.out)!r} already holds a run: pass --resume to continue it, or choose a new --out"
            )
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            _atomic_write(config_path, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        info_path = self.out / "run_info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {"sessions": []}
        info.update(
            {
                "seed": self.config.seed,
                "env_config": self.config.env.env_config().to_dict(),
                "provenance": provenance(),
            }
        )
        info["sessions"].append(
            {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from": str(restore) if restore else None}
        )
        _atomic_write(info_path, json.dumps(info, indent=1))
        return restore

    def _restore_history(self, iteration: int) -> None:
        """Keep the metrics of iterations the checkpoint covers; drop the rest (they are redone)."""
        self.metrics_rows = [r for r in _read_csv(self.out / "metrics.csv") if int(r["iteration"]) <= iteration]
        self.episode_rows = [r for r in _read_csv(self.out / "episodes.csv") if int(r["iteration"]) <= iteration]
        if self.metrics_rows:
            _rewrite_csv(self.out / "metrics.csv", self.metrics_rows, list(self.metrics_rows[0]))
            last = self.metrics_rows[-1]
            self.env_steps = int(float(last["env_steps_total"]))
            self.wall_seconds = float(last["wall_seconds_total"])
        _rewrite_csv(self.out / "episodes.csv", self.episode_rows, EPISODE_FIELDS)
        for row in self.episode_rows:
            self.window.append(row["success"] in ("True", "1", "true"))
        best_path = self.out / CHECKPOINTS / "best.json"
        if best_path.is_file():
            best = json.loads(best_path.read_text(encoding="utf-8"))
            if best["iteration"] <= iteration:
                self.best = best

    def build(self):
        import torch

        from rllib_paper.envs.registry import register_with_rllib

        torch.set_num_threads(self.config.learners.torch_threads)
        restore = self._prepare()
        _keep_trainable_logs_in(self.out / "rllib")
        start_ray(self.config.address)
        register_with_rllib()
        if restore is not None and self.restore_weights_only:
            self.algo = build_algorithm_config(self.config).build_algo()
            self.algo.learner_group.restore_from_path(str((restore / "learner_group").resolve()))
            self.algo.env_runner_group.sync_weights(from_worker_or_learner_group=self.algo.learner_group)
            state = json.loads((restore / "trainer_state.json").read_text(encoding="utf-8"))
            self.algo._iteration = int(state["iteration"])  # Trainable's counter: continue the count
            self._restore_history(self.algo.iteration)
            self._log(f"took weights from {restore} at iteration {self.algo.iteration}")
        elif restore is not None:
            from ray.rllib.algorithms.algorithm import Algorithm

            self.algo = Algorithm.from_checkpoint(str(restore.resolve()))  # RLlib reads relative paths as URIs
            self._restore_history(self.algo.iteration)
            self._log(f"resumed {self.out} from {restore.name} at iteration {self.algo.iteration}")
        else:
            if self.resume:
                self._log(f"--resume: {self.out} has no checkpoint yet; starting from iteration 0")
                self._restore_history(0)
            self.algo = build_algorithm_config(self.config).build_algo()
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(str(self.out / "tensorboard"))
        return self.algo

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        if self.algo is None:
            self.build()
        algo = self.algo
        try:
            reason = self._stop_reason()
            while not reason:
                start = time.perf_counter()
                result = algo.train()
                self.wall_seconds += time.perf_counter() - start
                row = self._record(result)
                reason = self._stop_reason()
                saved = None
                if algo.iteration % self.config.checkpoint_every == 0 or reason:  # the last one is always saved
                    saved = self._checkpoint(f"iter_{algo.iteration:06d}")
                # "Best" only over a full window: a lucky handful of early episodes is not a policy.
                better = self.best is None or row["success_rolling"] > self.best["success_rolling"]
                if better and len(self.window) == self.window.maxlen:
                    self._save_best(row)
                if self.on_iteration is not None:
                    self.on_iteration(row, saved)
            final = self._checkpoint("final")
        finally:
            if self._tb is not None:
                self._tb.close()
        summary = {
            "run_dir": str(self.out),
            "stopped": reason,
            "iterations": algo.iteration,
            "env_steps": self.env_steps,
            "wall_seconds": round(self.wall_seconds, 1),
            "final_checkpoint": str(final),
            "best": self.best,
            "success_rolling": self.metrics_rows[-1]["success_rolling"] if self.metrics_rows else None,
        }
        _atomic_write(self.out / "summary.json", json.dumps(summary, indent=1))
        return summary

    def _stop_reason(self) -> str | None:
        return stop_reached(self.config.stop, self.algo.iteration, self.env_steps, self.wall_seconds / 60.0)

    def stop(self) -> None:
        if self.algo is not None:
            self.algo.stop()
            self.algo = None

    # ------------------------------------------------------------------ metrics
    def _record(self, result: dict[str, Any]) -> dict[str, Any]:
        iteration = self.algo.iteration
        runners = result.get("env_runners", {})
        episodes = runners.get(EPISODES_KEY) or []
        if isinstance(episodes, dict):  # defensive: an aggregated series arrives as {"items": [...]}
            episodes = episodes.get("items", [])
        for episode in episodes:
            self.window.append(bool(episode["success"]))
            self.episode_rows.append({"iteration": iteration, **episode})
        sampled = int(runners.get("num_env_steps_sampled", 0) or 0)
        self.env_steps += sampled
        learner = result.get("learners", {}).get("default_policy", {})
        timers = result.get("timers", {})
        sample_seconds = _to_float(timers.get("env_runner_sampling_timer"))
        n = len(episodes)

        def mean(key: str) -> float:
            return float(np.mean([e[key] for e in episodes])) if n else float("nan")

        row: dict[str, Any] = {
            "iteration": iteration,
            "env_steps": sampled,
            "env_steps_total": self.env_steps,
            "episodes": n,
            "success_rate": mean("success"),
            "success_rolling": float(np.mean(self.window)) if self.window else float("nan"),
            "rolling_episodes": len(self.window),
            "episode_return": mean("return"),
            "episode_length": mean("length"),
            "residual_abs_mean": mean("residual_abs_mean"),
            "final_distance": mean("final_distance"),
            **{f"reward_{t}": mean(f"reward_{t}") for t in REWARD_TERMS},
            "policy_loss": _to_float(learner.get("policy_loss")),
            "vf_loss": _to_float(learner.get("vf_loss")),
            "entropy": _to_float(learner.get("entropy")),
            "mean_kl": _to_float(learner.get("mean_kl_loss")),
            "lr": _to_float(learner.get("default_optimizer_learning_rate")),
            "sample_seconds": sample_seconds,
            "sample_steps_per_s": sampled / sample_seconds if sample_seconds and sample_seconds > 0 else float("nan"),
            "iteration_seconds": _to_float(result.get("time_this_iter_s")),
            "wall_seconds_total": round(self.wall_seconds, 3),
            "nodes": len({e["node_id"] for e in episodes}),
        }
        self.metrics_rows.append(row)
        self._append_csv(self.out / "metrics.csv", [row], list(row))
        self._append_csv(self.out / "episodes.csv", self.episode_rows[-n:] if n else [], EPISODE_FIELDS)
        for key, value in row.items():
            if key != "iteration" and isinstance(value, (int, float)) and math.isfinite(value):
                self._tb.add_scalar(f"train/{key}", value, iteration)
        self._tb.flush()
        self._log(self._line(row))
        return row

    @staticmethod
    def _append_csv(path: Path, rows: list[dict[str, Any]], fieldnames: Sequence[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        if not new:  # a resumed run keeps the columns its file started with
            with open(path, newline="", encoding="utf-8") as fh:
                fieldnames = next(csv.reader(fh))
        with open(path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(fieldnames), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    @staticmethod
    def _line(row: dict[str, Any]) -> str:
        head = f"iter {row['iteration']:4d} | steps {row['env_steps_total']:>9,} | {row['iteration_seconds']:5.1f} s | "
        tail = f"{row['sample_steps_per_s']:.0f} steps/s sampled"
        rolling = (
            f"{row['success_rolling']:.2f} last {row['rolling_episodes']}" if row["rolling_episodes"] else "none yet"
        )
        if not row["episodes"]:
            # Long episodes and a small batch: say so rather than print a row of nan.
            return f"{head}no episode ended this iteration, success {rolling} | {tail}"
        terms = " ".join(f"{t[:4]} {row[f'reward_{t}']:.1f}" for t in REWARD_TERMS)
        return (
            f"{head}success {row['success_rate']:.2f} it, {rolling} | "
            f"return {row['episode_return']:7.1f} | len {row['episode_length']:5.1f} | "
            f"|res| {row['residual_abs_mean']:.3f} | {terms} | {tail}"
        )

    def _log(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, name: str) -> Path:
        ckpt_dir = self.out / CHECKPOINTS
        target = ckpt_dir / name
        tmp = ckpt_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.algo.save_to_path(str(tmp.resolve()))
        _atomic_write(tmp / "trainer_state.json", json.dumps({"iteration": self.algo.iteration}))
        _atomic_write(tmp / ENV_SNAPSHOT, json.dumps(self.config.env.env_config().to_dict(), indent=1))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        if name != "best":
            _atomic_write(ckpt_dir / "latest.json", json.dumps({"name": name, "iteration": self.algo.iteration}))
        periodic = sorted(p for p in ckpt_dir.glob("iter_*") if p.is_dir())
        for old in periodic[:-KEEP_PERIODIC]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def _save_best(self, row: dict[str, Any]) -> None:
        self._checkpoint("best")
        self.best = {"success_rolling": row["success_rolling"], "iteration": row["iteration"]}
        _atomic_write(self.out / CHECKPOINTS / "best.json", json.dumps(self.best))


def _finished_summary(out: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The summary of a run that already reached ``config.stop`` with a final checkpoint, else None."""
    pointer, summary_path = out / CHECKPOINTS / "latest.json", out / "summary.json"
    rows = _read_csv(out / "metrics.csv")
    if not (pointer.is_file() and summary_path.is_file() and rows):
        return None
    latest = json.loads(pointer.read_text(encoding="utf-8"))
    last = rows[-1]
    if latest["name"] != "final" or int(last["iteration"]) != latest["iteration"]:
        return None
    reason = stop_reached(
        config.stop, latest["iteration"], int(float(last["env_steps_total"])), float(last["wall_seconds_total"]) / 60
    )
    return json.loads(summary_path.read_text(encoding="utf-8")) if reason else None


def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    on_iteration: Callable[[dict[str, Any], Path | None], None] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train (or resume) residual PPO into ``out``; returns the run summary (also summary.json)."""
    if resume and (Path(out) / "config.yaml").is_file():
        from rllib_paper.training.config import load_train_config

        saved = load_train_config(Path(out) / "config.yaml")
        changed = [name for name in ("env", "ppo", "seed") if getattr(saved, name) != getattr(config, name)]
        if changed:
            raise ConfigError(
                f"--resume: {', '.join(changed)} differ from the run in {out} (its config.yaml); "
                "resume without --config, or start a new --out"
            )
        # The saved config wins except for how long to run and where Ray is.
        import dataclasses

        config = dataclasses.replace(saved, stop=config.stop, address=config.address)
        finished = _finished_summary(Path(out), config)
        if finished is not None:
            if not quiet:
                print(f"{out}: already trained to its stop criterion ({finished['stopped']}); nothing to do")
            return finished
    trainer = Trainer(config, out, resume=resume, on_iteration=on_iteration, quiet=quiet)
    try:
        return trainer.run()
    finally:
        trainer.stop()
