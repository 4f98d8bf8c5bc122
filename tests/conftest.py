import os
import shutil
import tempfile

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def default_model():
    from rllib_paper.sim.scene import SceneIds, build_model

    model = build_model()
    return model, SceneIds.from_model(model)


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray for the session, its files under pytest's tmp dir; shut down at the end."""
    ray = pytest.importorskip("ray")
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
