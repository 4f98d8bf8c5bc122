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

Left out: other checkpoints, `checkpoints/best/`, `rllib/` (Tune's logs), `tensorboard/`,
`episodes.csv` (megabytes; `metrics.csv` has the per-iteration figures) and videos.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

TRAIN_FILES = ("config.yaml", "metrics.csv", "curves.png", "run_info.json", "summary.json")
TOP_LEVEL_SUFFIXES = (".json", ".png", ".md")
TEXT_SUFFIXES = (".json", ".md", ".html", ".yaml", ".yml", ".csv", ".txt")
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


def _selected(run: Path) -> list[Path]:
    """Files of `run` to keep, relative to it."""
    keep: list[Path] = []
    train = run if _is_training_run(run) else run / "train"
    if train != run:
        keep += [p.relative_to(run) for p in sorted(run.iterdir()) if p.is_file() and p.suffix in TOP_LEVEL_SUFFIXES]
        for evaluation in sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("eval")):
            keep += [
                p.relative_to(run)
                for p in sorted(evaluation.rglob("*"))
                if p.is_file() and p.suffix not in VIDEO_SUFFIXES and not p.name.endswith(".tmp")
            ]
    if train.is_dir():
        keep += [(train / name).relative_to(run) for name in TRAIN_FILES if (train / name).is_file()]
        final = train / "checkpoints" / "final"
        if not final.is_dir():
            raise PackError(f"{final}: no final checkpoint; pack a finished run (or resume it first)")
        keep += [p.relative_to(run) for p in sorted(final.rglob("*")) if p.is_file()]
    if not keep:
        raise PackError(f"{run}: neither an experiment (train/, eval_*/) nor a training run (metrics.csv, config.yaml)")
    return keep


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
    for relative in files:
        src, dst = source / relative, target / relative
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
