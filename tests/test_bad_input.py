"""Bad input is refused in the driver with one sentence, before Ray starts or a directory is made."""

import shutil
from pathlib import Path

import pytest

from rllib_paper.cli import main

HEADLINE = Path(__file__).resolve().parents[1] / "results/experiment_scripted_phase2_anneal/train/checkpoints/final"
MODULE = "learner_group/learner/rl_module/default_policy"


def _damaged(tmp_path, relative: str, keep_bytes: int) -> Path:
    copy = tmp_path / "ckpt"
    shutil.copytree(HEADLINE, copy)
    path = copy / relative
    path.write_bytes(path.read_bytes()[:keep_bytes])
    return copy


def _forbid_ray(monkeypatch) -> list:
    """Record any attempt to start or join Ray (another test may have left one running)."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


@pytest.mark.parametrize(
    ("make_checkpoint", "message"),
    [
        (lambda tmp: tmp.mkdir(exist_ok=True) or tmp, "no RLModule checkpoint found"),
        (
            lambda tmp: (tmp.mkdir(exist_ok=True), (tmp / "model.pt").write_text("x"))[0] or tmp / "model.pt",
            "is a file",
        ),
        (lambda tmp: _damaged(tmp, f"{MODULE}/module_state.pkl", 300), "module_state.pkl is damaged"),
        (lambda tmp: _damaged(tmp, f"{MODULE}/class_and_ctor_args.pkl", 100), "class_and_ctor_args.pkl is damaged"),
        (lambda tmp: _damaged(tmp, "rllib_paper_env.json", 200), "rllib_paper_env.json"),
        (lambda tmp: tmp / "missing", "no such file or directory"),
    ],
    ids=["empty-dir", "plain-file", "truncated-state", "truncated-class", "truncated-env-record", "missing"],
)
def test_a_bad_checkpoint_is_one_sentence_before_ray_starts(tmp_path, capsys, monkeypatch, make_checkpoint, message):
    ray_calls = _forbid_ray(monkeypatch)
    checkpoint = make_checkpoint(tmp_path / "c")
    out = tmp_path / "out"
    assert main(["eval", "--checkpoint", str(checkpoint), "--episodes", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not ray_calls and not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--policy", "scripted?nonsense=1"], "pusher.nonsense: unknown parameter"),
        (["eval", "--policy", "scripted?drag_speed=nan"], "pusher.drag_speed='nan': expected a finite number"),
        (["eval", "--policy", "scripted?hover_height=inf"], "pusher.hover_height='inf': expected a finite number"),
        (["eval", "--policy", "groot:tcp://127.0.0.1:5555?config=so100&timeout=nan"], "timeout='nan'"),
        (["eval", "--policy", "actor:zero#max_batch=inf"], "max_batch='inf': expected an integer"),
        (["eval", "--set", "env.task.max_steps=0"], "task.max_steps=0"),
        (["eval", "--set", "env.residual.alpha=nan"], "residual.alpha=nan: expected a finite number"),
        (["rollout", "--policy", "scripted?drag_speed=-inf"], "pusher.drag_speed='-inf': expected a finite number"),
        (["train", "--set", "ppo.lr=nan"], "ppo.lr=nan: expected a finite number"),
        (["record", "--cameras", "side"], "cameras=['side']: unknown ['side']; allowed: ['top', 'wrist']"),
        (["record", "--episodes", "0"], "episodes=0: allowed range is [1, inf)"),
        (["record", "--policy", "bc:no/such/run"], "no/such/run/bc_policy.json does not exist"),
        (["eval", "--policy", "bc:no/such/run?execute=0"], "bc_policy.json does not exist"),
    ],
)
def test_bad_spec_or_env_value_is_one_sentence_before_ray_starts(tmp_path, capsys, monkeypatch, argv, message):
    """Every command that builds envs or runs episodes refuses a bad value before Ray starts."""
    ray_calls = _forbid_ray(monkeypatch)
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)] if argv[0] != "rollout" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not ray_calls and not out.exists()


@pytest.mark.parametrize("command", [["replay"], ["bc", "train"]])
def test_a_dataset_that_is_not_there_is_one_sentence(tmp_path, capsys, command):
    argv = [*command, str(tmp_path / "missing")]
    assert main([*argv, "--out", str(tmp_path / "run")] if command[0] == "bc" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rllib-paper: dataset error:") and "missing" in err and len(err.splitlines()) == 1, err
