"""The observation layout: one table, the env docstrings carry it, the envs fill it, the normaliser is pinned."""

import inspect

import numpy as np
import pytest

from rllib_paper.config import EnvConfig, TaskConfig
from rllib_paper.envs.paper_env import PaperSquareEnv
from rllib_paper.envs.residual import ResidualPaperEnv
from rllib_paper.sim import observation as layout


@pytest.mark.parametrize(
    ("env_class", "fields"), [(PaperSquareEnv, layout.TASK_FIELDS), (ResidualPaperEnv, layout.RESIDUAL_FIELDS)]
)
def test_env_docstring_carries_the_index_table(env_class, fields):
    doc = inspect.getdoc(env_class)
    table = layout.observation_table(fields)
    assert table in doc, f"{env_class.__name__}'s docstring table differs from sim/observation.py's:\n{table}"
    assert doc.count("| index |") == 1


def test_fields_tile_the_observations():
    for fields, dim in ((layout.TASK_FIELDS, layout.OBS_DIM), (layout.RESIDUAL_FIELDS, layout.RESIDUAL_OBS_DIM)):
        indices = [i for f in fields for i in range(f.slice.start, f.slice.stop)]
        assert indices == list(range(dim))
    assert (layout.OBS_DIM, layout.RESIDUAL_OBS_DIM) == (25, 31)
    assert layout.RESIDUAL_FIELDS[: len(layout.TASK_FIELDS)] == layout.TASK_FIELDS


def test_envs_fill_the_named_fields():
    env = ResidualPaperEnv(EnvConfig())
    env.reset(seed=4)
    obs, *_ = env.step(np.zeros(6, dtype=np.float32))
    inner = env.env
    assert inner.observation_space.shape == (layout.OBS_DIM,)
    assert env.observation_space.shape == (layout.RESIDUAL_OBS_DIM,)
    state, data, ids = inner.state, inner.data, inner.ids
    assert obs.shape == (layout.RESIDUAL_OBS_DIM,)
    assert np.array_equal(obs[: layout.OBS_DIM], state.astype(np.float32))
    assert np.array_equal(obs[layout.BASE_ACTION], env.base_target.astype(np.float32))
    assert np.array_equal(state[layout.QPOS], data.qpos[ids.joint_qpos])
    assert np.array_equal(state[layout.QVEL], data.qvel[ids.joint_dof])
    assert np.array_equal(state[layout.SHEET_POS], data.qpos[ids.paper_qpos : ids.paper_qpos + 3])
    assert np.array_equal(state[layout.SHEET_QUAT], data.qpos[ids.paper_qpos + 3 : ids.paper_qpos + 7])
    goal = np.array([*ids.frame_center, inner.config.physics.paper_half_thickness])
    assert np.array_equal(state[layout.GOAL_VEC], goal - state[layout.SHEET_POS])
    assert np.array_equal(state[layout.FINGERTIP], data.site_xpos[ids.fingertip_site])
    assert np.array_equal(state[layout.SHEET_XY], state[layout.SHEET_POS][:2])


def test_normalizer_numbers_are_the_committed_checkpoints():
    """The residual checkpoints hold these numbers (the literal lists they were trained with)."""
    home = list(TaskConfig().home_qpos)
    center = [*home, *[0.0] * 6, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.1, 0.0, 0.0, 0.2, 0.0, 0.05, *home]
    scale = [*[0.5] * 6, *[2.0] * 6, 0.1, 0.1, 0.01, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.1, 0.1, 0.1, *[0.5] * 6]
    got_center, got_scale = layout.observation_normalizer()
    assert got_center == center and got_scale == scale
    assert all(type(v) is float for v in got_center + got_scale)
    moved = EnvConfig(task=TaskConfig(home_qpos=(0.1, -1.0, 0.7, 1.4, 0.0, -0.1)))
    moved_center, _ = layout.observation_normalizer(moved)
    assert moved_center[layout.QPOS] == moved_center[layout.BASE_ACTION] == [0.1, -1.0, 0.7, 1.4, 0.0, -0.1]


