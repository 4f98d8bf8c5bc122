"""Committed reports stay reproducible: their base episodes replay exactly from their spec.

The pusher changed after the headline experiment (the far-sheet detour rule); its base is
pinned as ``scripted?max_turn_detour=3.1416``. If a pusher edit silently changed either base,
every committed comparison would stop describing the code, and this test says so.
"""

import json
import math
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from rllib_paper.evaluation.episodes import run_episode
from rllib_paper.evaluation.report import mcnemar

RESULTS = Path(__file__).resolve().parents[1] / "results"
REPORTS = {
    "scripted?max_turn_detour=3.1416": RESULTS / "experiment_scripted_phase2_anneal/eval_base/episodes.parquet",
    "scripted": RESULTS / "eval_scripted_phase2/episodes.parquet",
}
SEEDS = (1001, 1029)  # seeds on which the two pushers' committed episodes differ


def _rows(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).set_index("seed")


def test_the_chosen_seeds_tell_the_two_pushers_apart():
    before, after = (_rows(path).loc[list(SEEDS), ["success", "steps"]] for path in REPORTS.values())
    assert not before.equals(after)


@pytest.mark.parametrize("spec", sorted(REPORTS))
@pytest.mark.parametrize("seed", SEEDS)
def test_committed_base_episodes_replay_exactly(spec, seed):
    row = _rows(REPORTS[spec]).loc[seed]
    record = run_episode({"randomization": "phase2"}, spec, seed)
    assert (record.success, record.steps) == (bool(row.success), int(row.steps))
    assert record.final_distance == row.final_distance and record.final_yaw_error == row.final_yaw_error


def test_the_two_headline_training_seeds_were_scored_against_the_same_base_episodes():
    """The seed-0 and seed-1 experiments of docs/experiments.md each evaluated the base afresh; every episode
    field but the run's own bookkeeping (node, worker, wall time) must agree."""
    runtime = ["node_id", "worker_pid", "wall_seconds"]
    first, second = (
        _rows(RESULTS / name / "eval_base/episodes.parquet").drop(columns=runtime).sort_index()
        for name in ("experiment_scripted_phase2_anneal", "experiment_scripted_phase2_anneal_seed1")
    )
    assert len(first) == 200
    pd.testing.assert_frame_equal(first, second)


HEADLINE = RESULTS / "experiment_scripted_phase2_anneal/train/checkpoints/final"


def test_committed_checkpoints_record_the_base_they_were_trained_over():
    """Each committed checkpoint names its base with every pusher parameter at its value, so a
    later change of a default cannot change what the checkpoint corrects."""
    import dataclasses

    from rllib_paper.policies.scripted import PusherParams
    from rllib_paper.residual.checkpoint import read_trained_env

    expected = {
        "experiment_scripted_phase2_anneal": "scripted?max_turn_detour=3.1416",
        "experiment_scripted_phase2_anneal_seed1": "scripted?max_turn_detour=3.1416",
        "experiment_scripted_phase2_detour": "scripted",
        "experiment_zero_phase2": "zero",
    }
    for run, spec in expected.items():
        trained = read_trained_env(RESULTS / run / "train/checkpoints/final")
        assert trained.base_policy["spec"] == spec == trained.env["residual"]["base_policy"]
        assert trained.code["git_commit"]
        if spec.startswith("scripted"):
            params = trained.base_policy["params"]
            assert set(params) == {f.name for f in dataclasses.fields(PusherParams)}
            assert params["max_turn_detour"] == (3.1416 if "detour" in spec else PusherParams().max_turn_detour)


