"""Configuration: one clear error naming field, value and range; YAML rejects unknown keys."""

import pytest

from rllib_paper.config import (
    DR_PRESETS,
    ConfigError,
    EnvConfig,
    PhysicsConfig,
    RandomizationConfig,
    ResidualConfig,
    coerce_env_config,
    load_yaml,
)


def test_defaults_are_the_seed_numbers():
    config = EnvConfig()
    assert config.physics.substeps == 33
    assert config.residual.alpha == 0.7 and config.residual.scale == 0.02
    assert (
        config.reward.success,
        config.reward.distance,
        config.reward.orientation,
        config.reward.residual,
        config.reward.time,
    ) == (10.0, -2.0, -0.1, -0.001, -0.01)
    assert config.task.max_steps == 400


def test_presets_match_seed_report():
    p1, p2 = DR_PRESETS["phase1"], DR_PRESETS["phase2"]
    assert p1.paper_x == (0.25, 0.35) and p1.paper_y == (-0.10, 0.10) and p1.paper_yaw == (-0.5, 0.5)
    assert p1.paper_friction_scale == (0.8, 1.2) and p1.table_friction_scale == (0.8, 1.2)
    assert p2.paper_x == (0.20, 0.35) and p2.paper_y == (-0.15, 0.15)
    assert p2.paper_mass_scale == (0.9, 1.1) and p2.table_friction_scale == (0.9, 1.1)


def test_inverted_range_names_the_field():
    with pytest.raises(ConfigError, match=r"randomization\.paper_x=\[0\.3, 0\.2\]: min 0\.3 is greater than max 0\.2"):
        RandomizationConfig(paper_x=(0.3, 0.2))


def test_negative_scale_names_the_field():
    expected = r"randomization\.paper_mass_scale\[0\]=-0\.1: allowed range is \[0\.0, 10\.0\]"
    with pytest.raises(ConfigError, match=expected):
        RandomizationConfig(paper_mass_scale=(-0.1, 1.0))


def test_out_of_range_value_names_field_value_and_range():
    with pytest.raises(ConfigError, match=r"residual\.alpha=1\.5: allowed range is \[0\.0, 1\.0\]"):
        ResidualConfig(alpha=1.5)
    with pytest.raises(ConfigError, match=r"physics\.timestep=0\.5"):
        PhysicsConfig(timestep=0.5)


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"unknown key randomization\.paper_z"):
        EnvConfig.from_dict({"randomization": {"paper_z": [0, 1]}})
    with pytest.raises(ConfigError, match=r"unknown key rewards"):
        EnvConfig.from_dict({"rewards": {}})


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"randomization='phase9': allowed presets are"):
        coerce_env_config(None, dr="phase9")


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("randomization: phase2\nresidual:\n  alpha: 0.5\nreward:\n  success: 20\n")
    config = EnvConfig.from_dict(load_yaml(path))
    assert config.randomization == DR_PRESETS["phase2"]
    assert config.residual.alpha == 0.5 and config.reward.success == 20
    assert EnvConfig.from_dict(config.to_dict()) == config


def test_wrong_tuple_length():
    with pytest.raises(ConfigError, match=r"randomization\.paper_x=\[0\.2\]: expected 2 values"):
        EnvConfig.from_dict({"randomization": {"paper_x": [0.2]}})
