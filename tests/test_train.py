"""Residual PPO training: config validation, the residual starting as the base, a short run on
local Ray, kill-and-resume, and env runners placed on two nodes of a Ray cluster."""

import contextlib
import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rllib_paper.config import ConfigError, apply_overrides, dr_preset
from rllib_paper.training.config import TrainConfig, load_train_config

# Tiny but real: the scripted base, short episodes, small batches.
TINY = [
    "env.task.max_steps=40",
    "env.residual.scale=0.05",
    "ppo.train_batch_size=160",
    "ppo.minibatch_size=80",
    "ppo.num_epochs=2",
    "ppo.hiddens=[32, 32]",
    "env_runners.num_env_runners=1",
    "env_runners.num_envs_per_env_runner=2",
    "learners.torch_threads=1",
]
ROOT = Path(__file__).resolve().parents[1]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("ppo.lr=-1", r"ppo.lr=-1: allowed range is \(0.0, 1.0\]"),
        ("ppo.minibatch_size=9000", r"ppo.minibatch_size=9000: allowed range is \[1, 4000\]"),
        ("ppo.lrr=0.1", r"unknown key ppo.lrr"),
        ("env.randomization=phase9", r"randomization='phase9': allowed presets"),
        ("env.residual.scale=2", r"residual.scale=2: allowed range is \[0.0, 1.0\]"),
        ("env_runners.num_env_runners=-1", r"env_runners.num_env_runners=-1"),
        ("learners.gpu=maybe", r"learners.gpu='maybe'"),
        ("stop={iterations: 0}", r"stop: set at least one"),
        ("env.task.max_steps=0", r"task.max_steps=0"),
        ("ppo.entropy_coeff_final=-0.1", r"ppo.entropy_coeff_final=-0.1: allowed range is \[0.0, 10.0\]"),
        ("ppo.entropy_decay_steps=0", r"ppo.entropy_decay_steps=0: allowed range is \[1, inf\]"),
        ("ppo.lr_final=0", r"ppo.lr_final=0: allowed range is \(0.0, 1.0\]"),
        ("ppo.lr_decay_steps=0", r"ppo.lr_decay_steps=0: allowed range is \[1, inf\]"),
        ("ppo.init_std=0", r"ppo.init_std=0: allowed range is \(0.0, 10.0\]"),
    ],
)
def test_bad_train_config_is_one_clear_error(assignment, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [assignment])


def test_set_overrides_parse_yaml_values_and_shipped_configs_load():
    data = apply_overrides({"ppo": {"lr": 1e-3}}, ["ppo.hiddens=[64, 64]", "env.randomization=phase1", "seed=7"])
    assert data == {"ppo": {"lr": 1e-3, "hiddens": [64, 64]}, "env": {"randomization": "phase1"}, "seed": 7}
    config = load_train_config("residual_scripted", ["ppo.lr=1e-4"])
    assert config.ppo.lr == 1e-4 and config.env.randomization == dr_preset("phase2")
    assert config.env.residual.base_policy == "scripted?max_turn_detour=3.1416"  # the headline's base
    assert TrainConfig().ppo.num_epochs == 10 and TrainConfig().ppo.clip_param == 0.2
    assert TrainConfig().ppo.entropy_coeff == 0.005 and TrainConfig().ppo.lr == 3e-4
    with pytest.raises(ConfigError, match="no such file, and not one of the shipped configs"):
        load_train_config("nope")


def test_entropy_bonus_is_constant_or_a_linear_decay_handed_to_rllib():
    from rllib_paper.training.algorithm import build_algorithm_config

    assert build_algorithm_config(load_train_config(None, TINY)).entropy_coeff == 0.005
    decayed = load_train_config(None, [*TINY, "ppo.entropy_coeff_final=0.0", "ppo.entropy_decay_steps=800000"])
    algo_config = build_algorithm_config(decayed)
    algo_config.validate()  # RLlib accepts it as a schedule
    assert algo_config.entropy_coeff == [[0, 0.005], [800000, 0.0]]


