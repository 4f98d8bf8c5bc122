"""The learning experiment in one command: train a residual, then base vs base + residual.

    rllib-paper experiment --config residual_scripted --out runs/exp --episodes 200 --seed 1000

1. ``OUT/train``: residual PPO (``train.train``), resumed if the directory already holds it.
2. ``OUT/eval_base`` and ``OUT/eval_residual``: the distributed evaluation of the base alone
   and of base + the final residual, on the same held-out seeds (training draws its episode
   seeds from a 63-bit stream, so they are not the small integers evaluated here).
3. ``OUT/comparison.json`` and ``OUT/experiment.json``: the paired table with the exact
   McNemar test, both success rates with Wilson intervals, the gain, whether the intervals
   overlap, and the env steps and wall time the training used.

Every step resumes: rerunning the command after an interruption finishes what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from rllib_paper.evaluation.distributed import EvalConfig, evaluate
from rllib_paper.evaluation.report import format_comparison, load_episodes, mcnemar
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


def _eval(config: ExperimentConfig, name: str, checkpoint: str | None) -> dict[str, Any]:
    env = config.train.env
    return evaluate(
        EvalConfig(
            policy=env.base_policy,
            checkpoint=checkpoint,
            episodes=config.episodes,
            seed=config.seed,
            dr=env.dr,
            workers=config.workers,
            out=str(Path(config.out) / name),
            resume=True,
            env={**env.overrides, "reward": dict(env.reward), "residual": {"alpha": env.alpha, "scale": env.scale}},
            address=config.train.address,
            progress=config.progress,
        )
    )


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
    label_a, label_b = f"{env.base_policy} (base)", f"{env.base_policy} + residual"
    comparison = mcnemar(load_episodes(out / "eval_base"), load_episodes(out / "eval_residual"), label_a, label_b)
    dump_json(comparison, out / "comparison.json")
    a, b = comparison["success_a"], comparison["success_b"]
    result = {
        "base_policy": env.base_policy,
        "dr": env.dr,
        "seeds": [config.seed, config.seed + config.episodes - 1],
        "base": a,
        "base_plus_residual": b,
        "gain_points": 100 * comparison["difference"],
        "intervals_overlap": not (b["ci95"][0] > a["ci95"][1] or a["ci95"][0] > b["ci95"][1]),
        "mcnemar_exact_p": comparison["mcnemar_exact_p"],
        "paired_table": comparison["table"],
        "complete": bool(base["complete"] and residual["complete"]),
        "training": {
            "env_steps": summary["env_steps"],
            "iterations": summary["iterations"],
            "wall_seconds": summary["wall_seconds"],
            "checkpoint": str(checkpoint),
            "residual": {"alpha": env.alpha, "scale": env.scale},
        },
        "experiment_wall_seconds": round(time.perf_counter() - start, 1),
    }
    dump_json(result, out / "experiment.json")
    return result


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
    print(f"wrote {config.out}/experiment.json, comparison.json, eval_base/, eval_residual/, train/")
    print(json.dumps({"experiment": {k: result[k] for k in ("gain_points", "intervals_overlap", "mcnemar_exact_p")}}))
    return 0 if result["complete"] else 1
