# First: rllib_paper sets the process defaults numpy and MuJoCo read at import (headless GL,
# CPU-independent BLAS kernels), exactly as the CLI does.
import rllib_paper  # noqa: F401, I001

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="session")
def default_model():
    from rllib_paper.sim.scene import SceneIds, build_model

    model = build_model()
    return model, SceneIds.from_model(model)


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray for the session, its files under pytest's tmp dir; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def short_tmp():
    """Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep."""
    path = tempfile.mkdtemp(prefix="rp-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run_cluster_script(short_tmp):
    """Run a `ray.cluster_utils.Cluster` script in its own process (a fresh Ray, short socket
    paths) and return the JSON object its last stdout line prints."""

    def run(script: str, *args: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "RAY_TMPDIR": short_tmp},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def _paper_return_dataset(root: Path, *, names=None, lengths=(4, 6)) -> Path:
    """The real SO-101 paper_return dataset's shape, built by hand: v2.1, 30 fps, motor_1..motor_6, a camera."""
    names = names or [f"motor_{i}" for i in range(1, 7)]
    vector = {"dtype": "float32", "shape": [6], "names": names}
    features = {
        "action": vector,
        "observation.state": vector,
        "observation.images.front": {
            "dtype": "video",
            "shape": [480, 640, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.fps": 30.0, "video.codec": "av1", "video.pix_fmt": "yuv420p", "has_audio": False},
        },
        **{key: {"dtype": "int64", "shape": [1], "names": None} for key in ("frame_index", "episode_index", "index")},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": "v2.1",
        "robot_type": "so101",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": 1,
        "total_videos": len(lengths),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": 30,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "return the paper"}) + "\n")
    (root / "meta/episodes.jsonl").write_text(
        "".join(
            json.dumps({"episode_index": i, "tasks": ["return the paper"], "length": n}) + "\n"
            for i, n in enumerate(lengths)
        )
    )
    (root / "data/chunk-000").mkdir(parents=True)
    start = 0
    for i, n in enumerate(lengths):
        state = np.linspace(-1.0, 1.0, n * 6, dtype=np.float32).reshape(n, 6) + i
        table = pa.table(
            {
                "action": pa.FixedSizeListArray.from_arrays(pa.array((state + 0.1).reshape(-1)), 6),
                "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), 6),
                "timestamp": pa.array(np.arange(n, dtype=np.float32) / 30),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, i, dtype=np.int64)),
                "index": pa.array(np.arange(start, start + n, dtype=np.int64)),
                "task_index": pa.array(np.zeros(n, dtype=np.int64)),
            }
        )
        pq.write_table(table, root / f"data/chunk-000/episode_{i:06d}.parquet")
        video = root / f"videos/chunk-000/observation.images.front/episode_{i:06d}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"not decoded here")
        start += n
    return root


@pytest.fixture
def write_paper_return():
    """Builds a dataset in the real SO-101 paper_return layout (v2.1, motor_1..motor_6) by hand."""
    return _paper_return_dataset
