"""Distributed evaluation: worker-count independence, resume, worker death, reports, paired test."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rllib_paper.cli import main
from rllib_paper.config import ConfigError, coerce_env_config
from rllib_paper.evaluation.distributed import EvalConfig, Evaluator, default_eval_env, evaluate
from rllib_paper.evaluation.episodes import EpisodeRunner
from rllib_paper.evaluation.report import mcnemar

# Short episodes keep the suite fast; the logic is the same.
SHORT = coerce_env_config(default_eval_env(), task={"max_steps": 45})
VOLATILE = ["wall_seconds", "node_id", "worker_pid"]
ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, name, **kw):
    base = dict(
        episodes=12,
        seed=100,
        workers=2,
        shard_size=3,
        out=str(tmp_path / name),
        env=SHORT,
        progress=False,
    )
    base.update(kw)
    return EvalConfig(**base)


def _stable(path):
    return pd.read_parquet(path / "episodes.parquet").drop(columns=VOLATILE)


def test_results_do_not_depend_on_worker_count_or_rerun(ray_local, tmp_path):
    one = evaluate(_config(tmp_path, "w1", workers=1))
    two = evaluate(_config(tmp_path, "w2", workers=2))
    again = evaluate(_config(tmp_path, "w2_again", workers=2, shard_size=5))
    assert one["complete"] and two["complete"] and again["complete"]
    pd.testing.assert_frame_equal(_stable(tmp_path / "w1"), _stable(tmp_path / "w2"))
    pd.testing.assert_frame_equal(_stable(tmp_path / "w1"), _stable(tmp_path / "w2_again"))
    assert one["results"] == two["results"] == again["results"]
    # ... and equal to the serial episode function on the same seeds.
    serial = EpisodeRunner(_config(tmp_path, "x").env)
    frame = _stable(tmp_path / "w2").set_index("seed")
    for seed in (100, 105, 111):
        record = serial.run(seed)
        assert frame.loc[seed, "success"] == record.success
        assert frame.loc[seed, "episode_return"] == record.episode_return
        assert frame.loc[seed, "final_corner_error_mm"] == record.final_corner_error_mm


def test_interrupt_then_resume_runs_only_missing_seeds(ray_local, tmp_path):
    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    config = _config(tmp_path, "resume", workers=1)
    with pytest.raises(KeyboardInterrupt):
        Evaluator(config, on_shard_done=interrupt).run()
    partial = json.loads((tmp_path / "resume" / "report.json").read_text())
    assert partial["complete"] is False and partial["episodes_done"] == 6 and partial["episodes_requested"] == 12
    assert "INCOMPLETE" in (tmp_path / "resume" / "summary.md").read_text()

    with pytest.raises(ConfigError, match="already holds evaluation shards: pass --resume"):
        evaluate(config)

    resumed = Evaluator(_config(tmp_path, "resume", workers=1, resume=True))
    report = resumed.run()
    assert resumed.episodes_run == 6 and report["complete"] and report["episodes_done"] == 12
    full = evaluate(_config(tmp_path, "uninterrupted", workers=2))
    pd.testing.assert_frame_equal(_stable(tmp_path / "resume"), _stable(tmp_path / "uninterrupted"))
    assert report["results"] == full["results"]


def test_eval_driver_killed_with_sigkill_then_resumed(ray_local, tmp_path, short_tmp, capsys):
    """`rllib-paper eval` killed with SIGKILL after its first shard (no handler runs, no partial
    report): `--resume` runs exactly the missing seeds and the table equals an uninterrupted run's."""
    out = tmp_path / "killed"
    args = ["--policy", "scripted", "--episodes", "16", "--seed", "100", "--dr", "phase2", "--workers", "1"]
    args += ["--shard-size", "2", "--max-steps", "150", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rllib_paper", "eval", *args],
        cwd=ROOT,
        env={**os.environ, "RAY_TMPDIR": short_tmp},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    try:
        while not any((out / "shards").glob("shard-*.parquet")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no shard written within 300 s"
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-evaluation
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    kept = {f.name: f.read_bytes() for f in (out / "shards").glob("shard-*.parquet")}
    before = sorted(int(seed) for f in kept for seed in pd.read_parquet(out / "shards" / f)["seed"])
    assert 2 <= len(before) < 16 and not (out / "report.json").exists(), "killed before the end: no report"

    assert main(["eval", *args]) != 0 and "pass --resume" in capsys.readouterr().err  # no silent overwrite
    assert main(["eval", *args, "--resume"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["episodes_done"] == 16
    shards = {f.name: f for f in (out / "shards").glob("shard-*.parquet")}
    assert all(shards[name].read_bytes() == data for name, data in kept.items()), "a finished shard was rerun"
    rerun = sorted(int(seed) for name, f in shards.items() if name not in kept for seed in pd.read_parquet(f)["seed"])
    assert rerun == sorted(set(range(100, 116)) - set(before)), "resume ran other than exactly the missing seeds"
    table = pd.read_parquet(out / "episodes.parquet")
    assert sorted(table["seed"]) == list(range(100, 116)) and table["seed"].is_unique
    full = evaluate(
        _config(
            tmp_path,
            "whole",
            episodes=16,
            workers=2,
            shard_size=5,
            env=coerce_env_config(SHORT, task={**SHORT.to_dict()["task"], "max_steps": 150}),
        )
    )
    pd.testing.assert_frame_equal(_stable(out), _stable(tmp_path / "whole"))
    assert report["results"] == full["results"]


def test_resume_refuses_a_different_configuration(ray_local, tmp_path):
    evaluate(_config(tmp_path, "a", episodes=3))
    with pytest.raises(ConfigError, match="--resume: env differs"):
        evaluate(_config(tmp_path, "a", episodes=3, env=coerce_env_config(SHORT, dr="phase1"), resume=True))


def test_killed_worker_is_replaced_and_its_shard_retried(ray_local, tmp_path):
    import ray

    evaluator = None
    killed = []

    def kill_a_worker(done, total):
        if done == 1 and not killed:
            pid = ray.get(evaluator.workers[1].pid.remote(), timeout=30)
            os.kill(pid, signal.SIGKILL)  # a process this test's evaluation started
            killed.append(pid)

    evaluator = Evaluator(_config(tmp_path, "killed", episodes=15, workers=2), on_shard_done=kill_a_worker)
    report = evaluator.run()
    episodes = pd.read_parquet(tmp_path / "killed" / "episodes.parquet")
    assert killed and report["run"]["worker_failures"] >= 1
    assert report["complete"] and sorted(episodes["seed"]) == list(range(100, 115))
    assert killed[0] not in set(episodes["worker_pid"]) or episodes["seed"].is_unique
    assert episodes["seed"].is_unique


def test_report_schema(ray_local, tmp_path):
    report = evaluate(_config(tmp_path, "schema", episodes=6))
    saved = json.loads((tmp_path / "schema" / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["schema_version"] == 1 and saved["complete"] is True
    results = saved["results"]
    for key in ("success", "success_once", "success_at_end"):
        low, high = results[key]["ci95"]
        assert 0.0 <= low <= results[key]["rate"] <= high <= 1.0
    assert set(results["by_dr_bin"]) == {
        "paper_x",
        "paper_y",
        "paper_yaw",
        "paper_friction_scale",
        "table_friction_scale",
        "paper_mass_scale",
    }
    assert sum(b["episodes"] for b in results["by_dr_bin"]["paper_x"]) == 6
    assert saved["provenance"]["packages"]["mujoco"] and saved["provenance"]["git_commit"]
    assert (tmp_path / "schema" / "success_by_dr_bin.png").stat().st_size > 1000
    columns = set(pd.read_parquet(tmp_path / "schema" / "episodes.parquet").columns)
    assert {
        "seed",
        "success",
        "success_step",
        "final_corner_error_mm",
        "final_distance",
        "final_yaw_error",
        "steps",
        "episode_return",
        "residual_abs_mean",
        "residual_abs_max",
        "sim_unstable",
        "node_id",
        "wall_seconds",
        "dr_paper_x",
        "dr_paper_mass_scale",
    } <= columns


def test_mcnemar_exact_by_hand():
    a = pd.DataFrame({"seed": range(10), "success": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]})
    b = pd.DataFrame({"seed": range(10), "success": [1, 1, 0, 0, 1, 1, 1, 1, 0, 0]})
    result = mcnemar(a, b)
    assert result["table"] == {"both": 2, "only_a": 2, "only_b": 4, "neither": 2}
    # Exact two-sided binomial test of 2 vs 4 discordant pairs: p = 2 * P(X <= 2 | n=6, 1/2) = 44/64.
    assert result["mcnemar_exact_p"] == pytest.approx(44 / 64)
    with pytest.raises(ValueError, match="same seeds"):
        mcnemar(a, b.assign(seed=range(1, 11)))


def test_cli_eval_and_compare(ray_local, tmp_path, capsys):
    common = [
        "--episodes",
        "4",
        "--seed",
        "7",
        "--dr",
        "phase2",
        "--workers",
        "2",
        "--shard-size",
        "2",
        "--max-steps",
        "45",
        "--no-progress",
    ]
    assert main(["eval", "--policy", "zero", "--out", str(tmp_path / "zero"), *common]) == 0
    assert main(["eval", "--policy", "scripted", "--out", str(tmp_path / "scripted"), *common]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--compare",
                str(tmp_path / "zero"),
                str(tmp_path / "scripted"),
                "--compare-out",
                str(tmp_path / "cmp.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "exact McNemar p" in out
    result = json.loads(out.strip().splitlines()[-1])["compare"]
    assert sum(result["table"].values()) == 4
    modes = result["failure_modes"]["modes"]  # A's failures, split by mode, add up to its failures
    assert sum(m["a_failures"] for m in modes.values()) == result["table"]["only_b"] + result["table"]["neither"]
    assert "failure modes over 4 paired seeds" in out
    assert json.loads((tmp_path / "cmp.json").read_text())["table"] == result["table"]
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the paired figure beside it


@pytest.fixture(scope="module")
def residual_checkpoint(tmp_path_factory):
    """An untrained RLlib PPO module saved the way training saves it: a real checkpoint on disk."""
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_paper.envs.residual import ResidualPaperEnv

    env = ResidualPaperEnv({"randomization": "phase2"})
    spec = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config={"fcnet_hiddens": [16, 16]},
    )
    path = tmp_path_factory.mktemp("module")
    spec.build().save_to_path(str(path))
    return str(path)


def test_base_plus_residual_checkpoint(ray_local, tmp_path, residual_checkpoint):
    one = evaluate(_config(tmp_path, "res1", episodes=4, workers=1, checkpoint=residual_checkpoint))
    two = evaluate(_config(tmp_path, "res2", episodes=4, workers=2, checkpoint=residual_checkpoint, shard_size=1))
    assert one["complete"] and two["complete"]
    assert one["results"]["means"]["residual_abs_mean"]["mean"] > 0
    assert one["config"]["checkpoint"] == residual_checkpoint
    pd.testing.assert_frame_equal(_stable(tmp_path / "res1"), _stable(tmp_path / "res2"))


def test_sampled_residual_actions_are_seeded_by_the_episode(ray_local, tmp_path, residual_checkpoint):
    """--residual-actions sample: drawn from the policy's Gaussian, the noise seeded by the
    episode, so the table is the same on 1 or 2 workers and differs from the mean's."""
    from rllib_paper.evaluation.episodes import EpisodeRunner
    from rllib_paper.residual.checkpoint import load_residual_policy

    sampled = load_residual_policy(residual_checkpoint, "sample")
    runner = EpisodeRunner({"randomization": "phase2", "task": {"max_steps": 30}}, residual_fn=sampled)
    first, again = runner.run(11), runner.run(11)
    assert first.to_dict() | {"wall_seconds": 0} == again.to_dict() | {"wall_seconds": 0}
    mean = EpisodeRunner(runner.config, residual_fn=load_residual_policy(residual_checkpoint)).run(11)
    assert first.residual_abs_mean != mean.residual_abs_mean
    sample = {"checkpoint": residual_checkpoint, "residual_actions": "sample", "episodes": 4}
    one = evaluate(_config(tmp_path, "s1", workers=1, **sample))
    evaluate(_config(tmp_path, "s2", workers=2, shard_size=1, **sample))
    assert one["config"]["residual_actions"] == "sample"
    pd.testing.assert_frame_equal(_stable(tmp_path / "s1"), _stable(tmp_path / "s2"))
    with pytest.raises(ConfigError, match=r"residual_actions='noisy': allowed values are \['mean', 'sample'\]"):
        _config(tmp_path, "x", checkpoint=residual_checkpoint, residual_actions="noisy")


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint='/no/such/dir': no such file or directory"):
        _config(tmp_path, "x", checkpoint="/no/such/dir")
