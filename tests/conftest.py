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
