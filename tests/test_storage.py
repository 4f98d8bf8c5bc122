"""Run directories on a URI: mirrored up while the command runs, pulled back for --resume, and
checkpoints read by evaluation workers straight from the URI. file:// stands in for s3:// and
gs://: the same pyarrow.fs code path, without credentials."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from rllib_paper.cli import main
from rllib_paper.config import ConfigError
from rllib_paper.runtime.storage import RunMirror, is_uri, local_copy, run_directory

TINY_TRAIN = [
    "env.task.max_steps=40",
    "ppo.train_batch_size=160",
    "ppo.minibatch_size=80",
    "ppo.num_epochs=1",
    "ppo.hiddens=[32, 32]",
    "env_runners.num_env_runners=1",
    "env_runners.num_envs_per_env_runner=2",
    "learners.torch_threads=1",
    "checkpoint_every=1",
]


def test_uri_detection():
    assert is_uri("s3://bucket/runs/x") and is_uri("gs://b/x") and is_uri("file:///tmp/x")
    assert not is_uri("/mnt/runs/x") and not is_uri("runs/x")


def test_mirror_copies_only_new_or_changed_files_and_pulls_them_back(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    (local / "checkpoints" / "iter_1").mkdir(parents=True)
    (local / "metrics.csv").write_text("iteration\n1\n")
    (local / "checkpoints" / "iter_1" / "state.bin").write_bytes(b"\x00" * 1000)
    mirror = RunMirror(local, f"file://{remote}")
    assert mirror.push() == 2
    assert mirror.push() == 0, "unchanged files are not copied again"
    (local / "metrics.csv").write_text("iteration\n1\n2\n")
    assert mirror.push() == 1
    assert (remote / "metrics.csv").read_text() == "iteration\n1\n2\n"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert RunMirror(fresh, f"file://{remote}").pull() == 2
    assert (fresh / "checkpoints" / "iter_1" / "state.bin").read_bytes() == b"\x00" * 1000


def test_run_directory_refuses_to_overwrite_a_run_without_resume(tmp_path):
    uri = f"file://{tmp_path / 'run'}"
    with run_directory(uri) as out:
        (out / "report.json").write_text("{}")
    assert (tmp_path / "run" / "report.json").is_file(), "the final mirror pass ran"
    with pytest.raises(ConfigError, match="already holds a run"), run_directory(uri):
        pass
    with run_directory(uri, resume=True) as out:
        assert (out / "report.json").read_text() == "{}"


def test_final_mirror_pass_runs_when_the_command_fails(tmp_path):
    uri = f"file://{tmp_path / 'run'}"
    with pytest.raises(RuntimeError), run_directory(uri) as out:
        (out / "shards").mkdir()
        (out / "shards" / "shard_0.json").write_text("[]")
        raise RuntimeError("worker died")
    assert (tmp_path / "run" / "shards" / "shard_0.json").is_file(), "finished work reaches storage"


def test_local_copy_downloads_a_checkpoint_uri_once(tmp_path, monkeypatch):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "module.pt").write_bytes(b"weights")
    uri = f"file://{tmp_path / 'ckpt'}"
    pulls = []
    pull = RunMirror.pull
    monkeypatch.setattr(RunMirror, "pull", lambda self: pulls.append(self.uri) or pull(self))
    first = local_copy(uri)
    try:
        assert (first / "module.pt").read_bytes() == b"weights" and first != tmp_path / "ckpt"
        assert pulls == [uri]
        # Later calls on this node read the cached copy: no second download, even with the URI gone.
        shutil.rmtree(tmp_path / "ckpt")
        assert local_copy(uri) == first and local_copy(uri) == first
        assert pulls == [uri], "every call downloaded the checkpoint again"
        assert (first / "module.pt").read_bytes() == b"weights"
    finally:
        shutil.rmtree(first, ignore_errors=True)
    assert local_copy("/some/local/path").as_posix() == "/some/local/path"
    with pytest.raises(FileNotFoundError, match="no files under that URI"):
        local_copy(f"file://{tmp_path / 'missing'}")


def test_train_to_a_uri_resumes_from_it_then_evaluates_its_checkpoint_from_it(tmp_path, ray_local, capsys):
    run_uri = f"file://{tmp_path / 'bucket' / 'run'}"
    common = ["train", "--config", "demo", "--out", run_uri, "--quiet"]
    sets = [arg for assignment in TINY_TRAIN for arg in ("--set", assignment)]
    assert main([*common, *sets, "--set", "stop.iterations=1"]) == 0
    remote = tmp_path / "bucket" / "run"
    assert (remote / "checkpoints" / "final").is_dir() and (remote / "config.yaml").is_file()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train"]["final_checkpoint"].startswith(run_uri), "the summary names the URI, not staging"

    # A new job (its staging dir gone) resumes from what the URI holds.
    assert main([*common, "--resume", *sets, "--set", "stop.iterations=2"]) == 0
    metrics = pd.read_csv(remote / "metrics.csv")
    assert list(metrics["iteration"]) == [1, 2], "iteration count and metrics history continue"

    eval_uri = f"file://{tmp_path / 'bucket' / 'eval'}"
    code = main(
        [
            "eval",
            "--checkpoint",
            f"{run_uri}/checkpoints/final",
            "--episodes",
            "2",
            "--workers",
            "1",
            "--max-steps",
            "20",
            "--no-progress",
            "--out",
            eval_uri,
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "bucket" / "eval" / "report.json").read_text())
    assert report["complete"] and report["episodes_done"] == 2