def test_learning_rate_is_constant_or_a_linear_anneal_handed_to_rllib():
    from rllib_paper.training.algorithm import build_algorithm_config

    assert build_algorithm_config(load_train_config(None, TINY)).lr == 3e-4
    annealed = load_train_config(None, [*TINY, "ppo.lr_final=3e-5", "ppo.lr_decay_steps=1500000"])
    algo_config = build_algorithm_config(annealed)
    algo_config.validate()
    assert algo_config.lr == [[0, 3e-4], [1500000, 3e-5]]


def test_compact_log_line_says_when_no_episode_ended_instead_of_printing_nan():
    from rllib_paper.envs.paper_env import REWARD_TERMS
    from rllib_paper.training.metrics import MetricsLog

    nan = float("nan")
    row = {"iteration": 3, "env_steps_total": 12000, "iteration_seconds": 9.5, "sample_steps_per_s": 600.0}
    empty = {**row, "episodes": 0, "success_rate": nan, "success_rolling": 0.5, "rolling_episodes": 20}
    empty |= {"episode_return": nan, "episode_length": nan, "residual_abs_mean": nan}
    empty |= {f"reward_{t}": nan for t in REWARD_TERMS}
    line = MetricsLog.line(empty)
    assert "nan" not in line and "no episode ended this iteration, success 0.50 last 20" in line
    first = {**empty, "rolling_episodes": 0, "success_rolling": nan}
    assert "success none yet" in MetricsLog.line(first) and "nan" not in MetricsLog.line(first)
    full = {**empty, "episodes": 4, "success_rate": 0.75, "episode_return": -20.0, "episode_length": 180.0}
    full |= {"residual_abs_mean": 0.2} | {f"reward_{t}": 1.0 for t in REWARD_TERMS}
    assert "success 0.75 it, 0.50 last 20 | return   -20.0" in MetricsLog.line(full)


# ---------------------------------------------------------------------------- module
def test_untrained_residual_is_exactly_zero_and_reproduces_the_base(tmp_path):
    """Iteration 0 behaves like the base: zero mean for any input, small std."""
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_paper.evaluation.episodes import EpisodeRunner
    from rllib_paper.residual.checkpoint import load_residual_policy
    from rllib_paper.training.algorithm import build_algorithm_config

    config = load_train_config(None, TINY)
    spec = build_algorithm_config(config).rl_module_spec
    spec.observation_space, spec.action_space = _spaces(config)
    module = spec.build()
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(5, 31)) * 3, dtype=torch.float32)
    out = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert torch.all(out[:, :6] == 0)
    assert torch.allclose(out[:, 6:], torch.full((5, 6), float(np.log(config.ppo.init_std))))

    module.save_to_path(str(tmp_path / "module"))
    env = config.env
    base = EpisodeRunner(env).run(3)
    with_residual = EpisodeRunner(env, residual_fn=load_residual_policy(tmp_path / "module")).run(3)
    assert with_residual.episode_return == base.episode_return
    assert with_residual.final_corner_error_mm == base.final_corner_error_mm
    assert with_residual.residual_abs_max == 0.0


def _spaces(config):
    from rllib_paper.envs.residual import ResidualPaperEnv

    env = ResidualPaperEnv(config.env)
    return (env.observation_space, env.action_space)


