"""`rllib-paper pack RUN --to results/NAME`: a finished run or experiment as a small, committable result.

Why: a run directory holds what resuming needs (every checkpoint, RLlib's Tune logs,
TensorBoard events, the per-episode training log) and names itself by the path it ran in
(`runs/...` or an absolute path). A committed result must be small and must name itself by
where it is committed, so that its reports, checkpoint pointers and tests agree. Packing keeps
what a reader or a test uses and rewrites the run's own path in every text file:

* reports and comparisons: the top level's `*.json`, `*.png`, `*.md` (experiment.json, comparison.json/png);
* evaluations: every `eval*/` directory whole (report.json/html, episodes.parquet, shards, summary,
  plots), videos excluded;
* training: `train/` (or the run itself when it is a training run): `config.yaml`, `metrics.csv`,
  `curves.png`, `run_info.json`, `summary.json` and `checkpoints/final/`.

A sweep (`rllib-paper tune --out DIR`: `sweep.json` beside `sweep_config.json`) keeps its tables,
curves, effects and summary, every trial's evaluation (`trial_evals/`, `best_eval/`) without the
copied checkpoint, and each trial's `config.yaml` and `metrics.csv` from Tune's trial
directories as `trial_runs/TRIAL_ID/`.

Left out: other checkpoints, `checkpoints/best/`, `rllib/` (Tune's logs), `tensorboard/`,
`episodes.csv` (megabytes; `metrics.csv` has the per-iteration figures), evaluation shards of
sweeps and videos.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

TRAIN_FILES = ("config.yaml", "metrics.csv", "curves.png", "run_info.json", "summary.json")
TOP_LEVEL_SUFFIXES = (".json", ".png", ".md")
TEXT_SUFFIXES = (".json", ".md", ".html", ".yaml", ".yml", ".csv", ".txt")
SWEEP_SUFFIXES = (".json", ".md", ".csv", ".parquet", ".png")
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
MAX_FILE_MIB = 20.0  # a committed result is small: a bigger file is a mistake to stop at


class PackError(ValueError):
    """A run that cannot be packed as asked: one sentence naming the path and why."""


@dataclass(frozen=True)
class Packed:
    files: int
    bytes: int
    rewritten: int  # text files in which the run's path was replaced


def _is_training_run(path: Path) -> bool:
    return (path / "metrics.csv").is_file() and (path / "config.yaml").is_file()


def _is_evaluation_file(path: Path) -> bool:
    """What an evaluation directory commits: every file but videos and unfinished atomic writes."""
    return path.is_file() and path.suffix not in VIDEO_SUFFIXES and not path.name.endswith(".tmp")


def _is_sweep(path: Path) -> bool:
    return (path / "sweep.json").is_file() and (path / "sweep_config.json").is_file()


def _sweep_selected(sweep: Path) -> list[tuple[Path, Path]]:
    """(source, destination) pairs relative to the sweep directory."""
    keep = [(p.relative_to(sweep),) * 2 for p in sorted(sweep.iterdir()) if p.is_file() and p.suffix in SWEEP_SUFFIXES]
    for evaluations in ("trial_evals", "best_eval"):
        keep += [
            (p.relative_to(sweep),) * 2 for p in sorted((sweep / evaluations).glob("*/*")) if _is_evaluation_file(p)
        ]
    for trial_id in _trial_ids(sweep):
        runs = sorted((sweep / "tune").glob(f"*{trial_id}*/run"))
        if len(runs) != 1:
            raise PackError(f"{sweep}/tune: expected one run directory of trial {trial_id}, found {len(runs)}")
        for name in ("config.yaml", "metrics.csv"):
            if (runs[0] / name).is_file():
                keep.append(((runs[0] / name).relative_to(sweep), Path("trial_runs") / trial_id / name))
    return keep


def _trial_ids(sweep: Path) -> list[str]:
    import csv

    table = sweep / "trials.csv"
    if not table.is_file():
        return []
    with table.open(encoding="utf-8", newline="") as fh:
        return [row["trial_id"] for row in csv.DictReader(fh)]


def _point_trial_tables_at_packed_runs(target: Path, name: str) -> None:
    """The trials tables name each trial's run by Tune's directory; packed, it is trial_runs/ID."""
    import pandas as pd

    from rllib_paper.tuning.sweep import write_trial_tables

    table = pd.read_parquet(target / "trials.parquet")
    table["run_dir"] = [f"{name}/trial_runs/{trial_id}" for trial_id in table["trial_id"]]
    write_trial_tables(table, target)


def _selected(run: Path) -> list[tuple[Path, Path]]:
    """(source, destination) pairs of the files of `run` to keep, relative to it and to the result."""
    if _is_sweep(run):
        return _sweep_selected(run)
    keep: list[Path] = []
    train = run if _is_training_run(run) else run / "train"
    if train != run:
        keep += [p.relative_to(run) for p in sorted(run.iterdir()) if p.is_file() and p.suffix in TOP_LEVEL_SUFFIXES]
        for evaluation in sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("eval")):
            keep += [p.relative_to(run) for p in sorted(evaluation.rglob("*")) if _is_evaluation_file(p)]
    if train.is_dir():
        keep += [(train / name).relative_to(run) for name in TRAIN_FILES if (train / name).is_file()]
        final = train / "checkpoints" / "final"
        if not final.is_dir():
            raise PackError(f"{final}: no final checkpoint; pack a finished run (or resume it first)")
        keep += [p.relative_to(run) for p in sorted(final.rglob("*")) if p.is_file()]
    if not keep:
        raise PackError(
            f"{run}: neither an experiment (train/, eval_*/), a training run (metrics.csv, config.yaml) "
            "nor a sweep (sweep.json, sweep_config.json)"
        )
    return [(path, path) for path in keep]


def pack(run: str | Path, to: str | Path, *, force: bool = False) -> Packed:
    """Copy what `run` commits into `to`, naming it `to` (as given, e.g. results/NAME) in its text files."""
    source, target = Path(run), Path(to)
    if not source.is_dir():
        raise PackError(f"{source}: no such run directory")
    if (source / "experiment.json").is_file():
        import json

        if not json.loads((source / "experiment.json").read_text(encoding="utf-8")).get("complete", False):
            raise PackError(f"{source}/experiment.json: the experiment is not complete; resume it before packing")
    if target.exists():
        if not force:
            raise PackError(f"{target}: already exists; choose another name or pass --force to replace it")
        shutil.rmtree(target)
    files = _selected(source)
    # Every spelling of the run's path a file may hold, longest first (absolute before relative).
    spellings = sorted({str(source.resolve()), str(source).rstrip("/"), source.as_posix().rstrip("/")}, key=len)[::-1]
    name = target.as_posix().rstrip("/")
    total = rewritten = 0
    for relative, destination in files:
        src, dst = source / relative, target / destination
        size_mib = src.stat().st_size / 2**20
        if size_mib > MAX_FILE_MIB:
            raise PackError(f"{src}: {size_mib:.1f} MiB, over the {MAX_FILE_MIB:g} MiB a committed file may hold")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix in TEXT_SUFFIXES:
            text = src.read_text(encoding="utf-8")
            new = text
            for spelling in spellings:  # whole path names only: runs/a is not the start of runs/a_b
                new = re.sub(re.escape(spelling) + r"(?![\w.-])", name, new)
            dst.write_text(new, encoding="utf-8")
            rewritten += new != text
        else:
            shutil.copyfile(src, dst)
        total += dst.stat().st_size
    if _is_sweep(source) and (target / "trials.parquet").is_file():
        _point_trial_tables_at_packed_runs(target, name)
    return Packed(files=len(files), bytes=total, rewritten=rewritten)


def pack_main(run: str, to: str, force: bool = False) -> int:
    import sys

    try:
        packed = pack(run, to, force=force)
    except PackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"packed {run} into {to}: {packed.files} files, {packed.bytes / 2**20:.1f} MiB, "
        f"the run's path renamed in {packed.rewritten}"
    )
    return 0
