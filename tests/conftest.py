import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def default_model():
    from rllib_paper.sim.scene import SceneIds, build_model

    model = build_model()
    return model, SceneIds.from_model(model)
