"""The inverse kinematics the scripted pusher runs every control step."""

import numpy as np
import pytest

from rllib_paper.config import TaskConfig
from rllib_paper.sim.kinematics import ARM_JOINTS, FingertipIK
from rllib_paper.sim.scene import build_kinematic_model, build_model


def _random_configs(model, count, seed=0):
    ik = FingertipIK(model)
    rng = np.random.default_rng(seed)
    low = np.append(ik._low, 0.0)
    high = np.append(ik._high, 0.5)
    return rng.uniform(low, high, size=(count, ARM_JOINTS + 1))


def test_kinematic_model_matches_the_scene_to_the_bit():
    """The geom-free arm model must give the scene's fingertip, jaw axis and IK answers exactly,
    or the pusher's actions (and every result recorded with them) would change."""
    scene, arm = FingertipIK(build_model()), FingertipIK(build_kinematic_model())
    assert arm.model.ngeom == 0 and arm.model.nbody < scene.model.nbody
    axis = np.array([0.4794, 0.0, -0.8776])
    for q in _random_configs(scene.model, 40):
        for a, b in zip(scene.forward(q), arm.forward(q), strict=True):
            np.testing.assert_array_equal(a, b)
        tip, _ = scene.forward(q)
        target = tip + np.array([0.01, -0.02, 0.005])
        q_scene, e_scene = scene.solve(target, q, axis=axis, iterations=4)
        q_arm, e_arm = arm.solve(target, q, axis=axis, iterations=4)
        np.testing.assert_array_equal(q_scene, q_arm)
        assert e_scene == e_arm


def test_warm_started_solves_match_fresh_ones():
    """Skipping the first kinematics pass when the data already holds q_init must not change
    any answer: a chain of warm-started solves equals the same solves on fresh solvers."""
    model = build_kinematic_model()
    warm = FingertipIK(model)
    q = np.asarray(TaskConfig().home_qpos, dtype=float)
    start, goal = warm.forward(q)[0], np.array([0.25, 0.06, 0.01])
    axis = np.array([0.4794, 0.0, -0.8776])
    skipped = 0
    for step in range(61):  # the fingertip's path to a point over the table, 60 control steps
        target = start + (goal - start) * step / 60
        before = warm.kinematics_passes
        q_warm, e_warm = warm.solve(target, q, axis=axis, iterations=4, tolerance=5e-4, axis_tolerance=5e-2)
        fresh = FingertipIK(model)
        q_fresh, e_fresh = fresh.solve(target, q, axis=axis, iterations=4, tolerance=5e-4, axis_tolerance=5e-2)
        np.testing.assert_array_equal(q_warm, q_fresh)
        assert e_warm == e_fresh
        skipped += fresh.kinematics_passes - (warm.kinematics_passes - before)
        q = q_warm
    assert skipped > 0  # the cache was used, so this test exercised it
    position_error = np.linalg.norm(warm.forward(q)[0] - target)
    assert position_error < 1e-3  # the fingertip tracked the moving target to within a millimetre


def test_ik_refuses_a_partial_joint_vector():
    ik = FingertipIK(build_kinematic_model())
    with pytest.raises(ValueError, match="got 5 values, expected all 6 robot joints"):
        ik.solve(np.zeros(3), np.zeros(5))
