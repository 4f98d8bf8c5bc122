"""Ray Tune sweeps: bad YAML fails before anything starts, the smoke sweep completes with a
trials table and a held-out evaluation, and an interrupted sweep resumes keeping finished trials."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rllib_paper.config import ConfigError
from rllib_paper.pack import pack
from rllib_paper.tuning.config import load_sweep_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tune_configs" / "smoke.yaml"


def _write(tmp_path, name, **changes):
    data = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"serach": {}}, r"unknown key serach"),
        ({"search": {"ppo.lr": {"gaussian": [0, 1]}}}, r"search.ppo.lr: unknown distribution 'gaussian'"),
        ({"search": {"ppo.lr": {"uniform": [0.01, 0.001]}}}, r"search.ppo.lr.uniform=\[0.01, 0.001\]: low 0.01"),
        ({"search": {"ppo.lr": {"choice": []}}}, r"search.ppo.lr.choice=\[\]: expected a non-empty list"),
        ({"search": {"ppo.lr": {"loguniform": [0.0, 0.1]}}}, r"bounds must be > 0"),
        ({"search": {"ppo.num_epochs": {"randint": [1.5, 4]}}}, r"randint.*must be integers"),
        ({"search": {"ppo.lr": {"uniform": [0.5, 2.0]}}}, r"search space: ppo.lr=2.0: allowed range"),
        ({"search": {"ppo.lrr": {"choice": [0.1]}}}, r"search space: unknown key ppo.lrr"),
        ({"search": {"env.randomization.paper_x": {"choice": [[0.3, 0.2]]}}}, r"randomization.paper_x.*min 0.3"),
        ({"scheduler": {"type": "hyperband"}}, r"scheduler.type='hyperband'"),
        ({"metric": "succes"}, r"metric='succes'"),
        ({"scheduler": {"type": "pbt"}}, r"PBT can only mutate"),
        ({"eval": {"episodes": 0}}, r"eval.episodes=0"),
        ({"eval": {"settle_steps": -1}}, r"eval.settle_steps=-1: allowed range is \[0, 10000\]"),
    ],
)
def test_bad_sweep_yaml_fails_fast_naming_the_field(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(_write(tmp_path, "bad", **changes))


def test_shipped_sweeps_are_valid():
    for path in sorted((ROOT / "tune_configs").glob("*.yaml")):
        config = load_sweep_config(path)
        assert config.distributions(), path


def _tune_cmd(sweep, out, *extra):
    return [sys.executable, "-m", "rllib_paper.cli", "tune", str(sweep), "--out", str(out), *extra]


def test_smoke_sweep_completes_with_table_and_held_out_eval(tmp_path, short_tmp):
    smoke_eval = yaml.safe_load(SMOKE.read_text())["eval"]
    sweep = _write(tmp_path, "smoke", stop={"iterations": 2}, num_samples=1, eval={**smoke_eval, "settle_steps": 0})
    result = subprocess.run(
        _tune_cmd(sweep, tmp_path / "out"),
        cwd=ROOT,
        env={**os.environ, "RAY_TMPDIR": short_tmp},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert len(table) == 2 and set(table["status"]) == {"TERMINATED"}
    assert sorted(table["param.env.residual.scale"]) == [0.02, 0.05]  # the grid
    assert table["param.ppo.lr"].between(1e-4, 1e-3).all()
    assert (table["iterations"] == 2).all()
    assert (tmp_path / "out" / "trials.md").read_text().count("\n") == 4
    assert (tmp_path / "out" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # every trial's curve
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert summary["best_eval"]["complete"] and summary["best_eval"]["seeds"] == [5000, 5007]
    best_eval = tmp_path / "out" / "best_eval" / summary["best_eval"]["trial_id"]
    report = json.loads((best_eval / "report.json").read_text())
    assert report["episodes_done"] == 8 and report["config"]["checkpoint"] == str(best_eval / "checkpoint")
    assert report["config"]["env"]["task"]["settle_after_success_steps"] == 0  # eval.settle_steps reached it
    # Packed for results/: tables, the evaluation without its checkpoint copy, each trial's config and metrics.
    packed = tmp_path / "packed"
    pack(tmp_path / "out", packed)
    ids = set(table["trial_id"])
    assert {p.name for p in (packed / "trial_runs").iterdir()} == ids
    assert all((packed / "trial_runs" / i / name).is_file() for i in ids for name in ("config.yaml", "metrics.csv"))
    assert set(pd.read_parquet(packed / "trials.parquet")["run_dir"]) == {f"{packed}/trial_runs/{i}" for i in ids}
    assert (packed / "best_eval" / summary["best_eval"]["trial_id"] / "report.json").is_file()
    assert not [p for p in packed.rglob("*") if p.name in ("checkpoint", "tune") or "shards" in p.parts]


def test_interrupted_sweep_resumes_and_keeps_finished_trials(tmp_path, short_tmp):
    sweep = _write(tmp_path, "resume", stop={"iterations": 3}, num_samples=1, max_concurrent_trials=1)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_TMPDIR": short_tmp}
    proc = subprocess.Popen(_tune_cmd(sweep, out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            trials = sorted((out / "tune").glob("_trial_*")) if (out / "tune").is_dir() else []
            if len(trials) == 2 and (trials[1] / "progress.csv").is_file():
                break  # the first trial finished and the second reported an iteration
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("the sweep did not reach its second trial")
        proc.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves the experiment state and stops
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first = sorted((out / "tune").glob("_trial_*"))[0]
    first_rows = pd.read_csv(first / "progress.csv")
    assert len(first_rows) == 3

    result = subprocess.run(
        _tune_cmd(sweep, out, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    table = pd.read_parquet(out / "trials.parquet")
    assert len(table) == 2 and (table["iterations"] == 3).all()
    # The finished trial was not rerun: its history is what it was before the interruption.
    pd.testing.assert_frame_equal(pd.read_csv(first / "progress.csv"), first_rows)


def test_factor_effects_pool_each_value_and_pair_trials_that_differ_in_one_key(tmp_path):
    """A 2 x 2 grid: per value of each key the four trials' episodes pooled; the paired test
    matches each trial with the one differing only in that key, seed by seed."""
    from rllib_paper.tuning.effects import factor_effects, format_effects, write_effects

    seeds = list(range(10))
    table = pd.DataFrame(
        {
            "trial_id": ["t0", "t1", "t2", "t3"],
            "param.env.residual.scale": [0.05, 0.05, 0.1, 0.1],
            "param.env.residual.observe": ["[]", '["pad_force"]', "[]", '["pad_force"]'],
        }
    )
    # scale 0.1 succeeds on 3 more seeds than 0.05 in both pairs; observe changes nothing
    wins = {"t0": set(range(4)), "t1": set(range(4)), "t2": set(range(7)), "t3": set(range(7))}
    episodes = {t: pd.DataFrame({"seed": seeds, "success": [s in won for s in seeds]}) for t, won in wins.items()}
    effects = {e["key"]: e for e in factor_effects(table, episodes)}
    scale = effects["env.residual.scale"]
    assert [(lv["value"], lv["trials"], lv["successes"], lv["episodes"]) for lv in scale["levels"]] == [
        (0.05, 2, 8, 20),
        (0.1, 2, 14, 20),
    ]
    paired = scale["paired"]
    assert paired["pairs"] == 2 and paired["table"] == {"both": 8, "only_a": 0, "only_b": 6, "neither": 6}
    assert paired["difference"] == pytest.approx(0.3) and paired["mcnemar_exact_p"] == pytest.approx(2 / 64)
    observe = effects["env.residual.observe"]["paired"]
    assert observe["difference"] == 0 and observe["mcnemar_exact_p"] == 1.0
    assert "+30.0 points over 20 paired episodes" in format_effects(list(effects.values()))
    # From a sweep directory, as `rllib-paper tune` writes it
    table.to_parquet(tmp_path / "trials.parquet")
    for trial, frame in episodes.items():
        (tmp_path / "trial_evals" / trial).mkdir(parents=True)
        frame.to_parquet(tmp_path / "trial_evals" / trial / "episodes.parquet")
    search = {"env.residual.observe": {"grid": [["pad_force"], []]}}  # the sweep file's order: reference first
    (tmp_path / "sweep_config.json").write_text(json.dumps({"search": search}))
    written = write_effects(tmp_path)
    assert written == json.loads((tmp_path / "effects.json").read_text())
    assert [lv["value"] for lv in written[1]["levels"]] == ['["pad_force"]', "[]"]
    assert (tmp_path / "effects.md").read_text().count("\n") == 6
