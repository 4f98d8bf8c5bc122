"""Env behaviour: gymnasium compliance, determinism per seed, DR draws, residual composition."""

import dataclasses

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rllib_paper
from rllib_paper.config import DR_PRESETS, EnvConfig, TaskConfig
from rllib_paper.envs.paper_env import PaperSquareEnv
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.policies.base import ConstantTargetPolicy
from rllib_paper.sim.observation import BASE_ACTION, QPOS, RESIDUAL_OBS_DIM, SHEET_XY


@pytest.mark.parametrize("env_id", [rllib_paper.PAPER_ENV_ID, rllib_paper.RESIDUAL_ENV_ID])
def test_check_env_passes(env_id):
    env = gym.make(env_id, config={"randomization": "phase2"})
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_gym_make_accepts_sections():
    env = gym.make(rllib_paper.RESIDUAL_ENV_ID, dr="phase1", residual={"alpha": 0.5})
    assert env.unwrapped.config.residual.alpha == 0.5
    assert env.unwrapped.config.randomization == DR_PRESETS["phase1"]
    obs, _ = env.reset(seed=0)
    assert obs.shape == (RESIDUAL_OBS_DIM,) and obs.dtype == np.float32


def _trajectory(env_cls, seed, steps=60, action_seed=123):
    env = env_cls(EnvConfig(randomization=DR_PRESETS["phase2"]))
    rng = np.random.default_rng(action_seed)
    obs, info = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards), info["dr"]


@pytest.mark.parametrize("env_cls", [PaperSquareEnv, ResidualPaperEnv])
def test_same_seed_is_bit_identical(env_cls):
    obs_a, rew_a, dr_a = _trajectory(env_cls, seed=7)
    obs_b, rew_b, dr_b = _trajectory(env_cls, seed=7)
    assert dr_a == dr_b
    assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)


def test_reset_reuses_env_without_leaking_state():
    """Seed 7 after other episodes equals seed 7 in a fresh env (DR applied from nominal values)."""
    env = ResidualPaperEnv(EnvConfig(randomization=DR_PRESETS["phase2"]))
    for seed in (1, 2):
        env.reset(seed=seed)
        for _ in range(5):
            env.step(env.action_space.sample())
    obs_reused, _ = env.reset(seed=7)
    fresh = ResidualPaperEnv(EnvConfig(randomization=DR_PRESETS["phase2"]))
    obs_fresh, _ = fresh.reset(seed=7)
    assert np.array_equal(obs_reused, obs_fresh)
    assert np.array_equal(env.env.model.geom_friction, fresh.env.model.geom_friction)
    assert np.array_equal(env.env.model.body_mass, fresh.env.model.body_mass)


def test_different_seeds_draw_different_dr_and_apply_it():
    env = PaperSquareEnv(EnvConfig(randomization=DR_PRESETS["phase2"]))
    draws = [env.reset(seed=s)[1]["dr"] for s in range(20)]
    assert len({d["paper_x"] for d in draws}) == 20
    for d in draws:
        for name, (low, high) in dataclasses.asdict(DR_PRESETS["phase2"]).items():
            assert low <= d[name] <= high
    _, info = env.reset(seed=3)
    ids, model = env.ids, env.model
    assert model.body_mass[ids.paper_body] == pytest.approx(0.005 * info["dr"]["paper_mass_scale"])
    assert model.geom_friction[ids.paper_geom, 0] == pytest.approx(0.6 * info["dr"]["paper_friction_scale"])
    assert model.geom_friction[ids.table_geoms, 0] == pytest.approx(0.3 * info["dr"]["table_friction_scale"])
    paper = env.state[SHEET_XY]
    assert paper == pytest.approx([info["dr"]["paper_x"], info["dr"]["paper_y"]], abs=2e-3)


