"""`rllib-paper tune SWEEP.yaml --out DIR [--resume]`: one Ray Tune run over residual-PPO trials.

Each trial is our ``Trainer`` in the trial's own directory, so a trial leaves the same run
directory a plain `rllib-paper train` does (metrics.csv, checkpoints, TensorBoard), and it
reports each iteration's task metrics to Tune with the checkpoint saved that iteration.
Tune stores the experiment under ``DIR/tune`` (or a cloud URI: ``--storage s3://...``), so
``--resume`` restores it with ``Tuner.restore``: finished trials keep their results, unfinished
ones continue from their last checkpoint.

At the end: ``DIR/trials.{parquet,csv,md}`` (one row per trial, sorted by the metric, with
every sampled parameter) and the best trial's final checkpoint evaluated by the distributed
evaluation on held-out seeds into ``DIR/best_eval/TRIAL_ID/``; ``DIR/sweep.json`` ties them together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_paper.config import ConfigError
from rllib_paper.runtime.files import dump_json
from rllib_paper.runtime.ray_start import start_ray
from rllib_paper.tuning.config import SweepConfig
from rllib_paper.tuning.effects import format_effects, param_column, param_value, write_effects

EXPERIMENT_NAME = "tune"


def _trial(params: dict[str, Any], sweep: dict[str, Any]) -> None:
    """The Tune trainable: build the trial's TrainConfig, run the Trainer, report each iteration."""
    from ray import tune

    from rllib_paper.config import from_dict
    from rllib_paper.training.loop import Trainer

    config = from_dict(SweepConfig, sweep)
    values = {k: v for k, v in params.items() if not k.startswith("_")}
    train_config = config.trial_config(values)
    trial_dir = Path(tune.get_context().get_trial_dir())
    run_dir = trial_dir / "run"
    restored = tune.get_checkpoint()
    restore_from = None
    if restored is not None:
        # A Tune checkpoint (our checkpoint directory) restored from the experiment storage.
        restore_from = Path(restored.to_directory())
    resume = (run_dir / "config.yaml").is_file() or restore_from is not None
    if resume and not (run_dir / "config.yaml").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(json.dumps(train_config.to_dict()), encoding="utf-8")

    def report(row: dict[str, Any], checkpoint: Path | None) -> None:
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)

    trainer = Trainer(
        train_config,
        run_dir,
        resume=resume,
        on_iteration=report,
        quiet=True,
        restore_from=restore_from,
        restore_weights_only=config.scheduler.type == "pbt",
    )
    try:
        trainer.run()
    finally:
        trainer.stop()


def _scheduler(config: SweepConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    s = config.scheduler
    if s.type == "asha":
        max_t = s.max_t or int(config.stop.get("iterations", 0)) or 100
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )
    if s.type == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=s.perturbation_interval,
            quantile_fraction=s.quantile_fraction,
            hyperparam_mutations={d.key: d.to_tune() for d in config.distributions()},
        )
    return FIFOScheduler()


def _resources(config: SweepConfig):
    from ray import tune

    train = config.base_train_config()
    runners = train.env_runners
    bundles = [{"CPU": config.resources.cpus_per_trial, "GPU": config.resources.gpus_per_trial}]
    runner_bundle = {"CPU": runners.num_cpus_per_env_runner, **runners.custom_resources_per_env_runner}
    bundles += [dict(runner_bundle) for _ in range(runners.num_env_runners)]
    return tune.PlacementGroupFactory(bundles)


def _checkpoint_every(config: SweepConfig) -> int:
    """PBT exploits from checkpoints: trials must save one at every perturbation."""
    return config.scheduler.perturbation_interval if config.scheduler.type == "pbt" else 0


def build_tuner(config: SweepConfig, out: Path, resume: bool, storage: str | None = None):
    from ray import tune

    storage_path = storage or str((out).resolve())
    sweep_dict = config.to_dict()
    every = _checkpoint_every(config)
    if every:
        sweep_dict["set"] = {**sweep_dict["set"], "checkpoint_every": every}
    trainable = tune.with_resources(tune.with_parameters(_trial, sweep=sweep_dict), _resources(config))
    experiment = f"{storage_path.rstrip('/')}/{EXPERIMENT_NAME}"
    if resume:
        if not tune.Tuner.can_restore(experiment):
            raise ConfigError(f"--resume: no Tune experiment to restore at {experiment}; run without --resume")
        return tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
    if (out / EXPERIMENT_NAME).exists():
        raise ConfigError(f"out={str(out)!r} already holds a sweep: pass --resume to continue it, or a new --out")
    param_space = {d.key: d.to_tune() for d in config.distributions()}
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            scheduler=_scheduler(config),
            num_samples=config.num_samples,
            max_concurrent_trials=config.max_concurrent_trials or None,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_NAME,
            storage_path=storage_path,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )


def trials_table(results, config: SweepConfig) -> pd.DataFrame:
    """One row per trial: status, the metric (last and best), every sampled parameter, its run dir
    in the experiment storage."""
    rows = []
    keys = [d.key for d in config.distributions()]
    for result in results:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        best = None
        if history is not None and config.metric in history:
            series = history[config.metric].dropna()
            best = float(series.max() if config.mode == "max" else series.min()) if len(series) else None
        row = {
            "trial_id": metrics.get("trial_id"),
            "status": "ERROR" if result.error else "TERMINATED",
            "iterations": metrics.get("training_iteration"),
            "env_steps": metrics.get("env_steps_total"),
            config.metric: metrics.get(config.metric),
            f"{config.metric}_best": best,
            "success_rate_last": metrics.get("success_rate"),
            "run_dir": f"{result.path}/run",
        }
        for key in keys:
            value = (result.config or {}).get(key)
            row[param_column(key)] = param_value(value)
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(config.metric, ascending=config.mode == "min", na_position="last")
    return table.reset_index(drop=True)