def test_evaluation_refuses_a_base_other_than_the_checkpoints_own(capsys, tmp_path):
    """The headline was trained over the pusher without its detour rule: evaluating it over
    today's default pusher is refused in the driver, before Ray starts, unless asked for."""
    import dataclasses

    from rllib_paper.cli import main
    from rllib_paper.config import ConfigError
    from rllib_paper.evaluation.distributed import EvalConfig, trained_env_config

    own = trained_env_config(str(HEADLINE))
    assert own.residual.base_policy == "scripted?max_turn_detour=3.1416" and own.residual.scale == 0.05
    EvalConfig(env=own, checkpoint=str(HEADLINE)).check()
    other = dataclasses.replace(own, residual=dataclasses.replace(own.residual, base_policy="scripted"))
    with pytest.raises(ConfigError, match=r"not the base .* max_turn_detour=3.1416 there, 1.2 here"):
        EvalConfig(env=other, checkpoint=str(HEADLINE)).check()
    EvalConfig(env=other, checkpoint=str(HEADLINE), allow_base_mismatch=True).check()
    # Behind an actor it is the same base; through the CLI the refusal is one line, exit 2.
    actor = dataclasses.replace(
        own, residual=dataclasses.replace(own.residual, base_policy=f"actor:{own.residual.base_policy}")
    )
    EvalConfig(env=actor, checkpoint=str(HEADLINE)).check()
    assert main(["eval", "--checkpoint", str(HEADLINE), "--policy", "scripted", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert "--allow-base-mismatch" in capsys.readouterr().err


def _pickled_modules(path: Path) -> set[str]:
    import pickletools

    names = set()
    for op, arg, _ in pickletools.genops(path.read_bytes()):
        text = str(arg) if arg is not None else ""
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE") and text.startswith("rllib_paper."):
            names.add(text)
        elif op.name == "GLOBAL" and text.startswith("rllib_paper."):
            names.add(text.split()[0])
    return names


def test_committed_checkpoints_name_only_modules_that_exist():
    """A checkpoint's pickles name our classes by module path: a module moved without rewriting
    the committed checkpoints would leave them unloadable (RLlib then builds a bare RLModule)."""
    import importlib

    pickles = list(RESULTS.rglob("checkpoints/*/**/*.pkl"))
    names = set().union(*(_pickled_modules(p) for p in pickles))
    assert "rllib_paper.residual.rl_module" in names
    for name in names:
        importlib.import_module(name)


def test_the_headline_checkpoint_loads_as_a_residual_policy():
    import numpy as np

    from rllib_paper.residual.checkpoint import load_residual_policy
    from rllib_paper.sim.observation import RESIDUAL_OBS_DIM

    act = load_residual_policy(HEADLINE)
    out = act(np.zeros(RESIDUAL_OBS_DIM, dtype=np.float32))
    assert out.shape == (6,) and np.isfinite(out).all() and np.abs(out).max() > 0


# Every committed paired comparison and the two evaluations it compared (results/-relative).
# The entropy runs evaluated no base of their own: they were compared with the first run's.
HEADLINE_BASE = "experiment_scripted_phase2/eval_base"
COMPARISONS = {
    "experiment_fast16_phase2_paired_seed1/comparison.json": (
        "experiment_fast16_phase2_paired_seed1/eval_base",
        "experiment_fast16_phase2_paired_seed1/eval_residual",
    ),
    "experiment_fast16_phase2_paired_seed0/comparison.json": (
        "experiment_fast16_phase2_paired_seed0/eval_base",
        "experiment_fast16_phase2_paired_seed0/eval_residual",
    ),
    "experiment_fast_phase2_paired_seed1/comparison.json": (
        "experiment_fast_phase2_paired_seed1/eval_base",
        "experiment_fast_phase2_paired_seed1/eval_residual",
    ),
    "experiment_scripted_phase2_paired_seed0/comparison.json": (
        "experiment_scripted_phase2_paired_seed0/eval_base",
        "experiment_scripted_phase2_paired_seed0/eval_residual",
    ),
    "experiment_fast_phase2_paired_seed0/comparison.json": (
        "experiment_fast_phase2_paired_seed0/eval_base",
        "experiment_fast_phase2_paired_seed0/eval_residual",
    ),
    "experiment_bc_phase2_settle_scale005_dev/heldout/comparison.json": (
        "experiment_bc_phase2_first_crossing/eval_base",
        "experiment_bc_phase2_settle_scale005_dev/heldout/eval_residual",
    ),
    "compare_zero_vs_scripted_phase2.json": ("eval_zero_phase2", "eval_scripted_phase2"),
    "experiment_scripted_phase2/comparison.json": (HEADLINE_BASE, "experiment_scripted_phase2/eval_residual"),
    "experiment_scripted_phase2/comparison_best.json": (
        HEADLINE_BASE,
        "experiment_scripted_phase2/eval_residual_best",
    ),
    "experiment_scripted_phase2_anneal/comparison.json": (
        "experiment_scripted_phase2_anneal/eval_base",
        "experiment_scripted_phase2_anneal/eval_residual",
    ),
    "experiment_scripted_phase2_anneal_seed1/comparison.json": (
        "experiment_scripted_phase2_anneal_seed1/eval_base",
        "experiment_scripted_phase2_anneal_seed1/eval_residual",
    ),
    "experiment_scripted_phase2_anneal_seed1/compare_residual_seed0_vs_seed1.json": (
        "experiment_scripted_phase2_anneal/eval_residual",
        "experiment_scripted_phase2_anneal_seed1/eval_residual",
    ),
    "experiment_detour_scale01_contact_dev/comparison.json": (
        "experiment_detour_scale01_contact_dev/eval_base",
        "experiment_detour_scale01_contact_dev/eval_residual",
    ),
    "experiment_fast_phase2_streams_seed0/comparison.json": (
        "experiment_fast_phase2_streams_seed0/eval_base",
        "experiment_fast_phase2_streams_seed0/eval_residual",
    ),
    "experiment_fast_phase2_sep_seed0/comparison.json": (
        "experiment_fast_phase2_sep_seed0/eval_base",
        "experiment_fast_phase2_sep_seed0/eval_residual",
    ),
    "experiment_w128_phase2_seed0/comparison.json": (
        "experiment_w128_phase2_seed0/eval_base",
        "experiment_w128_phase2_seed0/eval_residual",
    ),
    "experiment_scripted_phase2_defaults_seed0/comparison.json": (
        "experiment_scripted_phase2_defaults_seed0/eval_base",
        "experiment_scripted_phase2_defaults_seed0/eval_residual",
    ),
    "experiment_scripted_phase2_rerun/comparison.json": (
        "experiment_scripted_phase2_rerun/eval_base",
        "experiment_scripted_phase2_rerun/eval_residual",
    ),
    "experiment_scripted_phase2_detour/comparison.json": (
        "experiment_scripted_phase2_detour/eval_base",
        "experiment_scripted_phase2_detour/eval_residual",
    ),
    "experiment_scripted_phase2_entropy0/comparison.json": (
        HEADLINE_BASE,
        "experiment_scripted_phase2_entropy0/eval_residual",
    ),
    "experiment_scripted_phase2_entropy_decay/comparison.json": (
        HEADLINE_BASE,
        "experiment_scripted_phase2_entropy_decay/eval_residual",
    ),
    "experiment_zero_phase2/comparison.json": (
        "experiment_zero_phase2/eval_base",
        "experiment_zero_phase2/eval_residual",
    ),
    "experiment_scripted_phase2_anneal/comparison_settle.json": (
        "experiment_scripted_phase2_anneal/eval_base_settle",
        "experiment_scripted_phase2_anneal/eval_residual_settle",
    ),
    "experiment_fast_phase2_seed0/comparison.json": (
        "experiment_fast_phase2_seed0/eval_base",
        "experiment_fast_phase2_seed0/eval_residual",
    ),
    "experiment_fast_phase2_seed1/comparison.json": (
        "experiment_fast_phase2_seed1/eval_base",
        "experiment_fast_phase2_seed1/eval_residual",
    ),
    "experiment_bc_phase2_first_crossing/comparison.json": (
        "experiment_bc_phase2_first_crossing/eval_base",
        "experiment_bc_phase2_first_crossing/eval_residual",
    ),
    "experiment_bc_phase2_settle_dev/comparison.json": (
        "experiment_bc_phase2_settle_dev/eval_base",
        "experiment_bc_phase2_settle_dev/eval_residual",
    ),
    "experiment_bc_phase2_settle_scale005_dev/comparison.json": (
        "experiment_bc_phase2_settle_scale005_dev/eval_base",
        "experiment_bc_phase2_settle_scale005_dev/eval_residual",
    ),
}


def _exact_mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar: twice the smaller binomial tail of the discordant pairs at 1/2."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def test_every_committed_comparison_is_checked():
    found = {p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*.json") if p.name.startswith("compar")}
    assert found == set(COMPARISONS)


@pytest.mark.parametrize("name", sorted(COMPARISONS))
def test_committed_mcnemar_p_is_recomputed_from_the_committed_tables(name):
    committed = json.loads((RESULTS / name).read_text())
    a, b = (pd.read_parquet(RESULTS / d / "episodes.parquet")[["seed", "success"]] for d in COMPARISONS[name])
    assert a["seed"].is_unique and b["seed"].is_unique and set(a["seed"]) == set(b["seed"])
    pairs = dict(zip(a["seed"], a["success"].astype(bool), strict=True))
    counts = {"both": 0, "only_a": 0, "only_b": 0, "neither": 0}
    for seed, success_b in zip(b["seed"], b["success"].astype(bool), strict=True):
        success_a = pairs[seed]
        key = "both" if success_a and success_b else "only_a" if success_a else "only_b" if success_b else "neither"
        counts[key] += 1
    assert committed["episodes"] == len(a) and committed["table"] == counts
    p_value = _exact_mcnemar_p(counts["only_a"], counts["only_b"])
    assert committed["mcnemar_exact_p"] == pytest.approx(p_value, rel=1e-9)
    recomputed = mcnemar(a, b)  # today's code gives the committed answer too
    assert recomputed["table"] == counts and recomputed["mcnemar_exact_p"] == pytest.approx(p_value, rel=1e-9)
    for side, frame in (("success_a", a), ("success_b", b)):
        successes = int(frame["success"].sum())
        assert committed[side]["successes"] == successes and committed[side]["episodes"] == len(frame)
    # The experiment summary beside a comparison quotes the same test.
    summary = RESULTS / name.rsplit("/", 1)[0] / "experiment.json"
    if name.endswith("/comparison.json") and summary.is_file():
        experiment = json.loads(summary.read_text())
        assert experiment["paired_table"] == counts and experiment["mcnemar_exact_p"] == committed["mcnemar_exact_p"]


def test_the_committed_demonstration_sample_replays_exactly():
    """The BC base's data is reproducible from the code: its committed episode replays bit for bit."""
    from rllib_paper.datasets.replay import replay_episode

    result = replay_episode(RESULTS / "demos_phase2_noise01/sample_episode0", 0)
    assert result.seed == 500 and result.exact is True and result.inside_frame_at_end


def test_the_committed_bc_base_is_the_one_residual_bc_trains_over():
    from rllib_paper.policies.registry import resolve_base_policy
    from rllib_paper.training.config import load_train_config

    spec = load_train_config("residual_bc").env.residual.base_policy
    record = resolve_base_policy(spec)
    assert record["params"]["dataset"]["path"] == "runs/demos_phase2_noise01"
    assert record["params"]["network"]["chunk_length"] == 16 and record["params"]["network"]["execution_horizon"] == 8


@pytest.mark.parametrize("name", ["sweep_grip_and_authority", "sweep_authority_width_contact"])
def test_the_committed_sweep_effects_are_recomputed_from_its_trial_evaluations(tmp_path, name):
    import shutil

    from rllib_paper.tuning.effects import write_effects

    sweep = RESULTS / name
    shutil.copytree(sweep, tmp_path / "sweep", ignore=shutil.ignore_patterns("*.html", "*.png"))
    assert write_effects(tmp_path / "sweep") == json.loads((sweep / "effects.json").read_text())
    scale = next(e for e in json.loads((sweep / "effects.json").read_text()) if e["key"] == "env.residual.scale")
    assert scale["paired"]["pairs"] == 4 and scale["paired"]["episodes"] == 800
