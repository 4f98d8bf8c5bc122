"""The learning experiment in one command: train a residual, then base vs base + residual.

    rllib-paper experiment --config residual_scripted --out runs/exp --episodes 200 --seed 1000

1. ``OUT/train``: residual PPO (``train.train``), resumed if the directory already holds it.
2. ``OUT/eval_base`` and ``OUT/eval_residual``: the distributed evaluation of the base alone
   and of base + the final residual, on the same held-out seeds (training draws its episode
   seeds from a 63-bit stream, so they are not the small integers evaluated here).
3. ``OUT/comparison.json`` and ``OUT/experiment.json``: the paired table with the exact
   McNemar test, both success rates with Wilson intervals, the gain, whether the intervals
   overlap, and the env steps and wall time the training used.

4. With ``reference`` (a shipped checkpoint, e.g. the headline's): ``OUT/reference_base`` and
   ``OUT/reference_residual`` evaluate it over its own exact base on the same seeds, and the
   two comparisons are printed side by side, so a short run is read against what a full
   training budget gives.

Every step resumes: rerunning the command after an interruption finishes what is missing.
A base policy that fails stops the experiment with ``BasePolicyFailed`` (training refuses an
unreachable server and stops on a failed episode; an evaluation whose base failed is not
compared), so no comparison is ever computed from episodes the base did not play.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from rllib_paper.config import preset_name
from rllib_paper.evaluation.distributed import EvalConfig, evaluate, raise_for_base_failures, trained_env_config
from rllib_paper.evaluation.report import format_comparison, load_episodes, paired_comparison
from rllib_paper.runtime.files import dump_json
from rllib_paper.training.config import TrainConfig
from rllib_paper.training.loop import train


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    train: TrainConfig
    out: str
    episodes: int = 200
    seed: int = 1000
    workers: int = 2
    checkpoint: str = "final"  # which checkpoint of the run to evaluate: final or best
    progress: bool = True
    # A trained checkpoint evaluated over its own base on the same seeds, beside this run.
    reference: str | None = None
    # Control steps an evaluation episode runs on after its first success (success_at_end);
    # 0 scores the instant of crossing, as the results committed before the settle phase did.
    settle_steps: int = 30
    residual_actions: str = "mean"  # the residual's actions in its evaluation: "mean" or "sample"


def _eval(config: ExperimentConfig, name: str, checkpoint: str | None, env=None) -> dict[str, Any]:
    out = Path(config.out) / name
    report = evaluate(
        EvalConfig(
            env=env or config.train.env,  # base and base + residual on the env the residual was trained in
            checkpoint=checkpoint,
            residual_actions=config.residual_actions,
            episodes=config.episodes,
            seed=config.seed,
            workers=config.workers,
            out=str(out),
            resume=True,
            address=config.train.address,
            progress=config.progress,
            settle_steps=config.settle_steps,
        )
    )
    raise_for_base_failures(report, out)  # episodes the base did not play are not compared
    return report


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "train"
    start = time.perf_counter()
    summary = train(config.train, run_dir, resume=(run_dir / "config.yaml").is_file())
    checkpoint = run_dir / "checkpoints" / config.checkpoint
    base = _eval(config, "eval_base", None)
    residual = _eval(config, "eval_residual", str(checkpoint))
    env = config.train.env
    base_policy = env.residual.base_policy
    label_a, label_b = f"{base_policy} (base)", f"{base_policy} + residual"
    comparison = paired_comparison(
        load_episodes(out / "eval_base"), load_episodes(out / "eval_residual"), label_a, label_b
    )
    dump_json(comparison, out / "comparison.json")
    _compare_plot(comparison, out / "comparison.png")
    result = {
        "base_policy": base_policy,
        "dr": preset_name(env.randomization),
        "seeds": [config.seed, config.seed + config.episodes - 1],
        **_gain(comparison),
        "paired_table": comparison["table"],
        "complete": bool(base["complete"] and residual["complete"]),
        "training": {
            "env_steps": summary["env_steps"],
            "iterations": summary["iterations"],
            "wall_seconds": summary["wall_seconds"],
            "checkpoint": str(checkpoint),
            "residual": {"alpha": env.residual.alpha, "scale": env.residual.scale},
        },
        "experiment_wall_seconds": round(time.perf_counter() - start, 1),
    }
    if config.reference is not None:
        result["reference"] = _reference(config)
    dump_json(result, out / "experiment.json")
    return result


def _reference(config: ExperimentConfig) -> dict[str, Any]:
    """The reference checkpoint over its own base (from its env record), on this run's seeds and DR."""
    out = Path(config.out)
    env = dataclasses.replace(trained_env_config(config.reference), randomization=config.train.env.randomization)
    base = _eval(config, "reference_base", None, env)
    residual = _eval(config, "reference_residual", config.reference, env)
    policy = env.residual.base_policy
    comparison = paired_comparison(
        load_episodes(out / "reference_base"),
        load_episodes(out / "reference_residual"),
        f"{policy} (base)",
        f"{policy} + reference residual",
    )
    dump_json(comparison, out / "reference_comparison.json")
    return {
        "checkpoint": config.reference,
        "base_policy": policy,
        **_gain(comparison),
        "complete": bool(base["complete"] and residual["complete"]),
    }


