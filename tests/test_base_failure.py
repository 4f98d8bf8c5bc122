"""A base policy that fails is a failed run, not a bad policy (issue 22 item 1).

An unreachable server is refused by a ping before Ray or any episode starts (eval, rollout,
train, experiment); an episode whose base failed mid-run is recorded with the error, left
out of the success rate, listed in the report (marked incomplete), rerun by --resume, and
the command exits 3 with one sentence naming the server; a training iteration with such an
episode stops the run without saving it.
"""

import dataclasses
import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rllib_paper.cli import main
from rllib_paper.config import coerce_env_config
from rllib_paper.envs.paper_env import REWARD_TERMS
from rllib_paper.evaluation.distributed import EvalConfig, Evaluator, _episode_row, _shard_name
from rllib_paper.evaluation.episodes import EpisodeRunner
from rllib_paper.evaluation.report import format_summary
from rllib_paper.policies.groot.config import load_mapping
from rllib_paper.policies.groot.server import PolicyServer

SMALL = {"image_size": (48, 64), "render_shadows": False, "render_samples": 0, "sim_state_key": "state.sim"}
TIMEOUT = 0.5
ONE_EVAL = ["--episodes", "1", "--workers", "1", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mapping(tmp_path) -> Path:
    """The so100_dualcam mapping with small frames (cheap to render), as a file a spec names."""
    import yaml

    from rllib_paper.policies.groot.config import CONFIG_DIR

    data = yaml.safe_load((CONFIG_DIR / "so100_dualcam.yaml").read_text())
    data.update({k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()})
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _spec(port: int, mapping: Path, timeout: float = TIMEOUT, **options: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"groot:tcp://127.0.0.1:{port}?config={mapping}&timeout={timeout:g}{extra}"


def _server(port: int = 0, **kw) -> tuple[PolicyServer, object, int]:
    srv = PolicyServer("zero", load_mapping("so100_dualcam").replace(**SMALL), port=port, **kw)
    bound = srv.bind()
    return srv, srv.start_thread(), bound


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rllib-paper:")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------- start-up ping
def test_ping_goes_through_the_registry_and_the_actor_wrapper(mapping):
    from rllib_paper.policies.base import BasePolicyFailed
    from rllib_paper.policies.registry import ping_base_policy

    dead = _free_port()
    for spec in (_spec(dead, mapping), f"actor:{_spec(dead, mapping)}#num_gpus=0"):
        start = time.monotonic()
        with pytest.raises(BasePolicyFailed, match=rf"groot:tcp://127\.0\.0\.1:{dead} is unreachable.*within 0\.5 s"):
            ping_base_policy(spec)
        assert time.monotonic() - start < 2
    for spec in ("scripted", "zero", f"groot-local:/no/model?config={mapping}"):
        ping_base_policy(spec)  # nothing to reach
    srv, thread, port = _server(api_token="secret")
    try:
        ping_base_policy(_spec(port, mapping, token="secret"))
        with pytest.raises(BasePolicyFailed, match=rf"groot:tcp://127\.0\.0\.1:{port} refused a ping.*token"):
            ping_base_policy(_spec(port, mapping, token="wrong"))
    finally:
        srv.stop()
        thread.join(5)


def test_eval_refuses_an_unreachable_server_before_any_episode(mapping, tmp_path, capsys):
    """The reproduction of item 1: before, it exited 0 with "complete": true and 0 % success."""
    port, out = _free_port(), tmp_path / "eval"
    argv = ["eval", "--policy", _spec(port, mapping), "--episodes", "2", "--workers", "1", "--out", str(out)]
    start = time.monotonic()
    rc = main([*argv, "--no-progress"])
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    assert rc == 3, captured.out[-800:]
    line = _one_line(captured.err)
    assert elapsed < TIMEOUT + 3  # the ping's timeout, no Ray start-up, no episode
    assert f"base policy groot:tcp://127.0.0.1:{port} is unreachable" in line and "nothing was run" in line
    assert "token" not in line and "config=" not in line  # the address, not the whole spec
    assert not (out / "report.json").exists() and not list(out.glob("shards/*.parquet"))


@pytest.mark.parametrize("command", ["rollout", "train", "experiment"])
def test_rollout_train_and_experiment_refuse_an_unreachable_server(command, mapping, tmp_path, capsys):
    port, out = _free_port(), tmp_path / command
    spec = _spec(port, mapping)
    tiny = ["ppo.train_batch_size=20", "ppo.minibatch_size=10", "ppo.num_epochs=1", "ppo.hiddens=[8]"]
    tiny += ["env_runners.num_env_runners=0", "learners.torch_threads=1", "stop={iterations: 1}"]
    sets = [a for item in tiny for a in ("--set", item)]
    argv = {
        "rollout": ["rollout", "--policy", spec, "--episodes", "2", "--max-steps", "10", "--json", str(out)],
        "train": ["train", "--policy", spec, "--max-steps", "10", *sets, "--out", str(out), "--quiet"],
        "experiment": ["experiment", "--policy", spec, "--max-steps", "10", *sets, "--out", str(out), *ONE_EVAL],
    }[command]
    import ray

    ray_was_up = ray.is_initialized()
    start = time.monotonic()
    rc = main(argv)
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    assert rc == 3, captured.out[-800:]
    line = _one_line(captured.err)
    assert elapsed < TIMEOUT + 20  # the ping's timeout and the imports (torch, RLlib) of a first call
    assert ray.is_initialized() == ray_was_up  # refused before Ray started
    assert f"groot:tcp://127.0.0.1:{port} is unreachable" in line
    if command == "rollout":
        assert not out.exists()  # no --json file
    else:  # nothing trained or evaluated
        assert not any(out.rglob("*checkpoint*")) and not any(out.rglob("*.parquet"))


# ---------------------------------------------------------------------------- per-episode records
def test_failed_base_episodes_reach_the_record_the_table_and_the_report(mapping, tmp_path, capsys, monkeypatch):
    from rllib_paper.envs.residual import ResidualPaperEnv

    port = _free_port()
    spec = _spec(port, mapping, timeout=0.3)
    env_config = coerce_env_config({"task": {"max_steps": 10}, "residual": {"base_policy": spec}})
    env = ResidualPaperEnv(env_config)
    env.reset(seed=1)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert terminated and info["episode_summary"]["base_policy_error"].startswith("GrootTimeout")
    env.close()

    record = EpisodeRunner(env_config).run(1)  # the server never answered: the episode ends at once
    assert record.base_policy_failed and record.base_policy_error.startswith("GrootTimeout: GR00T server at")
    assert record.to_dict()["base_policy_failed"] is True

    # A run where seed 0 had a result and seed 1's base failed; seed 2 never ran.
    out = tmp_path / "eval"
    (out / "shards").mkdir(parents=True)
    failed = _episode_row(record, "node", 1)
    good = {**failed, "seed": 0, "base_policy_failed": False, "base_policy_error": None, "success": True}
    pd.DataFrame([good, failed]).to_parquet(out / "shards" / _shard_name([0, 1]), index=False)
    config = EvalConfig(env=env_config, episodes=3, seed=0, workers=1, out=str(out), progress=False)
    report = Evaluator(config).finalize(config.seeds())

    table = pd.read_parquet(out / "episodes.parquet")
    assert table["base_policy_failed"].tolist() == [False, True]
    assert table["base_policy_error"].iloc[1].startswith("GrootTimeout") and pd.isna(table["base_policy_error"].iloc[0])
    assert report["complete"] is False and report["episodes_done"] == 1 and report["missing_seeds"] == [2]
    assert report["base_policy_failures"]["count"] == 1
    assert report["base_policy_failures"]["episodes"][0]["seed"] == 1
    assert report["base_policy_failures"]["episodes"][0]["error"].startswith("GrootTimeout")
    assert report["results"]["episodes"] == 1 and report["results"]["success"]["rate"] == 1.0  # seed 0 alone
    saved = json.loads((out / "report.json").read_text())
    assert saved["base_policy_failures"] == report["base_policy_failures"]
    assert "base policy failed on 1 episodes" in (out / "summary.md").read_text()
    text = format_summary(report)
    assert "INCOMPLETE (1/3 episodes with results; base policy failed on 1)" in text and "seed 1: GrootTimeout" in text

    from rllib_paper.evaluation.distributed import raise_for_base_failures

    with pytest.raises(ConnectionError) as caught:  # BasePolicyFailed: the CLI exits 3
        raise_for_base_failures(report, out)
    assert type(caught.value).__name__ == "BasePolicyFailed"
    message = str(caught.value)
    assert message.startswith(f"base policy groot:tcp://127.0.0.1:{port} failed on 1 of 2 episodes run (seed 1): ")
    assert "GrootTimeout" in message and "marked incomplete" in message and "the evaluation stopped" in message

    # The eval command prints the report, then exits 3 with that sentence.
    import rllib_paper.evaluation.distributed as distributed

    monkeypatch.setattr(distributed, "evaluate", lambda config: report)
    rc = main(["eval", "--policy", spec, "--max-steps", "10", "--episodes", "3", "--out", str(tmp_path / "x")])
    captured = capsys.readouterr()
    assert rc == 3 and _one_line(captured.err) == f"rllib-paper: {message.replace(str(out), str(tmp_path / 'x'))}"
    assert '"complete": false' in captured.out and '"base_policy_failed": 1' in captured.out


def test_rollout_whose_server_dies_records_the_failure_and_exits_3(mapping, tmp_path, capsys, monkeypatch):
    import rllib_paper.policies.registry as registry

    monkeypatch.setattr(registry, "ping_base_policy", lambda spec: None, raising=False)  # it answered, then died
    port, path = _free_port(), tmp_path / "rollout.json"
    argv = ["rollout", "--policy", _spec(port, mapping, timeout=0.3), "--episodes", "3", "--max-steps", "10"]
    rc = main([*argv, "--json", str(path), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 3, captured.out[-800:]
    line = _one_line(captured.err)
    assert f"base policy groot:tcp://127.0.0.1:{port} failed on 1 of 1 episodes run (seed 0): GrootTimeout" in line
    assert "no episode has a result (1 excluded: base policy failed)" in captured.out
    saved = json.loads(path.read_text())
    assert saved["summary"]["base_policy_failed"] == 1 and saved["summary"]["complete"] is False
    assert saved["summary"]["success_rate"] is None and saved["summary"]["episodes"] == 0
    assert saved["summary"]["base_policy_failures"][0]["error"].startswith("GrootTimeout")
    assert [e["base_policy_failed"] for e in saved["episodes"]] == [True]  # it stopped there


# ---------------------------------------------------------------------------- a server that dies mid-run
def test_eval_whose_server_dies_mid_run_lists_the_episodes_and_resume_reruns_them(ray_local, mapping, tmp_path):
    srv, thread, port = _server()
    env = coerce_env_config({"task": {"max_steps": 12}, "residual": {"base_policy": _spec(port, mapping)}})
    config = EvalConfig(env=env, episodes=4, seed=0, workers=1, shard_size=1, out=str(tmp_path / "e"), progress=False)

    def kill_after_first(done, total):
        if done == 1:
            srv.stop()
            thread.join(5)

    report = Evaluator(config, on_shard_done=kill_after_first).run()
    assert report["complete"] is False
    assert report["episodes_done"] == 1 and report["results"]["episodes"] == 1
    assert report["base_policy_failures"]["count"] == 1 and report["base_policy_failures"]["episodes"][0]["seed"] == 1
    assert report["missing_seeds"] == [2, 3]  # no shard was started after the failure
    table = pd.read_parquet(tmp_path / "e" / "episodes.parquet")
    assert table["seed"].tolist() == [0, 1] and table["base_policy_failed"].tolist() == [False, True]
    from rllib_paper.evaluation.distributed import raise_for_base_failures

    with pytest.raises(ConnectionError, match=rf"groot:tcp://127\.0\.0\.1:{port} failed on 1 of 2 episodes run"):
        raise_for_base_failures(report, config.out)

    srv, thread, _ = _server(port)  # the server is back: --resume reruns the failed episode too
    try:
        resumed = Evaluator(dataclasses.replace(config, resume=True))
        report = resumed.run()
    finally:
        srv.stop()
        thread.join(5)
    assert resumed.episodes_run == 3
    assert report["complete"] is True and report["episodes_done"] == 4
    assert report["base_policy_failures"] == {"count": 0, "episodes": []}
    table = pd.read_parquet(tmp_path / "e" / "episodes.parquet")
    assert table["seed"].tolist() == [0, 1, 2, 3] and not table["base_policy_failed"].any()


# ---------------------------------------------------------------------------- training
class _FakeAlgo:
    """The few Algorithm members the Trainer loop uses; each train() returns the next result."""

    def __init__(self, results):
        self.results = iter(results)
        self.iteration = 0

    def train(self):
        self.iteration += 1
        return next(self.results)

    def save_to_path(self, path):
        Path(path).mkdir(parents=True)
        (Path(path) / "weights").write_text(str(self.iteration))

    def stop(self):
        pass


def _episode(failed: bool = False) -> dict:
    return {
        "success": not failed,
        "length": 10,
        "return": 1.0,
        "residual_abs_mean": 0.0,
        "final_distance": 0.01,
        "final_yaw_error": 0.0,
        "sim_unstable": False,
        "base_policy_failed": failed,
        "base_policy_error": "GrootTimeout: no answer" if failed else None,
        "node_id": "n",
        **{f"reward_{t}": 0.0 for t in REWARD_TERMS},
    }


def test_an_iteration_with_a_failed_base_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    from rllib_paper.training.config import load_train_config
    from rllib_paper.training.loop import Trainer

    spec = "groot:tcp://127.0.0.1:5599?config=so100_dualcam&timeout=2"
    config = load_train_config(
        None, [f"env.residual.base_policy={json.dumps(spec)}", "checkpoint_every=1", "success_window=1"]
    )
    out = tmp_path / "run"
    out.mkdir()
    trainer = Trainer(config, out, quiet=True)
    results = [
        {"env_runners": {"task_episodes": eps, "num_env_steps_sampled": 20}}
        for eps in (
            [_episode(), _episode()],
            [_episode(), _episode(failed=True)],
            [_episode()],
        )
    ]
    trainer.algo = _FakeAlgo(results)
    with pytest.raises(ConnectionError) as caught:  # BasePolicyFailed: the CLI exits 3
        trainer.run()
    assert type(caught.value).__name__ == "BasePolicyFailed"
    message = str(caught.value)
    assert message.startswith(
        "base policy groot:tcp://127.0.0.1:5599 failed on 1 of 2 training episodes in iteration 2: GrootTimeout"
    )
    assert "training stopped and that iteration was not saved" in message and "iter_000001" in message
    checkpoints = out / "checkpoints"
    assert json.loads((checkpoints / "latest.json").read_text())["name"] == "iter_000001"
    assert json.loads((checkpoints / "best.json").read_text())["iteration"] == 1
    assert (checkpoints / "best" / "weights").read_text() == "1"
    assert not (checkpoints / "iter_000002").exists() and not (checkpoints / "final").exists()
    assert not (out / "summary.json").exists()
    assert trainer.metrics.rows[-1]["base_policy_failed"] == 1
    assert trainer.metrics.rows[-1]["success_rate"] == 1.0  # the failed episode is no result
