"""Simplified visual meshes: the asked-for share of triangles, inside the original's bounds,
the same every time, and drawn at a fraction of a full frame's cost."""

import mujoco
import numpy as np
import pytest

from rllib_paper.config import PhysicsConfig, TaskConfig
from rllib_paper.sim.decimate import cluster_vertices, decimate
from rllib_paper.sim.scene import _asset_vertices, build_spec, find_id

STALLING_MESH = "so101/base_motor_holder_so101_v1"  # quadric collapse alone stops at 19 % of it


@pytest.fixture(scope="module")
def cad_mesh():
    model = build_spec(PhysicsConfig(), TaskConfig()).compile()
    return _asset_vertices(model, find_id(model, mujoco.mjtObj.mjOBJ_MESH, STALLING_MESH))


@pytest.mark.parametrize("detail", [0.1, 0.03])
def test_decimation_reaches_the_asked_share_of_triangles(cad_mesh, detail):
    vertices, faces = cad_mesh
    points, triangles = decimate(vertices, faces, detail)
    assert detail * len(faces) * 0.98 <= len(triangles) <= detail * len(faces) * 1.25
    assert triangles.min() >= 0 and triangles.max() < len(points)
    assert np.all(points.min(axis=0) >= vertices.min(axis=0) - 1e-6)  # means of merged vertices stay inside
    assert np.all(points.max(axis=0) <= vertices.max(axis=0) + 1e-6)
    again = decimate(vertices, faces, detail)
    np.testing.assert_array_equal(again[0], points)
    np.testing.assert_array_equal(again[1], triangles)


def test_clustering_merges_close_vertices_and_drops_collapsed_triangles():
    # Two triangles sharing an edge, plus a sliver whose two corners fall in one cell.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0.01, 0.0, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [1, 3, 2], [0, 4, 2]])
    points, triangles = cluster_vertices(vertices, faces, cell=0.5)
    assert len(triangles) == 2 and len(points) == 4
    np.testing.assert_allclose(points[triangles[0]][0], [0.005, 0.0, 0.0])  # vertices 0 and 4 merged
