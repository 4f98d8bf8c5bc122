"""The one-process vector env steps exactly the single envs a SyncVectorEnv would, bit for bit,
and gives every env of every runner an episode stream of its own."""

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers.vector import DictInfoToList

from rllib_paper.config import coerce_env_config
from rllib_paper.envs.registry import EpisodeSummaryInfo, make_residual_env
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.envs.vector import ResidualVectorEnv, env_seeds

CONFIG = coerce_env_config(None, dr="phase2", residual={"base_policy": "scripted"}, task={"max_steps": 30})


def test_vector_env_matches_gymnasiums_sync_vector_env_step_for_step():
    # Both as RLlib holds them: infos converted to one dict per env.
    ours = DictInfoToList(ResidualVectorEnv(CONFIG, 3))
    reference = DictInfoToList(
        gym.vector.SyncVectorEnv(
            [lambda: EpisodeSummaryInfo(ResidualPaperEnv(CONFIG)) for _ in range(3)],
            autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        )
    )
    rng = np.random.default_rng(0)
    a, _ = ours.reset(seed=1000)
    b, _ = reference.reset(seed=env_seeds(1000, 3))
    np.testing.assert_array_equal(a, b)
    ended = 0
    for _ in range(75):  # 30-step episodes: every env ends twice and autoresets
        actions = rng.uniform(-1, 1, size=(3, 6)).astype(np.float32)
        out_a, out_b = ours.step(actions), reference.step(actions)
        for x, y in zip(out_a[:4], out_b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        for info_a, info_b in zip(out_a[4], out_b[4], strict=True):
            assert info_a.keys() == info_b.keys() <= {"episode_summary"}
            if info_b:
                summary_b = {k: v.item() if hasattr(v, "item") else v for k, v in info_b["episode_summary"].items()}
                assert info_a["episode_summary"] == summary_b
                ended += 1
    assert ended >= 6


def test_an_env_in_the_vector_runs_the_same_episode_as_the_single_env_with_its_seed():
    vector = ResidualVectorEnv(CONFIG, 2)
    single = ResidualPaperEnv(CONFIG)
    obs, _ = vector.reset(seed=1029)
    expected, _ = single.reset(seed=env_seeds(1029, 2)[1])
    np.testing.assert_array_equal(obs[1], expected)
    zero = np.zeros((2, 6), dtype=np.float32)
    for _ in range(30):
        obs, rewards, terminated, truncated, _ = vector.step(zero)
        step = single.step(zero[1])
        np.testing.assert_array_equal(obs[1], step[0])
        assert (rewards[1], terminated[1], truncated[1]) == step[1:4]


def test_runners_envs_and_training_seeds_get_distinct_episode_streams():
    # RLlib seeds runner k with config.seed + k: under SyncVectorEnv's seed + i, runner 1's env 1
    # and runner 2's env 0 (and training seed 1's runner 1 and seed 0's runner 2) shared episodes.
    streams = [s for train_seed in (0, 1) for k in (1, 2) for s in env_seeds(train_seed + k, 8, stream=k)]
    assert len(set(streams)) == len(streams) == 32
    assert min(streams) > 2**32  # never a small integer, as evaluation seeds are
    assert env_seeds(3, 4, stream=2) == env_seeds(3, 4, stream=2)  # deterministic


def test_paired_rollouts_share_each_start_and_keep_sharing_them_episode_after_episode():
    assert env_seeds(3, 6, stream=1, rollouts_per_start=2) == [s for s in env_seeds(3, 3, stream=1) for _ in (0, 1)]
    vector = ResidualVectorEnv(CONFIG, 4, stream=1, rollouts_per_start=2)
    obs, _ = vector.reset(seed=11)
    np.testing.assert_array_equal(obs[0], obs[1])
    starts: list[list[float]] = [[env.env.episode_draw.paper_x] for env in vector.envs]
    rng = np.random.default_rng(0)
    for _ in range(62):  # 30-step episodes: two autoresets each, under different actions per env
        vector.step(rng.uniform(-1, 1, size=(4, 6)).astype(np.float32))
        for i, env in enumerate(vector.envs):
            if env.env.episode_draw.paper_x != starts[i][-1]:
                starts[i].append(env.env.episode_draw.paper_x)
    assert len(starts[0]) == 3 and starts[0] == starts[1] and starts[2] == starts[3], starts
    assert not set(starts[0]) & set(starts[2]), starts


def test_the_next_start_does_not_depend_on_how_long_the_last_episode_ran():
    # What keeps a pair paired when one of its envs ends an episode early: an env's generator is
    # drawn from only at reset.
    short, long = ResidualPaperEnv(CONFIG), ResidualPaperEnv(CONFIG)
    short.reset(seed=5)
    long.reset(seed=5)
    zero = np.zeros(6, dtype=np.float32)
    for _ in range(3):
        short.step(zero)
    for _ in range(20):
        long.step(zero)
    np.testing.assert_array_equal(short.reset()[0], long.reset()[0])


def test_paired_rollouts_are_a_checked_runner_setting():
    from rllib_paper.config import ConfigError
    from rllib_paper.training.config import EnvRunnersSection

    with pytest.raises(ConfigError, match=re.escape("must divide env_runners.num_envs_per_env_runner=8")):
        EnvRunnersSection(num_envs_per_env_runner=8, rollouts_per_start=3)
    with pytest.raises(ConfigError, match=re.escape("needs env_runners.vectorize='vector'")):
        EnvRunnersSection(num_envs_per_env_runner=8, rollouts_per_start=2, vectorize="sync")
    with pytest.raises(ValueError, match=re.escape("allowed values are the divisors of num_envs=4")):
        ResidualVectorEnv(CONFIG, 4, rollouts_per_start=3)
    made = make_residual_env({**CONFIG.to_dict(), "num_envs": 4, "rollouts_per_start": 2})
    assert made.rollouts_per_start == 2


def test_rllib_asks_for_the_vector_env_by_num_envs_and_the_callback_names_the_runner():
    from ray.rllib.env.env_context import EnvContext

    from rllib_paper.training.callbacks import TaskMetricsCallback

    made = make_residual_env({**CONFIG.to_dict(), "num_envs": 2})
    assert isinstance(made, ResidualVectorEnv) and made.num_envs == 2 and made.stream == 0
    TaskMetricsCallback().on_environment_created(env=made, env_context=EnvContext({}, worker_index=2))
    assert made.stream == 2
    first, _ = made.reset(seed=7)
    expected, _ = ResidualPaperEnv(CONFIG).reset(seed=env_seeds(7, 2, stream=2)[0])
    np.testing.assert_array_equal(first[0], expected)
    assert isinstance(make_residual_env(CONFIG.to_dict()), EpisodeSummaryInfo)


@pytest.mark.parametrize("rollouts_per_start", [1, 2])
def test_each_training_runner_steps_its_own_episode_streams(ray_local, tmp_path, rollouts_per_start):
    from test_train import TINY

    from rllib_paper.training.algorithm import build_algorithm_config, keep_trainable_logs_in
    from rllib_paper.training.config import load_train_config

    keep_trainable_logs_in(tmp_path / "rllib")
    paired = f"env_runners.rollouts_per_start={rollouts_per_start}"
    overrides = [*TINY, "env_runners.num_env_runners=2", "seed=5", paired]
    config = load_train_config(None, overrides)
    algo = build_algorithm_config(config).build_algo()
    try:
        streams = algo.env_runner_group.foreach_env_runner(lambda r: r.env.unwrapped.stream, local_env_runner=False)
        assert sorted(streams) == [1, 2]
        algo.train()
        draws = algo.env_runner_group.foreach_env_runner(
            lambda r: [env.env.episode_draw.paper_x for env in r.env.unwrapped.envs], local_env_runner=False
        )
        flat = [x for runner in draws for x in runner]  # the current episode's start, per env
        assert len(flat) == 4 and len(set(flat)) == 4 // rollouts_per_start, draws
        if rollouts_per_start == 2:  # each runner's two envs play one start
            assert all(len(set(runner)) == 1 for runner in draws), draws
    finally:
        algo.stop()
