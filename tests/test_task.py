"""Task geometry on hand-computed cases, and the frame placement against the DR ranges."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from rllib_paper.config import DR_PRESETS, PhysicsConfig, TaskConfig
from rllib_paper.sim.task import FrameGeometry, quat_to_yaw, rectangle_corners, wrap_half_turn

A5 = (0.148, 0.210)
FRAME = FrameGeometry(center=(0.16, 0.0), inner_size=A5, margin=0.020)


def test_rectangle_corners_by_hand():
    corners = rectangle_corners(np.array([1.0, 2.0]), 0.0, (0.2, 0.4))
    assert corners == pytest.approx(np.array([[0.9, 1.8], [1.1, 1.8], [1.1, 2.2], [0.9, 2.2]]))
    turned = rectangle_corners(np.zeros(2), math.pi / 2, (0.2, 0.4))
    # A quarter turn maps local (x, y) to (-y, x): corner (-0.1, -0.2) -> (0.2, -0.1).
    assert turned[0] == pytest.approx([0.2, -0.1])


def test_yaw_wraps_modulo_half_turn():
    assert wrap_half_turn(math.pi) == pytest.approx(0.0)
    assert wrap_half_turn(math.pi + 0.3) == pytest.approx(0.3)
    assert wrap_half_turn(-0.3) == pytest.approx(-0.3)
    assert wrap_half_turn(math.pi / 2 + 0.1) == pytest.approx(-math.pi / 2 + 0.1)
    half = 0.25
    assert quat_to_yaw([math.cos(half), 0, 0, math.sin(half)]) == pytest.approx(0.5)


def test_sheet_placed_in_frame_is_success():
    result = FRAME.evaluate((0.16, 0.0), 0.0, A5)
    assert result.success and result.corner_error_mm == pytest.approx(0.0, abs=1e-9)
    assert result.distance == pytest.approx(0.0) and result.corner_excess_mm == 0.0
    # Upside down is the same sheet.
    assert FRAME.evaluate((0.16, 0.0), math.pi, A5).success


def test_success_tolerance_is_the_tape_width():
    # 19 mm off along x: every corner still inside the tape's outer edge.
    inside = FRAME.evaluate((0.16 + 0.019, 0.0), 0.0, A5)
    assert inside.success and inside.corner_error_mm == pytest.approx(19.0)
    # 21 mm off: two corners 1 mm beyond the outer edge.
    outside = FRAME.evaluate((0.16 + 0.021, 0.0), 0.0, A5)
    assert not outside.success and outside.corner_excess_mm == pytest.approx(1.0)
    # Diagonal offset: 15 mm and 15 mm is inside (each axis separately within 20 mm).
    assert FRAME.evaluate((0.175, 0.015), 0.0, A5).success


def test_quarter_turn_fails_portrait_in_landscape():
    # A sheet turned 90 deg pokes (210 - 148) / 2 = 31 mm past the inner edge: 11 mm past the tape.
    result = FRAME.evaluate((0.16, 0.0), math.pi / 2 - 1e-9, A5)
    assert not result.success
    assert result.corner_excess_mm == pytest.approx(11.0, abs=1e-3)


def test_small_rotation_by_hand():
    # Rotating by theta about the centre moves the corner (74, 105) mm to
    # (74 cos - 105 sin, 74 sin + 105 cos); for 0.1 rad that is x = 63.14, y = 111.87:
    # 6.87 mm past the inner long edge, inside the 20 mm tape.
    result = FRAME.evaluate((0.16, 0.0), 0.1, A5)
    assert result.success
    x = 74 * math.cos(0.1) - 105 * math.sin(0.1)
    y = 74 * math.sin(0.1) + 105 * math.cos(0.1)
    expected = math.hypot(74 - x, 105 - y)
    assert result.corner_error_mm == pytest.approx(expected, rel=1e-9)


def test_evaluate_matches_vectorised_corners():
    rng = np.random.default_rng(0)
    for _ in range(50):
        xy = rng.uniform([0.0, -0.2], [0.4, 0.2])
        yaw = rng.uniform(-math.pi, math.pi)
        corners = rectangle_corners(xy - np.array(FRAME.center), wrap_half_turn(yaw), A5)
        allowed = np.array(A5) / 2 + FRAME.margin
        excess = np.sqrt((np.maximum(np.abs(corners) - allowed, 0) ** 2).sum(axis=1)).max()
        assert FRAME.evaluate(xy, yaw, A5).corner_excess_mm == pytest.approx(1000 * excess, abs=1e-9)


@pytest.mark.parametrize("preset", ["phase1", "phase2"])
def test_no_randomized_start_already_succeeds(preset):
    """The worst case is a DR box corner closest to the frame; check the corners, then 500
    episode starts drawn and settled by the env itself (its DR code, its seeding)."""
    from rllib_paper.config import EnvConfig
    from rllib_paper.envs.paper_env import PaperSquareEnv

    task, physics = TaskConfig(), PhysicsConfig()
    frame = FrameGeometry(center=task.frame_xy, inner_size=task.frame_inner_size, margin=task.success_margin)
    dr = DR_PRESETS[preset]
    for x, y, yaw in itertools.product(dr.paper_x, dr.paper_y, [*dr.paper_yaw, 0.0]):
        assert not frame.evaluate((x, y), yaw, physics.paper_size).success
    env = PaperSquareEnv(EnvConfig(randomization=dr))
    distances = []
    for seed in range(500):
        _, info = env.reset(seed=seed)
        assert not info["success"], f"seed {seed} starts inside the frame: {info['dr']}"
        for name, (low, high) in dataclasses.asdict(dr).items():
            assert low <= info["dr"][name] <= high, (seed, name)
        distances.append(info["distance"])
    assert min(distances) >= 0.039  # the sheet always travels at least ~4 cm
    assert np.mean(distances) > 0.10


@pytest.mark.parametrize("xy, yaw", [((math.nan, 0.0), 0.0), ((0.16, math.nan), 0.0), ((0.16, 0.0), math.nan)])
def test_a_nan_pose_is_never_success(xy, yaw):
    # Every corner comparison with NaN is false, so without a finiteness check a NaN pose
    # would read as "no corner outside the frame".
    assert not FRAME.evaluate(xy, yaw, A5).success
