"""The console entry point: subcommands run and end with one JSON line."""

import json
import os

import pytest

from rllib_paper.cli import main


def test_rollout_prints_rate_and_json(capsys, tmp_path):
    out = tmp_path / "episodes.json"
    assert (
        main(
            [
                "rollout",
                "--policy",
                "zero",
                "--episodes",
                "2",
                "--seed",
                "0",
                "--dr",
                "phase2",
                "--quiet",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert "Wilson CI" in lines[-2]
    summary = json.loads(lines[-1])
    assert summary["episodes"] == 2 and summary["successes"] == 0
    saved = json.loads(out.read_text())
    assert [e["seed"] for e in saved["episodes"]] == [0, 1]


def test_bad_input_is_one_clear_error(capsys):
    assert main(["rollout", "--policy", "nonsense", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "residual.base_policy='nonsense': unknown kind 'nonsense'; allowed:" in err


def test_bench_env_last_line_is_json(capsys):
    assert main(["bench", "env", "--steps", "20", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["bench"] == "env" and result["substeps"] == 33
    assert result["fingertip_paper_contacts"] >= 1  # the benchmark really measures a pressing fingertip
    assert result["ratio_zero_residual"] > 0 and result["ratio_random_residual"] > 0


def test_bench_pusher_last_line_is_json(capsys):
    assert main(["bench", "pusher", "--episodes", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["bench"] == "pusher" and result["control_steps"] > 0
    assert 0 < result["pusher_to_env_step_ratio"] < 1


def test_bench_eval_pools_alternating_rounds_and_prints_json_last(ray_local, capsys):
    assert main(["bench", "eval", "--episodes", "2", "--rounds", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["bench"] == "eval" and result["episodes"] == 2 and len(result["ratio_per_round"]) == 2
    assert result["episodes_per_s_1_worker"] > 0 and result["episodes_per_s_2_workers"] > 0
    assert result["ratio_2_vs_1"] == pytest.approx(
        result["episodes_per_s_2_workers"] / result["episodes_per_s_1_worker"], abs=1e-3
    )
    assert "2 episodes x 2 rounds, ratio by round:" in lines[0]


def test_bench_eval_rejects_bad_arguments():
    from rllib_paper.bench.eval import run

    with pytest.raises(ValueError, match="rounds=0, allowed >= 1"):
        run(episodes=4, rounds=0)


def test_a_local_ray_without_auth_beyond_loopback_gets_one_warning_line(short_tmp):
    """Ray's token auth is on by default for local clusters; with it disabled by the user and the
    node reachable beyond loopback, starting Ray prints one warning line naming the node address."""
    import subprocess
    import sys

    from rllib_paper.runtime.ray_start import exposure_warning

    assert exposure_warning(None, "10.0.0.5") is None and exposure_warning("token", "10.0.0.5") is None
    assert exposure_warning("disabled", "127.0.0.1") is None
    assert "node 10.0.0.5" in exposure_warning("disabled", "10.0.0.5")
    script = (
        "import ray, os; from rllib_paper.runtime.ray_start import start_ray; "
        f"start_ray(num_cpus=1, _temp_dir={short_tmp!r}); "
        "print('MODE', os.environ.get('RAY_AUTH_MODE')); ray.shutdown()"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    default = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "warning: RAY_AUTH_MODE=disabled" not in default.stderr and "MODE token" in default.stdout
    disabled = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in disabled.stderr.splitlines() if "RAY_AUTH_MODE=disabled" in line]
    assert len(lines) == 1 and "listens on all interfaces" in lines[0], disabled.stderr[-2000:]
