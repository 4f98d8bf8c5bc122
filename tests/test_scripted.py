"""The scripted pusher: solves easy seeds, deterministic, graceful on the hardest DR draws."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from rllib_paper.config import DR_PRESETS, ConfigError, RandomizationConfig, coerce_env_config
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.evaluation.episodes import EpisodeRunner, run_episode
from rllib_paper.policies.base import BasePolicy
from rllib_paper.policies.registry import make_base_policy
from rllib_paper.policies.scripted import ScriptedPusher
from rllib_paper.sim.scene import BIT_ARM
from rllib_paper.sim.task import wrap_angle, wrap_half_turn

EASY_PHASE1_SEEDS = (29, 32, 24)  # dev seeds the pusher solves in under 150 steps


def test_pusher_implements_the_protocol():
    config = coerce_env_config(None, dr="phase1")
    policy = make_base_policy("scripted", config)
    assert isinstance(policy, ScriptedPusher) and isinstance(policy, BasePolicy)
    env = ResidualPaperEnv(config)
    env.reset(seed=0)
    batch = {"state": np.stack([env.env.state] * 2), "target": np.stack([env.env.current_target] * 2)}
    chunk = policy.act(batch)
    assert chunk.shape == (2, policy.chunk_length, 6) and np.isfinite(chunk).all()


@pytest.mark.parametrize("seed", EASY_PHASE1_SEEDS)
def test_pusher_succeeds_on_easy_seeds(seed):
    record = run_episode({"randomization": "phase1"}, "scripted", seed)
    assert record.success and record.success_step == record.steps < 200
    assert record.final_corner_excess_mm == 0.0 and not record.sim_unstable


def test_pusher_parameters_come_from_the_spec():
    config = coerce_env_config(None, dr="phase1")
    tuned = make_base_policy("scripted?hover_height=0.035&max_turn_steps=30", config)
    assert tuned.params.hover_height == 0.035 and tuned.params.max_turn_steps == 30
    assert make_base_policy("scripted", config).params.hover_height == 0.02
    # The override reaches the episode: a higher hover changes the trajectory of the same seed.
    default, higher = (
        run_episode({"randomization": "phase1"}, spec, 29) for spec in ("scripted", "scripted?hover_height=0.04")
    )
    assert default.success and higher.success and higher.success_step != default.success_step


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("scripted?nope=1", r"pusher.nope: unknown parameter"),
        ("scripted?drag_speed=fast", r"pusher.drag_speed='fast': expected a number"),
        ("scripted?drag_speed=-0.1", r"pusher.drag_speed=-0.1: allowed range is \[0, inf\)"),
        ("scripted?max_turn_steps=2.5", r"pusher.max_turn_steps='2.5': expected an integer"),
        ("scripted?drag_speed=nan", r"pusher.drag_speed='nan': expected a finite number"),
        ("scripted?hover_height=inf", r"pusher.hover_height='inf': expected a finite number"),
        ("scripted:somewhere", r"the pusher takes no target"),
    ],
)
def test_bad_pusher_spec_names_the_field(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_base_policy(spec, coerce_env_config(None, dr="phase1"))


def _plan_for(spec, centre, yaw):
    """The stroke the pusher plans for a sheet lying at centre with the given yaw."""
    from rllib_paper.policies.scripted import _EpisodeState

    policy = make_base_policy(spec, coerce_env_config(None, dr="phase1"))
    state, centre = _EpisodeState(), np.asarray(centre)
    to_goal = np.asarray(policy.frame.center) - centre
    policy._plan_turn(state, centre, yaw, wrap_half_turn(yaw), to_goal, float(np.linalg.norm(to_goal)))
    return state


def test_far_sheet_translates_rather_than_pulling_away_from_the_frame():
    # The traced ping-pong: the sheet straddles the far tape strip, turned -0.16 rad; the only
    # usable corner pull heads about 85 degrees off the frame direction and drags it sideways.
    sideways = _plan_for("scripted?max_turn_detour=3.1416", (0.305, 0.077), -0.16)
    assert sideways.turning and sideways.corner == 3
    pull_heading = np.arctan2(sideways.pull_direction[1], sideways.pull_direction[0])
    assert np.degrees(abs(wrap_angle(pull_heading - np.arctan2(-0.077, 0.16 - 0.305)))) > 70
    translated = _plan_for("scripted", (0.305, 0.077), -0.16)
    assert not translated.turning and translated.pull_direction is None
    # A sheet whose pull heads toward the frame still turns under the default.
    assert _plan_for("scripted", (0.30, 0.0), 0.3).turning


def test_pusher_is_deterministic():
    first = run_episode({"randomization": "phase2"}, "scripted", 3).to_dict()
    second = EpisodeRunner({"randomization": "phase2"}, "scripted").run(3).to_dict()
    first.pop("wall_seconds"), second.pop("wall_seconds")
    assert first == second


def _hardest_draws():
    p2 = DR_PRESETS["phase2"]
    # Farthest reach, both sides, both turn directions, slipperiest grip, stickiest table, heaviest sheet.
    for y, yaw in itertools.product(p2.paper_y, p2.paper_yaw):
        yield RandomizationConfig(
            paper_x=(p2.paper_x[1],) * 2,
            paper_y=(y, y),
            paper_yaw=(yaw, yaw),
            paper_friction_scale=(p2.paper_friction_scale[0],) * 2,
            table_friction_scale=(p2.table_friction_scale[1],) * 2,
            paper_mass_scale=(p2.paper_mass_scale[1],) * 2,
        )


@pytest.mark.parametrize("dr", list(_hardest_draws()), ids=lambda d: f"y{d.paper_y[0]:+.2f}_yaw{d.paper_yaw[0]:+.1f}")
def test_hardest_draws_degrade_gracefully(dr):
    """No exception, no NaN, targets inside the joint ranges, no arm link on the table."""
    env = ResidualPaperEnv(
        coerce_env_config(None, randomization=dataclasses.asdict(dr), residual={"base_policy": "scripted"})
    )
    model, data, ids = env.env.model, env.env.data, env.env.ids
    arm_hulls = {g for g in range(model.ngeom) if model.geom_contype[g] == BIT_ARM}
    obs, _ = env.reset(seed=0)
    zero = np.zeros(6, dtype=np.float32)
    lowest_tip = np.inf
    while True:
        target = env.base_target
        assert np.all(target >= ids.ctrl_low - 1e-9) and np.all(target <= ids.ctrl_high + 1e-9)
        obs, reward, terminated, truncated, info = env.step(zero)
        assert np.isfinite(obs).all() and np.isfinite(reward)
        assert not info["sim_unstable"]
        lowest_tip = min(lowest_tip, float(data.geom_xpos[ids.fingertip_geom][2]))
        for i in range(data.ncon):
            assert not {int(data.contact.geom1[i]), int(data.contact.geom2[i])} & arm_hulls, "arm hit the table"
        if terminated or truncated:
            break
    assert lowest_tip > 0.0  # the fingertip sphere's centre never goes below the table top


def test_pusher_compute_is_bounded():
    """Per control step the pusher does at most a few kinematics passes, next to 33 physics steps."""
    config = coerce_env_config(None, dr="phase2")
    env = ResidualPaperEnv(config)
    policy = env.base_policy = ScriptedPusher(config)
    env.reset(seed=5)
    worst = total = steps = 0
    for _ in range(200):
        before = policy.ik.kinematics_passes
        _, _, terminated, truncated, _ = env.step(np.zeros(6, dtype=np.float32))
        passes = policy.ik.kinematics_passes - before
        worst, total, steps = max(worst, passes), total + passes, steps + 1
        if terminated or truncated:
            break
    assert 0 < worst <= 4  # IK capped at 4 warm-started iterations per step
    assert total < 3 * steps  # most solves start where the last converged, and skip that pass
    assert env.env.substeps == 33


def test_run_episode_record_fields():
    record = run_episode({"randomization": "phase2"}, "zero", 0)
    assert not record.success and record.success_step is None and record.steps == 400
    assert set(record.dr) == {
        "paper_x",
        "paper_y",
        "paper_yaw",
        "paper_friction_scale",
        "table_friction_scale",
        "paper_mass_scale",
    }
    assert record.final_corner_error_mm > 0 and record.residual_abs_max == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "committed_successes"), [("phase1", 146), ("phase2", 148)])
def test_held_out_pusher_rates_replay_the_committed_episodes(ray_local, tmp_path, preset, committed_successes):
    """The README's pusher result rerun in full: 200 held-out seeds per preset against the
    episodes committed in results/scripted_pusher/, episode for episode. Exact on any x86-64
    host because rllib_paper pins OpenBLAS's kernels (runtime/process_env.py); without the pin
    an AVX-512 host flips a few seeds, and a pusher change many more."""
    import json
    from pathlib import Path

    from scipy.stats import binomtest

    from rllib_paper.config import coerce_env_config
    from rllib_paper.evaluation.distributed import EvalConfig, default_eval_env, evaluate

    committed = Path(__file__).resolve().parents[1] / f"results/scripted_pusher/{preset}_seeds1000-1199.json"
    episodes = {e["seed"]: e for e in json.loads(committed.read_text())["episodes"]}
    env = coerce_env_config(default_eval_env(), dr=preset)
    # The committed episodes end at the first success (they predate the settle phase).
    config = EvalConfig(env=env, episodes=200, seed=1000, workers=2, shard_size=10, settle_steps=0)
    report = evaluate(dataclasses.replace(config, out=str(tmp_path / preset), progress=False))
    table = pd.read_parquet(tmp_path / preset / "episodes.parquet")
    assert sorted(table["seed"]) == sorted(episodes) == list(range(1000, 1200))
    differing = [
        row.seed
        for row in table.itertuples()
        if (bool(row.success), int(row.steps)) != (episodes[row.seed]["success"], episodes[row.seed]["steps"])
    ]
    assert not differing, f"{len(differing)} of 200 committed episodes changed: {differing}"
    success = report["results"]["success"]
    assert success["successes"] == committed_successes and not report["results"]["sim_unstable"]
    # The task's bar (70 % on phase 1, 50 % on phase 2) is met, and the rate is not below it by chance.
    bar = {"phase1": 0.70, "phase2": 0.50}[preset]
    assert success["rate"] > bar
    if preset == "phase2":
        assert binomtest(success["successes"], 200, bar, alternative="greater").pvalue < 1e-6