def test_optional_observations_are_appended_and_change_nothing_else():
    """env.residual.observe appends time_left and chunk_step (in its order) after the 31 values;
    the 31 and the episode stay what they are without them."""
    import pytest

    from rllib_paper.config import ConfigError, coerce_env_config
    from rllib_paper.envs.residual import ResidualPaperEnv

    def episode(observe, base="bc:results/bc_phase2"):
        residual = {"base_policy": base, "observe": observe}
        config = coerce_env_config(None, dr="phase2", residual=residual, task={"max_steps": 20})
        env = ResidualPaperEnv(config)
        rows = [env.reset(seed=5)[0]]
        for _ in range(12):
            rows.append(env.step(np.full(6, 0.3, dtype=np.float32))[0])
        return env, np.array(rows)

    _, plain = episode([])
    env, rows = episode(["chunk_step", "time_left"])
    assert env.observation_space.shape == (layout.RESIDUAL_OBS_DIM + 2,) == rows.shape[1:]
    np.testing.assert_array_equal(rows[:, : layout.RESIDUAL_OBS_DIM], plain)
    # BC executes 8 targets of each 16-target chunk: the step within the chunk counts 0..7.
    np.testing.assert_allclose(rows[:, -2], [(i % 8) / 8 for i in range(13)])
    np.testing.assert_allclose(rows[:, -1], [1 - i / 20 for i in range(13)], rtol=1e-6)
    fields = layout.residual_fields(env.config)
    assert [f.name for f in fields[-2:]] == ["chunk_step", "time_left"]
    assert len(layout.observation_normalizer(env.config)[0]) == layout.RESIDUAL_OBS_DIM + 2
    _, closed_loop = episode(["chunk_step"], base="scripted")  # re-plans every step
    assert np.all(closed_loop[:, -1] == 0)
    with pytest.raises(ConfigError, match=r"residual.observe=\['speed'\]: allowed names are"):
        coerce_env_config(None, residual={"observe": ["speed"]})
    with pytest.raises(ConfigError, match="each once"):
        coerce_env_config(None, residual={"observe": ["time_left", "time_left"]})


def test_the_residual_module_takes_the_longer_observation():
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_paper.training.algorithm import build_algorithm_config
    from rllib_paper.training.config import load_train_config

    config = load_train_config(None, ["env.residual.observe=[time_left]", "ppo.hiddens=[16]"])
    env = ResidualPaperEnv(config.env)
    spec = build_algorithm_config(config).rl_module_spec
    spec.observation_space, spec.action_space = env.observation_space, env.action_space
    module = spec.build()
    obs = torch.as_tensor(env.reset(seed=0)[0][None], dtype=torch.float32)
    assert obs.shape == (1, layout.RESIDUAL_OBS_DIM + 1)
    out = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert torch.all(out[:, :6] == 0)  # still starts as the base


def test_contact_observations_report_the_pads_force_and_the_sheets_motion():
    """pad_force and sheet_velocity are what MuJoCo says: the normal force of the pad contacts
    with the sheet (0 until the finger touches it, positive while it presses), the sheet's free
    joint velocity; appended as 1 + 3 values with their own normaliser, the 31 unchanged."""
    import mujoco

    from rllib_paper.config import coerce_env_config
    from rllib_paper.envs.residual import ResidualPaperEnv

    config = coerce_env_config(
        None, dr="phase2", residual={"base_policy": "scripted", "observe": ["pad_force", "sheet_velocity"]}
    )
    env = ResidualPaperEnv(config)
    plain = ResidualPaperEnv(coerce_env_config(None, dr="phase2", residual={"base_policy": "scripted"}))
    obs, _ = env.reset(seed=3)
    assert obs.shape == (layout.RESIDUAL_OBS_DIM + 4,) and obs[layout.RESIDUAL_OBS_DIM] == 0.0
    np.testing.assert_array_equal(obs[: layout.RESIDUAL_OBS_DIM], plain.reset(seed=3)[0])
    paper = env.env
    forces, pressing_checked = [], False
    for _ in range(150):
        obs, *_ = env.step(np.zeros(6, dtype=np.float32))
        force, velocity = obs[layout.RESIDUAL_OBS_DIM], obs[layout.RESIDUAL_OBS_DIM + 1 :]
        dof = paper.ids.paper_dof
        np.testing.assert_allclose(velocity, paper.data.qvel[[dof, dof + 1, dof + 5]].astype(np.float32))
        forces.append(force)
        if force > 0 and not pressing_checked:  # recompute from the raw contacts once
            expected = 0.0
            for i in range(paper.data.ncon):
                c = paper.data.contact[i]
                if {c.geom1, c.geom2} & {paper.ids.paper_geom} and {c.geom1, c.geom2} & set(paper.ids.pad_geoms):
                    f = np.zeros(6)
                    mujoco.mj_contactForce(paper.model, paper.data, i, f)
                    expected += f[0]
            assert force == np.float32(expected) and expected > 0
            pressing_checked = True
    assert forces[0] == 0.0 and pressing_checked  # the pusher reaches the sheet and presses on it
    center, scale = layout.observation_normalizer(config)
    assert center[layout.RESIDUAL_OBS_DIM :] == [0.0, 0.0, 0.0, 0.0] and scale[layout.RESIDUAL_OBS_DIM :] == [
        3.0,
        0.05,
        0.05,
        0.5,
    ]
    assert [f.name for f in layout.residual_fields(config)[-2:]] == ["pad_force", "sheet_velocity"]
