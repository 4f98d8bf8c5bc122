"""Recording a policy as a LeRobot dataset, replaying it exactly, and a BC policy trained on it.

One small recording (4 short episodes of the pusher over Ray, two workers) is shared by the
tests: it is read back in both formats, replayed bit for bit, trained on, and the trained
policy is then run as a base (in process, behind a batching actor, and through serve-policy).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rllib_paper.config import coerce_env_config
from rllib_paper.datasets.lerobot import read_dataset
from rllib_paper.datasets.record import SIM_META, TASK_STATE_KEY, RecordConfig, record
from rllib_paper.datasets.replay import replay_episode
from rllib_paper.evaluation.episodes import EpisodeRunner
from rllib_paper.imitation.bc_train import BCConfig, chunk_samples, train_bc
from rllib_paper.policies.bc import BCNetwork
from rllib_paper.policies.registry import make_base_policy, resolve_base_policy

SHORT = coerce_env_config(
    None,
    dr="phase2",
    task={"max_steps": 60, "settle_after_success_steps": 0},
    residual={"base_policy": "scripted"},
)
SEEDS = (500, 504)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("rec")
    summaries = {}
    for fmt in ("v3.0", "v2.1"):
        summaries[fmt] = record(
            RecordConfig(
                env=SHORT,
                out=str(root / fmt),
                episodes=SEEDS[1] - SEEDS[0],
                seed=SEEDS[0],
                format=fmt,
                workers=2,
                shard_size=1,
                progress=False,
            )
        )
    return root, summaries


def test_recording_holds_every_episode_in_both_formats_equal(recorded):
    root, _summaries = recorded
    v3, v2 = read_dataset(root / "v3.0"), read_dataset(root / "v2.1")
    assert v3.version == "v3.0" and v2.version == "v2.1"
    assert len(v3) == len(v2) == SEEDS[1] - SEEDS[0]
    assert [e["seed"] for e in v3.episodes] == list(range(*SEEDS))
    for k in range(len(v3)):
        a, b = v3.episode(k), v2.episode(k)
        for key in ("observation.state", "action", "observation.environment_state", TASK_STATE_KEY, "index"):
            np.testing.assert_array_equal(a[key], b[key])
        assert a["action"].dtype == np.float32 and a["observation.state"].shape[1] == 6
        assert v3.episodes[k]["dr"] == v2.episodes[k]["dr"]
    meta = json.loads((root / "v3.0" / SIM_META).read_text())
    assert meta["episodes_kept"] == len(v3) and meta["base_policy"]["kind"] == "scripted"


def test_recording_matches_the_episode_run_in_process(recorded):
    """The same seed gives the same frames on a Ray worker as here, so sharding changes nothing."""
    from rllib_paper.datasets.record import Float32Targets, record_episode
    from rllib_paper.policies.registry import make_base_policy

    root, _ = recorded
    dataset = read_dataset(root / "v3.0")
    runner = EpisodeRunner(SHORT, base_policy=Float32Targets(make_base_policy("scripted", SHORT)))
    local = record_episode(runner, SEEDS[0] + 1)
    np.testing.assert_array_equal(local["columns"]["action"], dataset.actions(1))
    np.testing.assert_array_equal(local["columns"]["observation.state"], dataset.states(1))


def test_replay_of_a_recorded_episode_is_exact(recorded):
    root, _ = recorded
    for fmt in ("v3.0", "v2.1"):
        result = replay_episode(root / fmt, 2)
        assert result.exact is True, fmt
        assert max(j.max_abs_deg for j in result.joints) == 0.0


def test_replay_detects_a_changed_action(recorded, tmp_path):
    """Exactness is a real check: one action nudged by 1e-3 rad and the replay is no longer exact."""
    import shutil

    import pyarrow.parquet as pq

    root, _ = recorded
    copy = tmp_path / "nudged"
    shutil.copytree(root / "v2.1", copy)
    path = next((copy / "data").rglob("episode_000000.parquet"))
    table = pq.read_table(path).to_pandas()
    actions = np.stack(table["action"].to_numpy())
    actions[5, 1] += 1e-3
    table["action"] = list(actions.astype(np.float32))
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(table, schema=pq.read_schema(path), preserve_index=False), path)
    result = replay_episode(copy, 0)
    assert result.exact is False and result.joints[1].max_abs_deg > 0


def test_chunk_samples_repeat_the_last_action_past_the_end():
    observations = np.zeros((5, 25), np.float32)
    actions = np.arange(30, dtype=np.float32).reshape(5, 6)
    _, chunks = chunk_samples(observations, actions, BCNetwork(chunk_length=4, execution_horizon=2))
    assert chunks.shape == (5, 4, 6)
    np.testing.assert_array_equal(chunks[3], actions[[3, 4, 4, 4]])  # qpos are zero: delta = absolute


@pytest.fixture(scope="module")
def bc_run(recorded, tmp_path_factory):
    root, _ = recorded
    run = tmp_path_factory.mktemp("bc") / "run"
    config = BCConfig(network=BCNetwork(hidden=(64, 64)), epochs=30, batch_size=64, val_fraction=0.25)
    return run, train_bc(root / "v3.0", run, config, progress=False)


def test_bc_trains_and_serves_as_a_base_policy(recorded, bc_run):
    root, _ = recorded
    run, summary = bc_run
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 31 and (run / "loss.png").stat().st_size > 0
    first, last = float(metrics[1].split(",")[1]), float(metrics[-1].split(",")[1])
    assert last < 0.75 * first, (first, last)  # it learnt something about the demonstrations
    assert summary["val_frames"] > 0

    spec = f"bc:{run}?execute=4"
    policy = make_base_policy(spec, SHORT)
    assert (policy.chunk_length, policy.execution_horizon) == (16, 4)
    dataset = read_dataset(root / "v3.0")
    observations = dataset.episode(0)[TASK_STATE_KEY][:3].astype(np.float64)
    chunk = policy.act({"state": observations, "target": observations[:, :6]})
    assert chunk.shape == (3, 16, 6) and np.isfinite(chunk).all()
    # Its record names the weights, not just the directory: retraining changes the base's identity.
    record = resolve_base_policy(spec)
    assert len(record["params"]["weights_sha256"]) == 16 and record["params"]["network"]["execution_horizon"] == 4

    episode = EpisodeRunner(SHORT, policy_spec=spec).run(SEEDS[0])
    assert episode.steps > 0 and not episode.sim_unstable


def _first_chunk(spec: str) -> np.ndarray:
    runner = EpisodeRunner(SHORT, policy_spec=spec)
    runner.env.reset(seed=SEEDS[0])
    return runner.env.base_target.copy()


def test_bc_behind_a_batching_actor_proposes_what_it_does_in_process(bc_run):
    run, _ = bc_run
    local = _first_chunk(f"bc:{run}")
    served = _first_chunk(f"actor:bc:{run}#name=test-bc-actor&timeout=60")
    np.testing.assert_allclose(served, local, atol=1e-6)


def test_bc_served_over_the_groot_protocol_proposes_what_it_does_in_process(bc_run, tmp_path):
    import yaml

    from rllib_paper.policies.groot.config import CONFIG_DIR, load_mapping
    from rllib_paper.policies.groot.server import PolicyServer

    run, _ = bc_run
    # The stand-in server hands our policy the sim's 25-D state under state.sim, as BC needs it.
    small = {"image_size": [48, 64], "render_shadows": False, "render_samples": 0, "sim_state_key": "state.sim"}
    data = {**yaml.safe_load((CONFIG_DIR / "so100_dualcam.yaml").read_text()), **small}
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    server = PolicyServer(f"bc:{run}", load_mapping(path), port=0)
    port = server.bind()
    server.start_thread()
    try:
        served = _first_chunk(f"groot:tcp://127.0.0.1:{port}?config={path}&timeout=20")
    finally:
        server.stop()
    np.testing.assert_allclose(served, _first_chunk(f"bc:{run}"), atol=1e-5)


def test_bc_rejects_a_bad_execution_horizon(bc_run, tmp_path):
    from rllib_paper.config import ConfigError

    run, _ = bc_run
    with pytest.raises(ConfigError, match=r"execute=17: allowed range is \[1, 16\]"):
        resolve_base_policy(f"bc:{run}?execute=17")
    with pytest.raises(ConfigError, match=r"bc_policy\.json does not exist"):
        resolve_base_policy(f"bc:{tmp_path / 'nothing'}")


def test_record_refuses_to_overwrite_and_resumes_an_interrupted_recording(recorded, tmp_path):
    from rllib_paper.config import ConfigError
    from rllib_paper.datasets.record import Float32Targets, _stage, record_episode

    root, _ = recorded
    with pytest.raises(ConfigError, match="already holds a dataset"):
        record(RecordConfig(env=SHORT, out=str(root / "v3.0"), episodes=1, seed=SEEDS[0], progress=False))
    # An interrupted recording: one episode staged, then the run died. The staged episode is
    # marked so that a re-recording of it would show.
    out = tmp_path / "ds"
    staging = tmp_path / "ds.recording"
    staging.mkdir()
    runner = EpisodeRunner(SHORT, base_policy=Float32Targets(make_base_policy("scripted", SHORT)))
    episode = record_episode(runner, SEEDS[0])
    episode["extra"]["dr"]["marker"] = 1.0
    _stage(staging, episode)
    config = RecordConfig(env=SHORT, out=str(out), episodes=2, seed=SEEDS[0], workers=1, progress=False)
    with pytest.raises(ConfigError, match="interrupted recording: pass --resume"):
        record(config)
    summary = record(RecordConfig(**{**config.__dict__, "resume": True}))
    dataset = read_dataset(out)
    assert summary["episodes_kept"] == 2 and [e["seed"] for e in dataset.episodes] == [SEEDS[0], SEEDS[0] + 1]
    assert dataset.episodes[0]["dr"]["marker"] == 1.0 and "marker" not in dataset.episodes[1]["dr"]
    assert not staging.exists()


def test_cli_replay_prints_per_joint_errors(recorded):
    root, _ = recorded
    out = subprocess.run(
        [sys.executable, "-m", "rllib_paper", "replay", str(root / "v2.1"), "--episode", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "shoulder_pan" in out.stdout and "exact reproduction of the recorded episode: yes" in out.stdout


def test_a_real_robots_dataset_replays_the_arm_from_its_first_recorded_state(tmp_path, write_paper_return):
    """No seed, no sheet pose: the arm starts where the recording starts and the sheet where told."""
    root = write_paper_return(tmp_path / "paper_return", lengths=(12,))
    result = replay_episode(root, 0, layout="paper_return", sheet_start=(0.25, 0.02, 0.1))
    assert result.seed is None and result.exact is None and result.frames == 12 and result.fps == 30
    assert [j.joint for j in result.joints] == [f"motor_{i}" for i in range(1, 7)]
    assert result.joints[0].mean_abs_deg < result.joints[0].max_abs_deg  # frame 0 is exact, later ones track
    assert result.sheet_end["x"] == pytest.approx(0.25, abs=0.01)


def test_recorded_camera_videos_have_one_frame_per_dataset_frame(ray_local, tmp_path):
    from rllib_paper.evaluation.videos import count_frames

    env = coerce_env_config(SHORT, task={**SHORT.to_dict()["task"], "max_steps": 12})
    record(
        RecordConfig(
            env=env,
            out=str(tmp_path / "cams"),
            episodes=1,
            seed=SEEDS[0],
            cameras=("top", "wrist"),
            image_size=(32, 48),
            workers=1,
            progress=False,
        )
    )
    dataset = read_dataset(tmp_path / "cams")
    assert dataset.info["features"]["observation.images.top"]["shape"] == [32, 48, 3]
    for key in ("observation.images.top", "observation.images.wrist"):
        assert count_frames(dataset.video_path(0, key)) == dataset.episodes[0]["length"]


def test_action_noise_is_seeded_per_episode_recorded_as_sent_and_replays_exactly(tmp_path):
    from rllib_paper.datasets.lerobot import write_dataset
    from rllib_paper.datasets.record import Float32Targets, features, record_episode

    def run(noise):
        runner = EpisodeRunner(SHORT, base_policy=Float32Targets(make_base_policy("scripted", SHORT), noise))
        return record_episode(runner, SEEDS[0])

    clean, noisy, again = run(0.0), run(0.01), run(0.01)
    np.testing.assert_array_equal(noisy["columns"]["action"], again["columns"]["action"])
    gap = np.abs(noisy["columns"]["action"] - clean["columns"]["action"])
    assert 0.002 < float(gap.mean()) < 0.05  # noise of 0.01 rad, plus where the perturbed episode went
    # The dataset holds the noisy targets as sent: the replay reproduces the perturbed episode.
    root = tmp_path / "noisy"
    write_dataset(root, [(noisy["columns"], "t", noisy["extra"])], fps=30, features=features(RecordConfig()))
    import json

    from rllib_paper.datasets.record import SIM_META

    (root / SIM_META).write_text(json.dumps({"env": SHORT.to_dict()}))
    assert replay_episode(root, 0).exact is True


def test_temporal_ensemble_blends_every_earlier_chunks_prediction_for_this_step():
    from rllib_paper.policies.bc import TemporalEnsemble

    calls = []

    def predict(observations):  # chunk number k predicts k + step offset / 10 for each step ahead
        calls.append(len(calls))
        return np.stack([np.full((4, 6), len(calls) - 1 + np.arange(4)[:, None] / 10)])

    ensemble = TemporalEnsemble(predict, horizon=4, m=0.5)
    obs = {"state": np.zeros((1, 25)), "target": np.zeros((1, 6))}
    first = ensemble.act(obs)
    assert first.shape == (1, 1, 6) and first[0, 0, 0] == pytest.approx(0.0)
    second = ensemble.act(obs)  # chunk 0 says 0.1 for this step, chunk 1 says 1.0; the older weighs more
    w = np.exp(-0.5)
    assert second[0, 0, 0] == pytest.approx((0.1 + w * 1.0) / (1 + w))
    for _ in range(5):
        out = ensemble.act(obs)
    assert len(ensemble._past) == 4  # only chunks that still predict this step count
    assert out[0, 0, 0] == pytest.approx(
        sum(np.exp(-0.5 * i) * (3 + i + (3 - i) / 10) for i in range(4)) / sum(np.exp(-0.5 * i) for i in range(4))
    )
    ensemble.reset()
    assert ensemble._past == []


def test_a_resumed_recording_records_again_the_episodes_whose_base_failed(tmp_path):
    from rllib_paper.datasets.record import Float32Targets, _stage, record_episode

    staging = tmp_path / "ds.recording"
    staging.mkdir()
    runner = EpisodeRunner(SHORT, base_policy=Float32Targets(make_base_policy("scripted", SHORT)))
    episode = record_episode(runner, SEEDS[0])
    episode["extra"].update(base_policy_failed=True, dr={**episode["extra"]["dr"], "marker": 1.0})
    _stage(staging, episode)
    config = RecordConfig(env=SHORT, out=str(tmp_path / "ds"), episodes=1, seed=SEEDS[0], workers=1, resume=True)
    record(RecordConfig(**{**config.__dict__, "progress": False}))
    dataset = read_dataset(tmp_path / "ds")
    assert "marker" not in dataset.episodes[0]["dr"] and dataset.episodes[0]["base_policy_failed"] is False


def test_episode_videos_refuse_a_view_too_small_even_when_two_side_by_side_would_pass():
    from rllib_paper.config import ConfigError
    from rllib_paper.evaluation.videos import EpisodeVideo

    with pytest.raises(ConfigError, match="video size 16x8: expected even sizes of at least 16 pixels"):
        EpisodeVideo(16, 8)
