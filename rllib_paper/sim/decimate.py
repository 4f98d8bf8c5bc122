"""Fewer triangles for the arm's visual meshes, as many as asked for (render_detail).

A software rasteriser's frame costs about its triangle count, so a camera-fed base policy
renders a simplified arm. Quadric edge collapse (fast-simplification) keeps the shapes best, but
on the SO-101's CAD meshes it stalls at 19 to 30 % of the triangles whatever its target or
aggressiveness: every remaining collapse would flip a face along the sharp CAD edges, and its
flip test refuses them all (measured: a 37.5 k-triangle mesh stops at 7,244 for targets of 10 %
and 3 %). Below that, the collapsed mesh is clustered (Rossignac-Borrel): vertices snapped to
a cubic grid merge into their mean, and triangles that lose a corner to the merge drop out;
the grid's cell is the largest (found by bisection) that keeps at least the target count, so
the result has the asked-for fraction of triangles within a few per cent. Deterministic: the
same mesh and fraction always give the same triangles.

Only meshes that collide with nothing are ever simplified (sim/scene.py), so physics is
untouched.
"""

from __future__ import annotations

import numpy as np

STALLED = 1.25  # quadric result above this multiple of the target: finish by clustering
BISECTIONS = 14  # the cell to 0.5 % (bisection in log space over six decades)


def decimate(vertices: np.ndarray, faces: np.ndarray, detail: float) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) with about ``detail`` of the input's triangles (at least 4)."""
    import fast_simplification

    target = max(4, round(len(faces) * detail))
    points, triangles = fast_simplification.simplify(
        np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.int32), target_reduction=1.0 - detail
    )
    if len(triangles) <= STALLED * target:
        return points, triangles
    points = points.astype(np.float64)
    best = (points, triangles)
    low, high = 1e-6 * float(np.ptp(points, axis=0).max()), float(np.ptp(points, axis=0).max())
    for _ in range(BISECTIONS):  # the largest cell that keeps >= target triangles
        cell = (low * high) ** 0.5  # geometric midpoint: the cell spans decades
        clustered = cluster_vertices(points, triangles, cell)
        if len(clustered[1]) >= target:
            best, low = clustered, cell
        else:
            high = cell
    return best


def cluster_vertices(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge the vertices in each cube of side ``cell`` into their mean; drop the triangles that
    collapse (two corners in one cube) and duplicates; keep the surviving triangles' order."""
    keys = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    counts = np.bincount(cluster)
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, cluster, vertices)
    merged /= counts[:, None]
    tri = cluster[faces]
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    _, first = np.unique(np.sort(tri, axis=1), axis=0, return_index=True)
    tri = tri[np.sort(first)]
    used = np.unique(tri)
    index = np.full(len(merged), -1, dtype=np.int64)
    index[used] = np.arange(len(used))
    return merged[used], index[tri]