def _markdown(table: pd.DataFrame) -> str:
    columns = list(table.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_trial_tables(table: pd.DataFrame, out: Path) -> None:
    table.to_parquet(out / "trials.parquet", index=False)
    table.to_csv(out / "trials.csv", index=False)
    (out / "trials.md").write_text(_markdown(table), encoding="utf-8")


def _write_curves(results, out: Path) -> None:
    """DIR/curves.png: every trial's rolling success against env steps (from Tune's histories)."""
    from rllib_paper.training.curves import CURVES_NAME, write_sweep_curves

    histories = {}
    for result in results:
        history = result.metrics_dataframe
        if history is not None and {"env_steps_total", "success_rolling"} <= set(history.columns):
            label = (result.metrics or {}).get("trial_id") or Path(str(result.path)).name
            histories[label] = history[["env_steps_total", "success_rolling"]].to_dict("records")
    try:
        write_sweep_curves(histories, out / CURVES_NAME)
    except Exception as exc:  # a plotting problem must not lose the sweep's tables
        print(f"warning: could not draw {CURVES_NAME}: {exc}")


def _evaluate_trial(config: SweepConfig, tune_checkpoint, out: Path) -> dict[str, Any]:
    """A trial's last checkpoint (fetched from the Tune storage, local or cloud) on held-out seeds."""
    from rllib_paper.evaluation.distributed import EvalConfig, evaluate, raise_for_base_failures, trained_env_config

    checkpoint = tune_checkpoint.to_directory(str(out / "checkpoint"))
    report = evaluate(
        EvalConfig(
            env=trained_env_config(str(checkpoint), config.eval.dr),
            checkpoint=str(checkpoint),
            episodes=config.eval.episodes,
            seed=config.eval.seed,
            workers=config.eval.workers,
            settle_steps=config.eval.settle_steps,
            out=str(out),
            resume=True,
            progress=False,
        )
    )
    raise_for_base_failures(report, out)
    return {**report["results"]["success"], "complete": report["complete"]}


def run_sweep(config: SweepConfig, out: str | Path, resume: bool = False, storage: str | None = None) -> dict:

    from rllib_paper.envs.registry import register_with_rllib

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start_ray()
    register_with_rllib()
    dump_json(config.to_dict(), out / "sweep_config.json")
    start = time.perf_counter()
    tuner = build_tuner(config, out, resume, storage)
    results = tuner.fit()
    table = trials_table(results, config)
    write_trial_tables(table, out)
    _write_curves(results, out)
    summary: dict[str, Any] = {
        "trials": len(table),
        "errored": int((table["status"] == "ERROR").sum()) if len(table) else 0,
        "metric": config.metric,
        "mode": config.mode,
        "sweep_seconds": round(time.perf_counter() - start, 1),
    }
    finished = table.dropna(subset=[config.metric])
    checkpoints = {(r.metrics or {}).get("trial_id"): r.checkpoint for r in results}
    trial_evals: dict[str, dict[str, Any]] = {}
    if config.eval.all_trials:  # e.g. DR-width sweeps: every trial on the same held-out seeds
        for index, row in finished.iterrows():
            if checkpoints.get(row["trial_id"]) is None:
                continue
            success = _evaluate_trial(config, checkpoints[row["trial_id"]], out / "trial_evals" / row["trial_id"])
            trial_evals[row["trial_id"]] = success
            table.loc[index, "eval_success"] = success["rate"]
            table.loc[index, "eval_ci95_low"], table.loc[index, "eval_ci95_high"] = success["ci95"]
        write_trial_tables(table, out)
        summary["effects"] = write_effects(out)  # what each searched setting does, over all trials
    if len(finished):
        best = finished.iloc[0]
        summary["best"] = {k: (None if pd.isna(v) else v) for k, v in best.to_dict().items()}
        if checkpoints.get(best["trial_id"]) is not None:
            eval_dir = out / "trial_evals" / best["trial_id"]
            success = trial_evals.get(best["trial_id"])  # evaluated above on the same seeds
            if success is None:
                # One directory per trial: a resumed sweep whose best trial changed evaluates the new
                # best afresh instead of resuming the shards of the old one.
                eval_dir = out / "best_eval" / best["trial_id"]
                success = _evaluate_trial(config, checkpoints[best["trial_id"]], eval_dir)
            summary["best_eval"] = {
                "trial_id": best["trial_id"],
                "report": str(eval_dir / "report.json"),
                "checkpoint": str(eval_dir / "checkpoint"),
                "dr": config.eval.dr,
                "seeds": [config.eval.seed, config.eval.seed + config.eval.episodes - 1],
                "success": success,
                "complete": success["complete"],
            }
    dump_json(summary, out / "sweep.json")
    return summary


def tune_main(path: str, out: str, resume: bool, storage: str | None, assignments: Sequence[str] = ()) -> int:
    from rllib_paper.tuning.config import load_sweep_config

    config = load_sweep_config(path, assignments)
    summary = run_sweep(config, out, resume=resume, storage=storage)
    table = pd.read_csv(Path(out) / "trials.csv")
    print(table.drop(columns=["run_dir"]).to_string(index=False))
    if summary.get("effects"):
        print(format_effects(summary["effects"]), end="")
    if "best_eval" in summary:
        s = summary["best_eval"]["success"]
        print(
            f"best trial, held-out seeds {summary['best_eval']['seeds']} on {config.eval.dr}: "
            f"success {100 * s['rate']:.1f} % [{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}]"
        )
    print(json.dumps({"tune": {k: summary[k] for k in ("trials", "errored", "metric", "sweep_seconds")}}))
    return 0 if summary["errored"] == 0 else 1