# The env's draws for a few seeds, recorded from the code (paper_x, paper_y, paper_yaw,
# paper_friction_scale, table_friction_scale, paper_mass_scale). A change here means every
# committed result changes: each episode of every report, and every training run, was drawn so.
PINNED_DRAWS = {
    ("phase1", 0): (
        0.3136961687321454,
        -0.04604265724722594,
        -0.4590264760638053,
        0.8066110542114117,
        1.125308095680109,
        1.0,
    ),
    ("phase1", 1000): (
        0.30213857379750625,
        0.020768369401265918,
        -0.02905820267774606,
        0.8812991770178715,
        1.011503610248021,
        1.0,
    ),
    ("phase1", 1199): (
        0.34746761667975756,
        -0.01923397005002969,
        0.053252031154451984,
        1.1996861983419835,
        1.0212051825729436,
        1.0,
    ),
    ("phase2", 0): (
        0.29554425309821813,
        -0.06906398587083891,
        -0.4590264760638053,
        0.8066110542114117,
        1.0626540478400546,
        1.0825511154555445,
    ),
    ("phase2", 1000): (
        0.2782078606962594,
        0.031152554101898877,
        -0.02905820267774606,
        0.8812991770178715,
        1.0057518051240106,
        0.9382072560161578,
    ),
    ("phase2", 1199): (
        0.34620142501963636,
        -0.028850955075044538,
        0.053252031154451984,
        1.1996861983419835,
        1.0106025912864718,
        0.9560649636126343,
    ),
}


@pytest.mark.parametrize(("preset", "seed"), sorted(PINNED_DRAWS))
def test_dr_draws_are_pinned_per_seed(preset, seed):
    env = PaperSquareEnv(EnvConfig(randomization=DR_PRESETS[preset]))
    _, info = env.reset(seed=seed)
    assert tuple(info["dr"]) == (
        "paper_x",
        "paper_y",
        "paper_yaw",
        "paper_friction_scale",
        "table_friction_scale",
        "paper_mass_scale",
    )
    assert tuple(info["dr"].values()) == PINNED_DRAWS[preset, seed]


def test_dr_draws_match_every_committed_episode():
    """The committed phase-2 evaluation recorded each seed's draw: the env still draws the same."""
    from pathlib import Path

    import pandas as pd

    table = pd.read_parquet(Path(__file__).resolve().parents[1] / "results/eval_scripted_phase2/episodes.parquet")
    env = PaperSquareEnv(EnvConfig(randomization=DR_PRESETS["phase2"]))
    assert len(table) == 200
    for row in table.itertuples():
        draw = env.reset(seed=int(row.seed))[1]["dr"]
        assert {k: getattr(row, f"dr_{k}") for k in draw} == draw, row.seed


def test_zero_residual_commands_exactly_the_base_targets():
    env = ResidualPaperEnv(EnvConfig(randomization=DR_PRESETS["phase1"]))
    obs, info = env.reset(seed=5)
    assert np.array_equal(obs[BASE_ACTION], info["base_target"].astype(np.float32))
    for _ in range(20):
        base = env.base_target.copy()
        env.step(np.zeros(6, dtype=np.float32))
        assert np.array_equal(env.env.current_target, np.clip(base, env.env.ids.ctrl_low, env.env.ids.ctrl_high))
        assert np.array_equal(env.env.data.ctrl[:6], env.env.current_target)


def test_residual_is_scaled_by_alpha_and_scale():
    target = np.array([0.1, -0.8, 0.6, 1.0, 0.0, -0.1])
    env = ResidualPaperEnv(EnvConfig(), base_policy=ConstantTargetPolicy(target))
    env.reset(seed=0)
    residual = np.array([1.0, -1.0, 0.5, 0.0, 2.0, -0.25], dtype=np.float32)  # 2.0 is clipped to 1
    _, _reward, _, _, info = env.step(residual)
    expected = target + 0.7 * 0.02 * np.clip(residual, -1, 1)
    assert env.env.current_target == pytest.approx(expected)
    assert info["reward_residual"] == pytest.approx(-0.001 * float(np.sum(np.clip(residual, -1, 1) ** 2)))