# ---------------------------------------------------------------------------- local Ray
def test_short_training_writes_metrics_checkpoints_and_a_usable_policy(ray_local, tmp_path):
    from rllib_paper.residual.checkpoint import load_residual_policy, read_trained_env
    from rllib_paper.training.callbacks import EPISODES_KEY  # noqa: F401  (the callback module imports)
    from rllib_paper.training.loop import train
    from rllib_paper.training.run_dir import latest_checkpoint

    config = load_train_config(None, [*TINY, "stop={iterations: 2}", "checkpoint_every=1"])
    seen, curves = [], []

    def on_iteration(row, ckpt):
        seen.append((row, ckpt))
        curves.append((tmp_path / "run" / "curves.png").read_bytes())  # redrawn with each checkpoint

    summary = train(config, tmp_path / "run", on_iteration=on_iteration, quiet=True)
    run = tmp_path / "run"
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in curves) and curves[0] != curves[1]
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["iterations"] == 2 and summary["env_steps"] >= 2 * 160
    rows = _rows(run / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    for key in ("success_rate", "success_rolling", "residual_abs_mean", "episode_length", "episode_return"):
        assert key in rows[0]
    assert {f"reward_{t}" for t in ("success", "distance", "orientation", "residual", "time")} <= set(rows[0])
    assert float(rows[-1]["residual_abs_mean"]) > 0  # the stochastic policy explores
    episodes = _rows(run / "episodes.csv")
    assert len(episodes) >= 4 and all(0 < int(e["length"]) <= 40 for e in episodes)
    # Fewer episodes than the success window: no "best" checkpoint, and the summary says so.
    assert len(episodes) < config.success_window
    assert summary["best"] is None and not (run / "checkpoints" / "best").exists()
    assert [row["iteration"] for row, _ in seen] == [1, 2]
    assert seen[-1][1] is not None and seen[-1][1].name == "iter_000002"  # reported after it was saved
    assert any(p.name.startswith("events") for p in (run / "tensorboard").iterdir())
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == 0 and "git_commit" in info["provenance"] and info["provenance"]["packages"]["ray"]
    assert latest_checkpoint(run).name == "final"
    assert (run / "checkpoints" / "iter_000002").is_dir()
    policy = load_residual_policy(run / "checkpoints" / "final")
    action = policy(np.zeros(31, dtype=np.float32))
    assert action.shape == (6,) and np.all(np.abs(action) <= 1)
    assert read_trained_env(run / "checkpoints" / "final").env["residual"]["scale"] == 0.05
    assert not (Path.home() / "ray_results").exists() or not any((Path.home() / "ray_results").iterdir())

    with pytest.raises(ConfigError, match="already holds a run"):
        train(config, run, quiet=True)


def test_iteration_0_checkpoint_from_train_evaluates_exactly_as_the_base(ray_local, tmp_path, monkeypatch, capsys):
    """`rllib-paper train` stopped before its first update writes the iteration-0 residual;
    `rllib-paper eval --checkpoint` of it must reproduce the base alone, episode for episode."""
    import pandas as pd

    from rllib_paper.cli import main
    from rllib_paper.training.loop import Trainer

    monkeypatch.setattr(Trainer, "_stop_reason", lambda self: "stopped before the first update")
    sets = [a for item in TINY for a in ("--set", item)]
    assert main(["train", *sets, "--set", "stop={iterations: 1}", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train"]
    assert summary["iterations"] == 0 and summary["final_checkpoint"].endswith("checkpoints/final")
    common = ["--episodes", "3", "--seed", "1000", "--dr", "phase2", "--workers", "1", "--max-steps", "150"]
    common += ["--no-progress"]
    checkpoint = summary["final_checkpoint"]
    assert main(["eval", "--checkpoint", checkpoint, "--out", str(tmp_path / "residual"), *common]) == 0
    assert main(["eval", "--policy", "scripted", "--out", str(tmp_path / "base"), *common]) == 0
    residual, base = (
        pd.read_parquet(tmp_path / name / "episodes.parquet").drop(columns=["wall_seconds", "node_id", "worker_pid"])
        for name in ("residual", "base")
    )
    assert list(residual["seed"]) == [1000, 1001, 1002]
    assert residual["steps"].min() > 100  # long enough that the pusher drives the sheet
    # Return, success step and final pose summarise every step: one differing target would show.
    magnitudes = ["residual_abs_mean", "residual_abs_max"]
    pd.testing.assert_frame_equal(residual.drop(columns=magnitudes), base.drop(columns=magnitudes))
    assert (residual[magnitudes] == 0.0).all().all() and (base[magnitudes] == 0.0).all().all()
    report = json.loads((tmp_path / "residual" / "report.json").read_text())
    assert report["config"]["checkpoint"] == checkpoint and report["config"]["env"]["residual"]["scale"] == 0.05


# ---------------------------------------------------------------------------- kill and resume
def _train_cmd(out, *extra):
    sets = [a for item in TINY for a in ("--set", item)]
    return [sys.executable, "-m", "rllib_paper.cli", "train", *sets, *extra, "--out", str(out), "--quiet"]


def _saved_optimizer_state(checkpoint: Path) -> dict:
    """The policy's torch optimizer state as RLlib wrote it into an Algorithm checkpoint."""
    with open(checkpoint / "learner_group" / "learner" / "state.pkl", "rb") as fh:
        return pickle.load(fh)["optimizer"]["default_policy_default_optimizer"]["state"]


def test_killed_run_resumes_from_its_last_checkpoint(ray_local, tmp_path, short_tmp):
    out = tmp_path / "run"
    env = {**os.environ, "RAY_TMPDIR": short_tmp}
    proc = subprocess.Popen(
        _train_cmd(out, "--set", "stop={iterations: 50}", "--set", "checkpoint_every=1"),
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if pointer.is_file() and json.loads(pointer.read_text())["iteration"] >= 3:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("training wrote no third checkpoint within 300 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, mid-iteration
        proc.wait(timeout=60)
    killed_at = json.loads(pointer.read_text())["iteration"]
    rows_before = _rows(out / "metrics.csv")
    assert len(rows_before) >= killed_at

    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_paper.residual.checkpoint import find_module_dir
    from rllib_paper.training.loop import Trainer
    from rllib_paper.training.run_dir import latest_checkpoint

    saved = RLModule.from_checkpoint(str(find_module_dir(latest_checkpoint(out)))).state_dict()
    config = load_train_config(out / "config.yaml", [f"stop={{iterations: {killed_at + 2}}}"])
    trainer = Trainer(config, out, resume=True, quiet=True)
    try:
        algo = trainer.build()
        assert algo.iteration == killed_at
        learner = algo.learner_group._learner
        restored = learner.module["default_policy"].state_dict()
        for name, value in saved.items():
            np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(value), err_msg=name)
        # Adam's moments and step counts are the checkpoint's, exactly (not merely present).
        saved_adam = _saved_optimizer_state(latest_checkpoint(out))
        restored_adam = learner.get_optimizer().state_dict()
        assert saved_adam["state"] and sorted(restored_adam["state"]) == sorted(saved_adam["state"])
        for index, moments in saved_adam["state"].items():
            assert float(moments["step"]) > 0
            for key in ("step", "exp_avg", "exp_avg_sq"):
                restored_value = np.asarray(restored_adam["state"][index][key])
                np.testing.assert_array_equal(restored_value, np.asarray(moments[key]), err_msg=f"{index} {key}")
        assert restored_adam["param_groups"][0]["lr"] == saved_adam["param_groups"][0]["lr"]
        summary = trainer.run()
    finally:
        trainer.stop()
    assert summary["iterations"] == killed_at + 2
    rows = _rows(out / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, killed_at + 3))
    # History up to the checkpoint is kept as it was; env-step totals continue from it.
    assert rows[:killed_at] == rows_before[:killed_at]
    assert int(rows[killed_at]["env_steps_total"]) > int(rows[killed_at - 1]["env_steps_total"])
    info = json.loads((out / "run_info.json").read_text())
    assert len(info["sessions"]) == 2 and info["sessions"][1]["resumed_from"].endswith(f"iter_{killed_at:06d}")


def test_run_killed_before_its_first_checkpoint_resumes_without_duplicate_rows(ray_local, tmp_path, short_tmp):
    """SIGKILL after iteration 1 was logged but before any checkpoint: --resume starts again at
    iteration 0, so the logged rows must go (kept, they would read iterations 1, 1, 2, 3)."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(out, "--set", "stop={iterations: 50}", "--set", "checkpoint_every=100"),
        cwd=ROOT,
        env={**os.environ, "RAY_TMPDIR": short_tmp},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if (out / "metrics.csv").is_file() and len(_rows(out / "metrics.csv")) >= 1:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        else:
            pytest.fail("training logged no iteration within 300 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not (out / "checkpoints" / "latest.json").exists() and _rows(out / "metrics.csv")
    from rllib_paper.training.loop import train

    config = load_train_config(out / "config.yaml", ["stop={iterations: 3}"])
    summary = train(config, out, resume=True, quiet=True)
    assert summary["iterations"] == 3
    assert [int(r["iteration"]) for r in _rows(out / "metrics.csv")] == [1, 2, 3]
    assert {int(r["iteration"]) for r in _rows(out / "episodes.csv")} <= {1, 2, 3}
    assert int(_rows(out / "metrics.csv")[-1]["env_steps_total"]) == summary["env_steps"]


# ---------------------------------------------------------------------------- two nodes
CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from rllib_paper.training.loop import train
    from rllib_paper.training.config import load_train_config

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1, resources={"cpu_node": 1})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        config = load_train_config(None, sys.argv[2:])
        summary = train(config, sys.argv[1], quiet=True)
        print(json.dumps({"head": cluster.head_node.node_id, "worker": worker.node_id, "summary": summary}))
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_env_runners_spread_over_two_nodes(tmp_path, run_cluster_script):
    """A head and a second node carrying a custom resource; one runner per node (1 CPU each)."""
    assignments = [*TINY, "env_runners.num_env_runners=2", "env_runners.num_envs_per_env_runner=1"]
    assignments += ["stop={iterations: 1}", "ppo.train_batch_size=120", "ppo.minibatch_size=60"]
    placement = run_cluster_script(CLUSTER_SCRIPT, str(tmp_path / "run"), *assignments)
    assert placement["summary"]["iterations"] == 1
    nodes = {row["node_id"] for row in _rows(tmp_path / "run" / "episodes.csv")}
    assert nodes == {placement["head"], placement["worker"]}


# ---------------------------------------------------------------------------- the experiment
def test_experiment_trains_then_compares_base_and_residual_on_the_same_seeds(ray_local, tmp_path):
    from rllib_paper.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig(
        train=load_train_config(None, [*TINY, "stop={iterations: 1}"]),
        out=str(tmp_path / "exp"),
        episodes=4,
        seed=1000,
        workers=2,
        progress=False,
    )
    result = run_experiment(config)
    assert result["complete"] and result["seeds"] == [1000, 1003]
    assert sum(result["paired_table"].values()) == 4
    assert result["training"]["iterations"] == 1 and result["training"]["residual"]["scale"] == 0.05
    base = json.loads((tmp_path / "exp" / "eval_base" / "report.json").read_text())
    residual = json.loads((tmp_path / "exp" / "eval_residual" / "report.json").read_text())
    assert base["config"]["checkpoint"] is None and residual["config"]["checkpoint"].endswith("checkpoints/final")
    # The evaluation used the residual gain the checkpoint was trained with.
    assert residual["config"]["env"]["residual"]["scale"] == 0.05
    # The trained residual acted (one PPO update moved its mean off zero); the base run had none.
    assert residual["results"]["means"]["residual_abs_mean"]["mean"] > 0
    assert base["results"]["means"]["residual_abs_mean"]["mean"] == 0
    assert (
        residual["results"]["success"]["successes"] == result["paired_table"]["both"] + result["paired_table"]["only_b"]
    )
    # Evaluation judges a success that holds; training ended at the first success.
    assert residual["config"]["env"]["task"]["settle_after_success_steps"] == 30
    assert config.train.env.task.settle_after_success_steps == 0
    assert (tmp_path / "exp" / "comparison.png").is_file()
    assert (tmp_path / "exp" / "eval_base" / "report.html").is_file()
    # Rerunning resumes: nothing is trained or evaluated again, the result is the same.
    again = run_experiment(config)
    assert again["paired_table"] == result["paired_table"] and again["training"] == result["training"]


def test_bench_train_times_whole_iterations_against_the_physics_ceiling(ray_local):
    from rllib_paper.bench.train import run

    tiny = ("ppo.train_batch_size=160", "ppo.minibatch_size=80", "ppo.num_epochs=1", "env.task.max_steps=40")
    result = run(runners=1, envs_per_runner=2, iterations=2, steps_per_runner=40, assignments=tiny)
    assert result["env_steps_timed"] >= 2 * 160
    # The physics share of the timed steps was measured, so the ceiling is finite and above the
    # end-to-end rate (the whole iteration includes the physics and more).
    assert 0.05 < result["physics_ms_per_env_step"] < 50
    assert 0 < result["end_to_end_ratio"] < 1
    # Both rates are reported; which is higher is a wall-clock race on a run this small, not a property.
    assert result["end_to_end_env_steps_per_s"] > 0 and result["sample_env_steps_per_s"] > 0
    assert 5 < result["mib_per_env"] < result["mib_per_rendering_env"]


# ---------------------------------------------------------------------------- APPO
# Tiny APPO: two 80-step updates per 160-step iteration (2 envs x 40-step fragments).
TINY_APPO = [
    *TINY,
    "algorithm=appo",
    "appo.train_batch_size=80",
    "appo.rollout_fragment_length=40",
    "appo.minibatch_size=40",
    "appo.num_epochs=2",
    "appo.circular_buffer_num_batches=2",
    "appo.max_requests_in_flight_per_env_runner=2",
]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("algorithm=sac", r"algorithm='sac': allowed values are \['appo', 'ppo'\]"),
        ("appo.minibatch_size=70", r"appo.minibatch_size=70: must be a multiple of appo.rollout_fragment_length=50"),
        ("appo.train_batch_size=1020", r"appo.train_batch_size=1020: must be a multiple of"),
        ("appo.minibatch_size=2000", r"appo.minibatch_size=2000: allowed range is \[1, 1000\]"),
        ("appo.tau=0", r"appo.tau=0: allowed range is \(0.0, 1.0\]"),
        ("appo.circular_buffer_iterations_per_batch=0", r"appo.circular_buffer_iterations_per_batch=0"),
        ("appo.target_network_update_freq=0", r"appo.target_network_update_freq=0"),
        ("appo.vtrace=false", r"unknown key appo.vtrace"),
    ],
)
def test_bad_appo_config_is_one_clear_error(assignment, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [assignment])


def test_appo_shares_ppo_settings_and_iterates_over_the_same_env_steps():
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.ppo import PPOConfig

    from rllib_paper.residual.rl_module import ResidualAPPOTorchRLModule, ResidualPPOTorchRLModule
    from rllib_paper.training.algorithm import build_algorithm_config

    assert TrainConfig().algorithm == "ppo"
    ppo = build_algorithm_config(load_train_config(None, TINY))
    assert type(ppo) is PPOConfig and ppo.rl_module_spec.module_class is ResidualPPOTorchRLModule
    config = load_train_config(None, ["algorithm=appo", "ppo.lr=1e-4", "ppo.entropy_coeff_final=0.0"])
    appo = build_algorithm_config(config)
    appo.validate()
    assert type(appo) is APPOConfig and appo.rl_module_spec.module_class is ResidualAPPOTorchRLModule
    assert appo.lr == 1e-4 and appo.entropy_coeff == [[0, 0.005], [1_000_000, 0.0]]
    assert appo.clip_param == 0.2 and appo.use_kl_loss and appo.kl_coeff == 0.2 and appo.grad_clip == 0.5
    assert appo.num_learners == 0  # the learner thread runs in the driver
    # One iteration is ppo.train_batch_size sampled env steps, not RLlib's IMPALA default of 10 s.
    assert appo.min_time_s_per_iteration == 0 and appo.min_sample_timesteps_per_iteration == 4000
    assert appo.train_batch_size_per_learner == 1000 and appo.minibatch_size == 250 and appo.num_epochs == 10
    assert appo.circular_buffer_iterations_per_batch == 1 and appo.timeout_s_sampler_manager == 0.05


def test_untrained_appo_residual_and_its_target_are_exactly_zero(tmp_path):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.apis import TARGET_NETWORK_ACTION_DIST_INPUTS

    from rllib_paper.evaluation.episodes import EpisodeRunner
    from rllib_paper.residual.checkpoint import load_residual_policy
    from rllib_paper.training.algorithm import build_algorithm_config

    config = load_train_config(None, TINY_APPO)
    spec = build_algorithm_config(config).rl_module_spec
    spec.observation_space, spec.action_space = _spaces(config)
    module = spec.build()
    module.make_target_networks()  # what APPO's learner does after building the module
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(5, 31)) * 3, dtype=torch.float32)
    log_std = torch.full((5, 6), float(np.log(config.ppo.init_std)))
    for out in (
        module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS],
        module.forward_target({Columns.OBS: obs})[TARGET_NETWORK_ACTION_DIST_INPUTS],
    ):
        assert torch.all(out[:, :6] == 0) and torch.allclose(out[:, 6:], log_std)
    # The target network sees the same normalised observations as the policy.
    with torch.no_grad():
        for p in module.pi.parameters():
            p.add_(0.1 * torch.randn_like(p))
    module.make_target_networks()
    torch.testing.assert_close(
        module.forward_target({Columns.OBS: obs})[TARGET_NETWORK_ACTION_DIST_INPUTS],
        module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS],
    )

    fresh = spec.build()
    fresh.make_target_networks()
    fresh.save_to_path(str(tmp_path / "module"))
    base = EpisodeRunner(config.env).run(2)
    with_residual = EpisodeRunner(config.env, residual_fn=load_residual_policy(tmp_path / "module")).run(2)
    assert with_residual.episode_return == base.episode_return and with_residual.residual_abs_max == 0.0


def test_short_appo_training_checkpoints_loads_and_resumes(ray_local, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_paper.residual.checkpoint import find_module_dir, load_residual_policy
    from rllib_paper.residual.rl_module import ResidualAPPOTorchRLModule
    from rllib_paper.training.loop import Trainer, train
    from rllib_paper.training.run_dir import latest_checkpoint

    run = tmp_path / "run"
    config = load_train_config(None, [*TINY_APPO, "stop={iterations: 2}", "checkpoint_every=1"])
    summary = train(config, run, quiet=True)
    assert summary["iterations"] == 2 and summary["env_steps"] >= 2 * 160
    rows = _rows(run / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl", "lr", "sample_steps_per_s", "runner_idle_fraction"):
        assert np.isfinite(float(rows[-1][key])), key
    assert 0 <= float(rows[-1]["runner_idle_fraction"]) < 1
    assert int(rows[-1]["episodes"]) > 0 and np.isfinite(float(rows[-1]["success_rolling"]))
    final = latest_checkpoint(run)
    assert final.name == "final"
    saved = RLModule.from_checkpoint(str(find_module_dir(final)))
    assert isinstance(saved, ResidualAPPOTorchRLModule)
    action = load_residual_policy(final)(np.zeros(31, dtype=np.float32))
    assert action.shape == (6,) and np.all(np.abs(action) <= 1) and np.any(action != 0)  # it trained

    resumed = load_train_config(run / "config.yaml", ["stop={iterations: 3}"])
    assert resumed.algorithm == "appo" and resumed.appo == config.appo
    trainer = Trainer(resumed, run, resume=True, quiet=True)
    try:
        algo = trainer.build()
        assert algo.iteration == 2 and type(algo).__name__ == "APPO"
        restored = algo.learner_group._learner.module["default_policy"].state_dict()
        for name, value in saved.state_dict().items():
            np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(value), err_msg=name)
        summary = trainer.run()
    finally:
        trainer.stop()
    assert summary["iterations"] == 3
    assert [int(r["iteration"]) for r in _rows(run / "metrics.csv")] == [1, 2, 3]


def test_appo_with_a_learner_actor_trains_asynchronously(ray_local, tmp_path):
    """num_learners=1: the learner (and its thread) in an actor taking the second CPU, the
    driver's updates asynchronous; the losses of an update arrive in a later iteration."""
    from rllib_paper.training.loop import train

    config = load_train_config(None, [*TINY_APPO, "learners.num_learners=1", "stop={iterations: 3}"])
    summary = train(config, tmp_path / "run", quiet=True)
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert summary["iterations"] == 3 and [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert np.isfinite(float(rows[-1]["policy_loss"])) and int(rows[-1]["episodes"]) > 0
