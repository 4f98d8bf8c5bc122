"""The training loop: build the algorithm, iterate, checkpoint, stop; resume where a run stopped.

The loop is ours, not Tune's, so one run directory (``run_dir.py``) holds everything a user
needs and ``--resume`` has one obvious meaning: continue from the latest complete checkpoint
with its iteration counter, weights, optimizer state and metrics history. Tune trials run
this same loop (``tuning/sweep.py``) and report through ``on_iteration``.

A base policy that fails is a failed run: its server is pinged before Ray starts, and an
iteration in which any episode's base failed stops the run with ``BasePolicyFailed`` before
anything is saved from it (no periodic, best or final checkpoint), so the latest checkpoint
is the last good one and ``--resume`` continues from it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rllib_paper.config import ConfigError
from rllib_paper.evaluation.episodes import base_failure_message
from rllib_paper.policies.base import BasePolicyFailed
from rllib_paper.policies.registry import base_policy_label, ping_base_policy, resolve_base_policy
from rllib_paper.residual.checkpoint import TrainedEnv
from rllib_paper.runtime.provenance import code_version
from rllib_paper.runtime.ray_start import start_ray
from rllib_paper.training.algorithm import build_algorithm_config, keep_trainable_logs_in
from rllib_paper.training.config import TrainConfig, load_train_config, stop_reached
from rllib_paper.training.metrics import MetricsLog
from rllib_paper.training.run_dir import RunDirectory, latest_checkpoint

OnIteration = Callable[[dict[str, Any], Path | None], None]


class Trainer:
    """Runs one TrainConfig in one run directory.

    ``on_iteration(row, checkpoint)`` sees every metrics row after the iteration's checkpoints
    are on disk (``checkpoint`` is the directory saved this iteration, or None). ``restore_from``
    resumes from a checkpoint outside the run directory (a Tune checkpoint on shared storage,
    or a PBT donor's); ``restore_weights_only`` takes the donor's weights and optimizer state
    into an algorithm built from *this* config (PBT's mutated lr, entropy, clip).
    """

    def __init__(
        self,
        config: TrainConfig,
        out: str | Path,
        resume: bool = False,
        on_iteration: OnIteration | None = None,
        quiet: bool = False,
        restore_from: str | Path | None = None,
        restore_weights_only: bool = False,
    ) -> None:
        self.config = config
        self.out = Path(out)
        self.run_dir = RunDirectory(self.out)
        self.metrics = MetricsLog(self.out, config.success_window)
        self.resume = resume
        self.on_iteration = on_iteration
        self.quiet = quiet
        self.restore_from = Path(restore_from) if restore_from is not None else None
        self.restore_weights_only = restore_weights_only
        self.algo = None
        self.best: dict[str, Any] | None = None  # set when a full success window first yields a best checkpoint
        # What every checkpoint of this run says it corrects: the base with all its parameters.
        self.trained_env = TrainedEnv(
            env=config.env.to_dict(),
            base_policy=resolve_base_policy(config.env.residual.base_policy),
            code=code_version(),
        )

    # ------------------------------------------------------------------ setup
    def build(self):
        import torch

        from rllib_paper.envs.registry import register_with_rllib

        ping_base_policy(self.config.env.residual.base_policy)  # an unreachable server: refused before Ray
        torch.set_num_threads(self.config.learners.torch_threads)
        restore = self.run_dir.prepare(self.config, self.resume, self.restore_from)
        keep_trainable_logs_in(self.out / "rllib")
        start_ray(self.config.address)
        register_with_rllib()
        if restore is not None and self.restore_weights_only:
            self.algo = build_algorithm_config(self.config).build_algo()
            self.algo.learner_group.restore_from_path(str((restore / "learner_group").resolve()))
            self.algo.env_runner_group.sync_weights(from_worker_or_learner_group=self.algo.learner_group)
            state = json.loads((restore / "trainer_state.json").read_text(encoding="utf-8"))
            self.algo._iteration = int(state["iteration"])  # Trainable's counter: continue the count
            self._log(f"took weights from {restore} at iteration {self.algo.iteration}")
        elif restore is not None:
            from ray.rllib.algorithms.algorithm import Algorithm

            self.algo = Algorithm.from_checkpoint(str(restore.resolve()))  # RLlib reads relative paths as URIs
            self._log(f"resumed {self.out} from {restore.name} at iteration {self.algo.iteration}")
        else:
            if self.resume:
                self._log(f"--resume: {self.out} has no checkpoint yet; starting from iteration 0")
            self.algo = build_algorithm_config(self.config).build_algo()
        if self.resume:  # keep exactly what the restored state covers (nothing without a checkpoint)
            self.metrics.restore(*self.run_dir.truncate_to(self.algo.iteration))
            self.best = self.run_dir.best(self.algo.iteration)
        self.metrics.open_tensorboard(self.algo.iteration)
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
                self.metrics.wall_seconds += time.perf_counter() - start
                row = self.metrics.record(result, algo.iteration)
                self._log(MetricsLog.line(row))
                self._raise_for_base_failures(row)  # before any checkpoint of weights learnt from them
                reason = self._stop_reason()
                saved = None
                if algo.iteration % self.config.checkpoint_every == 0 or reason:  # the last one is always saved
                    saved = self._checkpoint(f"iter_{algo.iteration:06d}")
                    self._write_curves()
                # "Best" only over a full window: a lucky handful of early episodes is not a policy.
                better = self.best is None or row["success_rolling"] > self.best["success_rolling"]
                if better and self.metrics.window_full:
                    self._checkpoint("best")
                    self.best = {"success_rolling": row["success_rolling"], "iteration": row["iteration"]}
                    self.run_dir.record_best(self.best)
                if self.on_iteration is not None:
                    self.on_iteration(row, saved)
            final = self._checkpoint("final")
            self._write_curves()
        finally:
            self.metrics.close()
        rows = self.metrics.rows
        summary = {
            "run_dir": str(self.out),
            "stopped": reason,
            "iterations": algo.iteration,
            "env_steps": self.metrics.env_steps,
            "wall_seconds": round(self.metrics.wall_seconds, 1),
            "final_checkpoint": str(final),
            "best": self.best,
            "success_rolling": rows[-1]["success_rolling"] if rows else None,
        }
        self.run_dir.write_summary(summary)
        return summary

    def _checkpoint(self, name: str) -> Path:
        return self.run_dir.save_checkpoint(self.algo.save_to_path, name, self.algo.iteration, self.trained_env)

    def _raise_for_base_failures(self, row: dict[str, Any]) -> None:
        failures = self.metrics.base_failures
        if not failures:
            return
        latest = latest_checkpoint(self.out)
        kept = f"the last good checkpoint, {latest}, is kept for --resume" if latest else "no checkpoint was saved"
        raise BasePolicyFailed(
            base_failure_message(
                base_policy_label(self.config.env.residual.base_policy),
                [f.get("base_policy_error") for f in failures],
                f"{row['episodes']} training episodes in iteration {row['iteration']}",
                f"training stopped and that iteration was not saved ({kept})",
            )
        )

    def _write_curves(self) -> None:
        """Redraw RUN_DIR/curves.png (at every checkpoint); a plotting problem never stops training."""
        from rllib_paper.training.curves import CURVES_NAME, write_training_curves

        try:
            title = f"{self.config.env.residual.base_policy} + residual: {self.out.name}"
            write_training_curves(self.metrics.rows, self.out / CURVES_NAME, self.config.success_window, title)
        except Exception as exc:
            self._log(f"warning: could not draw {CURVES_NAME}: {exc}")

    def _stop_reason(self) -> str | None:
        m = self.metrics
        return stop_reached(self.config.stop, self.algo.iteration, m.env_steps, m.wall_seconds / 60.0)

    def stop(self) -> None:
        if self.algo is not None:
            self.algo.stop()
            self.algo = None

    def _log(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    on_iteration: OnIteration | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train (or resume) the residual (PPO or APPO) into ``out``; returns the run summary (also summary.json)."""
    run_dir = RunDirectory(out)
    if resume and run_dir.config_path.is_file():
        saved = load_train_config(run_dir.config_path)
        fixed = ("env", "algorithm", "ppo", "appo", "seed")
        changed = [name for name in fixed if getattr(saved, name) != getattr(config, name)]
        if changed:
            raise ConfigError(
                f"--resume: {', '.join(changed)} differ from the run in {out} (its config.yaml); "
                "resume without --config, or start a new --out"
            )
        # The saved config wins except for how long to run and where Ray is.
        config = dataclasses.replace(saved, stop=config.stop, address=config.address)
        finished = run_dir.finished_summary(config)
        if finished is not None:
            if not quiet:
                print(f"{out}: already trained to its stop criterion ({finished['stopped']}); nothing to do")
            return finished
    trainer = Trainer(config, out, resume=resume, on_iteration=on_iteration, quiet=quiet)
    try:
        return trainer.run()
    finally:
        trainer.stop()
