"""Residual PPO training: config validation, the residual starting as the base, a short run on
local Ray, kill-and-resume, and env runners placed on two nodes of a Ray cluster."""

import contextlib
import csv
import json
import os
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


# ---------------------------------------------------------------------------- kill and resume
def _train_cmd(out, *extra):
    sets = [a for item in TINY for a in ("--set", item)]
    return [sys.executable, "-m", "rllib_paper.cli", "train", *sets, *extra, "--out", str(out), "--quiet"]


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
        assert learner.get_optimizer().state_dict()["state"], "Adam moments were not restored"
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
    iteration 0, so the logged rows must go (they used to stay, giving iterations 1, 1, 2, 3)."""
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
    assert residual["results"]["means"]["residual_abs_mean"]["mean"] >= 0
    # Evaluation judges a success that holds; training ended at the first success.
    assert residual["config"]["env"]["task"]["settle_after_success_steps"] == 30
    assert config.train.env.task.settle_after_success_steps == 0
    assert (tmp_path / "exp" / "comparison.png").is_file()
    assert (tmp_path / "exp" / "eval_base" / "report.html").is_file()
    # Rerunning resumes: nothing is trained or evaluated again, the result is the same.
    again = run_experiment(config)
    assert again["paired_table"] == result["paired_table"] and again["training"] == result["training"]
