"""A training run's directory: its files, the checkpoint pointers, and what resuming restores.

    RUN_DIR/config.yaml         the TrainConfig (what --resume reuses)
    RUN_DIR/run_info.json       git commit, seeds, package versions, starts and resumes
    RUN_DIR/metrics.csv         one row per iteration (task metrics, PPO stats, throughput)
    RUN_DIR/episodes.csv        one row per training episode (the rolling success rate's source)
    RUN_DIR/tensorboard/        the same scalars for TensorBoard
    RUN_DIR/checkpoints/        iter_NNNNNN (the last few), best/, final/, latest.json, best.json
    RUN_DIR/summary.json        how the run ended

A checkpoint is written to a hidden temporary directory and renamed into place, then
``latest.json`` is replaced atomically, so a run killed at any moment has a complete latest
checkpoint or none. Resuming keeps exactly the per-iteration rows the restored checkpoint
covers (none when there is no checkpoint yet): no iteration is counted twice.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from rllib_paper.config import ConfigError
from rllib_paper.residual.checkpoint import TrainedEnv, write_trained_env
from rllib_paper.runtime.files import atomic_write, dump_json, write_text_atomic
from rllib_paper.runtime.provenance import provenance
from rllib_paper.training.config import TrainConfig, stop_reached

CHECKPOINTS = "checkpoints"
KEEP_PERIODIC = 3  # iter_NNNNNN checkpoints kept besides best/ and final/
PER_ITERATION_FILES = ("metrics.csv", "episodes.csv")


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def rewrite_csv(path: Path, rows: list[dict[str, Any]], fieldnames: Sequence[str]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(fieldnames), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def append_csv(path: Path, rows: list[dict[str, Any]], fieldnames: Sequence[str]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    if not new:  # a resumed run keeps the columns its file started with
        with open(path, newline="", encoding="utf-8") as fh:
            fieldnames = next(csv.reader(fh))
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fieldnames), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    pointer = Path(run_dir) / CHECKPOINTS / "latest.json"
    if not pointer.is_file():
        return None
    path = Path(run_dir) / CHECKPOINTS / json.loads(pointer.read_text(encoding="utf-8"))["name"]
    return path if path.is_dir() else None


class RunDirectory:
    """The files of one run; knows nothing about RLlib beyond ``save_to_path``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / CHECKPOINTS

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def prepare(self, config: TrainConfig, resume: bool, restore_from: Path | None = None) -> Path | None:
        """Create or reopen the directory; return the checkpoint to restore (None: start fresh)."""
        restore = None
        if resume:
            if not self.config_path.is_file():
                raise ConfigError(f"--resume: {self.root} holds no config.yaml; start a new run without --resume")
            restore = restore_from or latest_checkpoint(self.root)
        elif self.config_path.exists() or self.checkpoints.exists():
            raise ConfigError(
                f"out={str(self.root)!r} already holds a run: pass --resume to continue it, or choose a new --out"
            )
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_text_atomic(self.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
        info_path = self.root / "run_info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {"sessions": []}
        info.update({"seed": config.seed, "env_config": config.env.to_dict(), "provenance": provenance()})
        info["sessions"].append(
            {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from": str(restore) if restore else None}
        )
        dump_json(info, info_path)
        return restore

    def truncate_to(self, iteration: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Keep the per-iteration rows up to ``iteration`` (0: none), rewrite the files, return them."""
        kept = []
        for name in PER_ITERATION_FILES:
            path = self.root / name
            rows = read_csv(path)
            fieldnames = list(rows[0]) if rows else _header(path)
            rows = [r for r in rows if int(r["iteration"]) <= iteration]
            if path.is_file():
                rewrite_csv(path, rows, fieldnames)
            kept.append(rows)
        return kept[0], kept[1]

    def best(self, up_to_iteration: int) -> dict[str, Any] | None:
        path = self.checkpoints / "best.json"
        if not path.is_file():
            return None
        best = json.loads(path.read_text(encoding="utf-8"))
        return best if best["iteration"] <= up_to_iteration else None

    def save_checkpoint(self, save: Callable[[str], Any], name: str, iteration: int, trained: TrainedEnv) -> Path:
        """``save(path)`` writes the algorithm; the env record and iteration go beside it."""
        target = self.checkpoints / name
        tmp = self.checkpoints / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save(str(tmp.resolve()))
        write_text_atomic(tmp / "trainer_state.json", json.dumps({"iteration": iteration}))
        write_trained_env(tmp, trained)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        if name != "best":
            write_text_atomic(self.checkpoints / "latest.json", json.dumps({"name": name, "iteration": iteration}))
        periodic = sorted(p for p in self.checkpoints.glob("iter_*") if p.is_dir())
        for old in periodic[:-KEEP_PERIODIC]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def record_best(self, best: dict[str, Any]) -> None:
        write_text_atomic(self.checkpoints / "best.json", json.dumps(best))

    def write_summary(self, summary: dict[str, Any]) -> None:
        dump_json(summary, self.root / "summary.json")

    def finished_summary(self, config: TrainConfig) -> dict[str, Any] | None:
        """The summary of a run that already reached ``config.stop`` with a final checkpoint, else None."""
        pointer, summary_path = self.checkpoints / "latest.json", self.root / "summary.json"
        rows = read_csv(self.root / "metrics.csv")
        if not (pointer.is_file() and summary_path.is_file() and rows):
            return None
        latest = json.loads(pointer.read_text(encoding="utf-8"))
        last = rows[-1]
        if latest["name"] != "final" or int(last["iteration"]) != latest["iteration"]:
            return None
        reason = stop_reached(
            config.stop,
            latest["iteration"],
            int(float(last["env_steps_total"])),
            float(last["wall_seconds_total"]) / 60,
        )
        return json.loads(summary_path.read_text(encoding="utf-8")) if reason else None


def _header(path: Path) -> list[str]:
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])
