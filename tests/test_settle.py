"""Success that holds: after the first success an evaluation episode settles, then is judged."""

import dataclasses

import pandas as pd
import pytest

from rllib_paper.config import ConfigError, TaskConfig
from rllib_paper.evaluation.distributed import EvalConfig, default_eval_env
from rllib_paper.evaluation.episodes import EpisodeRunner
from rllib_paper.evaluation.report import summarize

SEED = 1005  # the pusher crosses into the frame at step 134 on phase 2 (committed eval_scripted_phase2)


def _env(**task):
    env = default_eval_env()
    return dataclasses.replace(env, task=dataclasses.replace(env.task, **task))


def test_training_ends_at_the_first_success_and_evaluation_settles_by_default():
    assert TaskConfig().settle_after_success_steps == 0
    assert EvalConfig().env.task.settle_after_success_steps == 30
    kept = EvalConfig(env=_env(settle_after_success_steps=7), settle_steps=None)
    assert kept.env.task.settle_after_success_steps == 7
    with pytest.raises(ConfigError, match="settle_after_success_steps"):
        TaskConfig(settle_after_success_steps=-1)
    with pytest.raises(ConfigError, match="settle_max_speed"):
        TaskConfig(settle_max_speed=0.0)


def test_an_episode_settles_after_its_first_success_then_is_judged_inside_and_slow():
    once = EpisodeRunner(_env()).run(SEED)
    assert once.success and once.success_once and once.steps == once.success_step
    runner = EpisodeRunner(_env(settle_after_success_steps=30))
    held = runner.run(SEED)
    # Same episode up to the crossing, then 30 more control steps before it is judged.
    assert held.success_once and held.success_step == once.steps and held.steps == once.steps + 30
    inside_and_slow = held.final_corner_excess_mm == 0.0 and held.final_sheet_speed <= 0.02
    assert held.success == inside_and_slow and held.success
    assert runner.env.env.sheet_speed == held.final_sheet_speed
    # The settle phase runs to its end even past max_steps.
    late = EpisodeRunner(_env(settle_after_success_steps=30, max_steps=once.steps)).run(SEED)
    assert late.steps == once.steps + 30 and late.success == held.success
    # One step after the crossing the sheet is still sliding: crossed once, not a success that holds.
    sliding = EpisodeRunner(_env(settle_after_success_steps=1, settle_max_speed=1e-4)).run(SEED)
    assert sliding.success_once and not sliding.success and sliding.final_sheet_speed > 1e-4
    assert sliding.steps == once.steps + 1


def test_report_counts_success_once_and_success_at_end_apart_and_heads_with_at_end():
    frame = pd.DataFrame(
        {
            "seed": [1, 2, 3, 4],
            "success": [True, False, False, False],
            "success_once": [True, True, True, False],
            "success_at_end": [True, False, False, False],
            "success_step": [10.0, 12.0, 14.0, float("nan")],
            "sim_unstable": [False] * 4,
            "final_distance": [0.0] * 4,
            "final_corner_error_mm": [0.0] * 4,
            "final_yaw_error": [0.0] * 4,
            "steps": [40, 42, 44, 400],
            "episode_return": [0.0] * 4,
            "residual_abs_mean": [0.0] * 4,
            "residual_abs_max": [0.0] * 4,
        }
    )
    results = summarize(frame, {})
    assert results["headline"] == "success_at_end"
    assert results["success"] == results["success_at_end"] and results["success"]["successes"] == 1
    assert results["success_once"]["successes"] == 3
