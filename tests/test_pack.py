"""`rllib-paper pack`: a finished experiment becomes a small result dir that names itself by where it goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rllib_paper.cli import main
from rllib_paper.pack import PackError, pack


def _experiment(root: Path, name: str = "exp", complete: bool = True) -> Path:
    """A run directory laid out as `rllib-paper experiment` leaves it, with tiny files."""
    run = root / name
    final = run / "train" / "checkpoints" / "final"
    (final / "learner_group").mkdir(parents=True)
    (final / "rllib_paper_env.json").write_text("{}")
    (final / "learner_group" / "state.pt").write_bytes(b"\x00weights")
    for other in ("iter_000010", "best"):
        (run / "train" / "checkpoints" / other).mkdir(parents=True)
        (run / "train" / "checkpoints" / other / "state.pt").write_bytes(b"old")
    (run / "train" / "checkpoints" / "latest.json").write_text("{}")
    for name_ in ("config.yaml", "metrics.csv", "curves.png", "run_info.json", "episodes.csv"):
        (run / "train" / name_).write_text("x")
    (run / "train" / "tensorboard").mkdir()
    (run / "train" / "tensorboard" / "events.out").write_text("tb")
    (run / "train" / "summary.json").write_text(
        json.dumps({"run_dir": f"{run}/train", "final_checkpoint": f"{run.resolve()}/train/checkpoints/final"})
    )
    for evaluation in ("eval_base", "eval_residual"):
        (run / evaluation / "shards").mkdir(parents=True)
        (run / evaluation / "report.json").write_text(json.dumps({"checkpoint": f"{run}/train/checkpoints/final"}))
        (run / evaluation / "report.html").write_text(f"<a href='{run}/train'>train</a> and {run}_other/x")
        (run / evaluation / "episodes.parquet").write_bytes(b"PAR1")
        (run / evaluation / "shards" / "shard-1.parquet").write_bytes(b"PAR1")
        (run / evaluation / "episode_1000.mp4").write_bytes(b"video")
    (run / "experiment.json").write_text(json.dumps({"complete": complete, "checkpoint": f"{run}/train"}))
    (run / "comparison.json").write_text("{}")
    (run / "comparison.png").write_bytes(b"\x89PNG")
    return run


def test_pack_keeps_reports_evaluations_and_the_final_checkpoint_and_renames_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _experiment(Path("runs"))
    packed = pack("runs/exp", "results/exp_seed0")
    out = Path("results/exp_seed0")
    kept = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "train/checkpoints/final/learner_group/state.pt" in kept
    assert {"experiment.json", "comparison.json", "comparison.png", "train/metrics.csv", "train/summary.json"} <= kept
    assert {"eval_base/shards/shard-1.parquet", "eval_residual/episodes.parquet", "eval_residual/report.html"} <= kept
    left_out = ("iter_000010", "checkpoints/best", "latest.json", "tensorboard", "episodes.csv", ".mp4")
    assert not [k for k in kept if any(part in k for part in left_out)]
    assert packed.files == len(kept)
    # The run's path, relative or absolute, now reads as the result's; a longer name is not touched.
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert summary == {
        "run_dir": "results/exp_seed0/train",
        "final_checkpoint": "results/exp_seed0/train/checkpoints/final",
    }
    assert json.loads((out / "eval_residual" / "report.json").read_text())["checkpoint"] == (
        "results/exp_seed0/train/checkpoints/final"
    )
    html = (out / "eval_base" / "report.html").read_text()
    assert "results/exp_seed0/train" in html and "runs/exp_other/x" in html
    assert (out / "train/checkpoints/final/learner_group/state.pt").read_bytes() == b"\x00weights"
    assert str(tmp_path) not in "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())


def test_pack_refuses_an_unfinished_experiment_an_existing_target_and_a_run_without_a_final_checkpoint(tmp_path):
    with pytest.raises(PackError, match="not complete"):
        pack(_experiment(tmp_path, "running", complete=False), tmp_path / "out")
    run = _experiment(tmp_path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(PackError, match=r"already exists.*--force"):
        pack(run, tmp_path / "taken")
    assert pack(run, tmp_path / "taken", force=True).files > 0
    training = run / "train"
    for path in sorted((training / "checkpoints" / "final").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (training / "checkpoints" / "final").rmdir()
    with pytest.raises(PackError, match="no final checkpoint"):
        pack(training, tmp_path / "train_only")


def test_pack_command_prints_one_error_line_and_exits_2(tmp_path, capsys):
    assert main(["pack", str(tmp_path / "missing"), "--to", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: no such run directory"
    run = _experiment(tmp_path)
    assert main(["pack", str(run), "--to", str(tmp_path / "result")]) == 0
    assert "packed" in capsys.readouterr().out