def _compare_plot(comparison: dict[str, Any], path: Path) -> None:
    from rllib_paper.evaluation.compare_plot import write_compare_plot

    try:
        write_compare_plot(comparison, path)
    except Exception as exc:  # a plotting problem must not lose the experiment's numbers
        print(f"warning: could not draw {path.name}: {exc}")


def _gain(comparison: dict[str, Any]) -> dict[str, Any]:
    a, b = comparison["success_a"], comparison["success_b"]
    return {
        "base": a,
        "base_plus_residual": b,
        "gain_points": 100 * comparison["difference"],
        "intervals_overlap": not (b["ci95"][0] > a["ci95"][1] or a["ci95"][0] > b["ci95"][1]),
        "mcnemar_exact_p": comparison["mcnemar_exact_p"],
    }


def format_side_by_side(result: dict[str, Any]) -> str:
    """This run's gain and the reference checkpoint's, each with its intervals and p-value."""
    rows = [("this run", result["training"]["checkpoint"], result)]
    if "reference" in result:
        rows.append(("reference", result["reference"]["checkpoint"], result["reference"]))

    def pct(rate: dict[str, Any]) -> str:
        low, high = rate["ci95"]
        return f"{100 * rate['rate']:5.1f} % [{100 * low:4.1f}, {100 * high:4.1f}]"

    lines = [f"{'':10s} {'base':>22s} {'base + residual':>22s} {'gain':>7s} {'p':>9s}  intervals  checkpoint"]
    for label, checkpoint, r in rows:
        overlap = "overlap" if r["intervals_overlap"] else "apart"
        lines.append(
            f"{label:10s} {pct(r['base']):>22s} {pct(r['base_plus_residual']):>22s} {r['gain_points']:+6.1f} "
            f"{r['mcnemar_exact_p']:9.2g}  {overlap:9s}  {checkpoint}"
        )
    return "\n".join(lines)


def format_experiment(result: dict[str, Any], comparison: dict[str, Any]) -> str:
    t = result["training"]
    return "\n".join(
        [
            format_comparison(comparison),
            f"  gain {result['gain_points']:+.1f} points; 95 % intervals "
            f"{'overlap' if result['intervals_overlap'] else 'do not overlap'}",
            f"  training: {t['env_steps']:,} env steps, {t['iterations']} iterations, {t['wall_seconds'] / 60:.1f} min",
        ]
    )


def experiment_main(config: ExperimentConfig) -> int:
    result = run_experiment(config)
    comparison = json.loads((Path(config.out) / "comparison.json").read_text(encoding="utf-8"))
    print(format_experiment(result, comparison))
    if "reference" in result:
        print(format_side_by_side(result))
    print(f"wrote {config.out}/experiment.json, comparison.json, eval_base/, eval_residual/, train/")
    keys = ("gain_points", "intervals_overlap", "mcnemar_exact_p")
    line = {"experiment": {k: result[k] for k in keys}}
    if "reference" in result:
        line["reference"] = {k: result["reference"][k] for k in keys}
    print(json.dumps(line))
    complete = result["complete"] and result.get("reference", {}).get("complete", True)
    return 0 if complete else 1