def test_zero_base_holds_target_without_sagging():
    """'Zero' holds the home target: after 400 steps the arm is where it started."""
    env = ResidualPaperEnv(EnvConfig(randomization=DR_PRESETS["none"]))
    obs, _ = env.reset(seed=0)
    start = obs[QPOS].copy()
    for _ in range(400):
        obs, _, terminated, truncated, _ = env.step(np.zeros(6, dtype=np.float32))
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert np.abs(obs[QPOS] - start).max() < 0.01
    assert np.array_equal(env.base_target, np.asarray(TaskConfig().home_qpos))


def test_reward_terms_sum_and_info_fields():
    env = PaperSquareEnv(EnvConfig(randomization=DR_PRESETS["phase2"]))
    env.reset(seed=2)
    _, reward, _, _, info = env.step(env.current_target.astype(np.float32))
    terms = [info[f"reward_{k}"] for k in ("success", "distance", "orientation", "residual", "time")]
    assert reward == pytest.approx(sum(terms))
    assert info["reward_distance"] == pytest.approx(-2.0 * info["distance"])
    assert info["reward_orientation"] == pytest.approx(-0.1 * abs(info["yaw_error"]))
    for key in ("success", "corner_error_mm", "distance", "yaw_error", "sim_unstable"):
        assert key in info


def test_actions_are_clipped_to_joint_ranges():
    env = PaperSquareEnv(EnvConfig())
    env.reset(seed=0)
    env.step(np.full(6, 100.0, dtype=np.float32))
    assert np.array_equal(env.current_target, env.ids.ctrl_high)


def test_success_terminates_with_bonus():
    env = PaperSquareEnv(EnvConfig(randomization=DR_PRESETS["none"]))
    env.reset(seed=0)
    frame = env.ids.frame_center
    env.data.qpos[env.ids.paper_qpos : env.ids.paper_qpos + 7] = (*frame, 0.000075, 1, 0, 0, 0)
    mujoco.mj_forward(env.model, env.data)
    _, reward, terminated, truncated, info = env.step(env.current_target.astype(np.float32))
    assert info["success"] and terminated and not truncated
    assert info["reward_success"] == 10.0 and reward > 9.0


def test_truncates_at_max_steps():
    env = PaperSquareEnv(EnvConfig(task=TaskConfig(max_steps=5)))
    env.reset(seed=0)
    flags = [env.step(env.current_target.astype(np.float32))[3] for _ in range(5)]
    assert flags == [False, False, False, False, True]


def test_divergence_ends_episode_as_failure_not_exception():
    env = PaperSquareEnv(EnvConfig())
    env.reset(seed=0)
    env.data.qvel[:] = 1e12  # MuJoCo detects this, warns and resets its state
    obs, _, terminated, _truncated, info = env.step(env.current_target.astype(np.float32))
    assert info["sim_unstable"] and terminated and not info["success"]
    assert np.isfinite(obs).all()
    assert sum(env.instability_warnings().values()) > 0


def test_paper_flung_too_fast_is_unstable():
    env = PaperSquareEnv(EnvConfig())
    env.reset(seed=0)
    env.data.qvel[env.ids.paper_dof] = 50.0
    _, _, terminated, _, info = env.step(env.current_target.astype(np.float32))
    assert info["sim_unstable"] and terminated


def test_register_with_rllib_builds_env_from_env_context():
    from ray.rllib.env.env_context import EnvContext
    from ray.tune.registry import ENV_CREATOR, _global_registry

    name = rllib_paper.register_with_rllib()
    creator = _global_registry.get(ENV_CREATOR, name)
    env = creator(EnvContext({"randomization": "phase2", "residual": {"alpha": 0.3}}, worker_index=1))
    assert isinstance(env.unwrapped, ResidualPaperEnv) and env.unwrapped.config.residual.alpha == 0.3
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info == {}
    # Training envs pass only the episode summary on (vector envs merge every info key each step).
    for _ in range(400):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample() * 0)
        if terminated or truncated:
            break
        assert info == {}
    assert set(info) == {"episode_summary"} and info["episode_summary"]["length"] >= 1
