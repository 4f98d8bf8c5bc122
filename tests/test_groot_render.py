"""Offscreen camera frames (Mesa EGL on CPU): real, not blank, distinct per camera."""

import numpy as np
import pytest

from rllib_paper.policies.groot.config import load_mapping
from rllib_paper.policies.groot.mapping import frame_key
from rllib_paper.policies.groot.policy import GrootBasePolicy


def _not_blank(image: np.ndarray) -> None:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 10, "frame is (nearly) one colour"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50


@pytest.mark.parametrize("shadows", [False, True])
def test_both_cameras_render_real_frames(shadows):
    from rllib_paper.envs.paper_env import PaperSquareEnv

    config = load_mapping("so100_dualcam").replace(image_size=(96, 128), render_shadows=shadows)
    policy = GrootBasePolicy(config, backend=None)
    env = PaperSquareEnv(dr="phase2")
    env.reset(seed=1000)
    frames = policy.extra_observations(env)
    top, wrist = frames[frame_key("top_view")][0], frames[frame_key("so101/wrist_view")][0]
    assert top.shape == wrist.shape == (96, 128, 3)
    _not_blank(top)
    _not_blank(wrist)
    assert np.abs(top.astype(int) - wrist.astype(int)).mean() > 10  # two different views
    # The sheet is white and lies in view of both cameras.
    assert (top.min(axis=2) > 200).any() and (wrist.min(axis=2) > 200).any()
    # Moving the sheet changes what the top camera sees.
    env.data.qpos[env.ids.paper_qpos + 1] += 0.1
    import mujoco

    mujoco.mj_forward(env.model, env.data)
    moved = policy.extra_observations(env)[frame_key("top_view")][0]
    assert not np.array_equal(moved, top)
    env.close()


def test_committed_reset_frames_are_what_the_default_cameras_render_now(tmp_path):
    """results/groot_frames/ holds the arm0_dualcam mapping's two cameras after a seeded reset (and
    each beside its full-quality render); `rllib-paper frames` rewrites them byte for byte."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from rllib_paper.envs.frames import save_reset_frames

    committed = Path(__file__).resolve().parents[1] / "results" / "groot_frames"
    frames = sorted(committed.glob("*.png"))
    assert len(frames) == 4
    for path in map(Path, save_reset_frames(str(tmp_path), seed=1000)):
        now, then = np.asarray(Image.open(path)), np.asarray(Image.open(committed / path.name))
        assert now.shape == then.shape and np.abs(now.astype(int) - then).mean() < 1.0, path.name
