"""Episode videos: chosen from the finished table, rendered on the workers, never changing the episode."""

import json

import pandas as pd

from rllib_paper.cli import main
from rllib_paper.config import EnvConfig, RandomizationConfig, ResidualConfig, TaskConfig
from rllib_paper.evaluation.distributed import EvalConfig, evaluate
from rllib_paper.evaluation.videos import choose_video_seeds, count_frames

VOLATILE = ["wall_seconds", "node_id", "worker_pid"]
# Short and cheap to render: the arm holds its home pose over sheets dropped around the frame; seeds
# 2 and 3 start inside (success at step 1, then 3 settle steps), the other six never get there (12 steps).
ENV = EnvConfig(
    randomization=RandomizationConfig(paper_x=(0.15, 0.21), paper_y=(-0.01, 0.01), paper_yaw=(0.0, 0.0)),
    residual=ResidualConfig(base_policy="zero"),
    task=TaskConfig(max_steps=12),
)


def test_videos_go_to_the_first_failures_and_successes_by_seed():
    table = pd.DataFrame({"seed": [9, 3, 5, 7, 1], "success": [True, False, True, False, False]})
    assert choose_video_seeds(table, 4) == [1, 3, 5, 9]
    assert choose_video_seeds(table, 3) == [1, 3, 5]
    assert choose_video_seeds(table, 5) == [1, 3, 7, 5, 9]  # too few successes: more failures
    assert choose_video_seeds(table.sort_values("success"), 2) == [1, 5]  # row order does not matter
    assert choose_video_seeds(table, 0) == []


def test_eval_videos_decode_to_one_frame_per_step_plus_reset_and_leave_the_episodes_unchanged(ray_local, tmp_path):
    def config(name, **kw):
        return EvalConfig(
            env=ENV,
            episodes=8,
            seed=0,
            workers=2,
            shard_size=4,
            settle_steps=3,
            out=str(tmp_path / name),
            progress=False,
            video_size=(48, 64),
            **kw,
        )

    plain = evaluate(config("plain"))
    filmed = evaluate(config("filmed", videos=4))
    a, b = (pd.read_parquet(tmp_path / n / "episodes.parquet").drop(columns=VOLATILE) for n in ("plain", "filmed"))
    pd.testing.assert_frame_equal(a, b)
    assert plain["results"] == filmed["results"] and plain["videos"] == []
    by_seed = a.set_index("seed")
    assert sorted(by_seed.index[by_seed["success"]]) == [2, 3]
    videos = json.loads((tmp_path / "filmed" / "report.json").read_text())["videos"]
    assert [v["seed"] for v in videos] == [0, 1, 2, 3]  # the first two failures, the first two successes
    for video in videos:
        path = tmp_path / "filmed" / video["file"]
        assert video["file"].startswith("videos/") and path.suffix == ".mp4"
        assert video["success"] == bool(by_seed.loc[video["seed"], "success"])
        # The reset frame, then one per control step (settle steps included).
        assert count_frames(path) == video["frames"] == by_seed.loc[video["seed"], "steps"] + 1


def test_rollout_writes_one_episode_video(tmp_path, capsys):
    path = tmp_path / "one.mp4"
    argv = ["rollout", "--policy", "zero", "--episodes", "1", "--seed", "3", "--max-steps", "6", "--quiet"]
    assert main([*argv, "--video", str(path), "--video-size", "48", "64"]) == 0
    assert count_frames(path) == 7
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 1
