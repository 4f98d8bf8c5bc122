"""The LeRobot dataset layer: both formats round-trip, a real-robot v2.1 layout reads, bad datasets fail by name."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rllib_paper.datasets.lerobot import (
    FORMATS,
    LAYOUTS,
    DatasetError,
    DatasetWriter,
    read_dataset,
    write_dataset,
)

FPS = 20
LENGTHS = (5, 9, 3)
TASKS = ("push the sheet into the frame", "push the sheet into the frame", "return the sheet")


def _features() -> dict:
    return {
        **LAYOUTS["rllib_paper"].features(),
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
    }


def _episodes() -> list[tuple[dict, str, dict]]:
    rng = np.random.default_rng(0)
    out = []
    for i, length in enumerate(LENGTHS):
        columns = {
            "observation.state": rng.normal(size=(length, 6)).astype(np.float32),
            "action": rng.normal(size=(length, 6)).astype(np.float32),
            "observation.environment_state": rng.normal(size=(length, 7)).astype(np.float32),
            "next.reward": rng.normal(size=length).astype(np.float32),
            "next.done": np.arange(length) == length - 1,
        }
        extra = {"seed": 1000 + i, "success": i != 1, "dr": {"friction": 0.5 + i / 10, "paper_mass": np.float64(0.004)}}
        out.append((columns, TASKS[i], extra))
    return out


def _write(root: Path, format: str, **kwargs) -> Path:
    return write_dataset(root, _episodes(), fps=FPS, features=_features(), format=format, **kwargs)


@pytest.mark.parametrize("format", FORMATS)
def test_round_trip_keeps_every_column_the_extras_and_the_totals(tmp_path, format):
    root = _write(tmp_path / format, format, data_file_max_episodes=2)
    dataset = read_dataset(root)
    assert dataset.version == format and dataset.fps == FPS and len(dataset) == 3
    assert dataset.tasks == ["push the sheet into the frame", "return the sheet"]
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert info["codebase_version"] == format and info["robot_type"] == "so101_follower"
    assert info["splits"] == {"train": "0:3"} and info["video_path"] is None
    assert info["features"]["action"]["names"] == list(LAYOUTS["rllib_paper"].joint_names)
    if format == "v3.0":
        assert {"data_files_size_in_mb", "video_files_size_in_mb"} <= set(info)
        assert sorted(p.name for p in (root / "data/chunk-000").iterdir()) == ["file-000.parquet", "file-001.parquet"]
        assert (root / "meta/episodes/chunk-000/file-000.parquet").is_file()
        assert (root / "meta/tasks.parquet").is_file()
        episodes_table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
        assert [row["data/file_index"] for row in episodes_table] == [0, 0, 1]
        assert [row["dataset_from_index"] for row in episodes_table] == [0, 5, 14]
        assert episodes_table[2]["stats/action/count"] == [3]
    else:
        assert {"total_chunks", "total_videos"} <= set(info)
        assert len(list((root / "data/chunk-000").glob("episode_*.parquet"))) == 3
        for name in ("tasks.jsonl", "episodes.jsonl", "episodes_stats.jsonl"):
            assert (root / "meta" / name).is_file()

    written = _episodes()
    index = []
    for i, (columns, task, extra) in enumerate(written):
        episode = dataset.episode(i)
        assert dataset.episodes[i] == {"episode_index": i, "length": LENGTHS[i], "tasks": [task], **_plain(extra)}
        for key, values in columns.items():
            assert episode[key].dtype == values.dtype, key
            np.testing.assert_array_equal(episode[key], values, err_msg=key)
        frames = np.arange(LENGTHS[i])
        np.testing.assert_array_equal(episode["frame_index"], frames)
        np.testing.assert_array_equal(episode["timestamp"], (frames / FPS).astype(np.float32))
        assert set(episode["episode_index"]) == {i}
        assert [dataset.tasks[t] for t in set(episode["task_index"])] == [task]
        np.testing.assert_array_equal(dataset.states(i), columns["observation.state"])
        np.testing.assert_array_equal(dataset.actions(i), columns["action"])
        np.testing.assert_array_equal(dataset.environment_states(i), columns["observation.environment_state"])
        assert dataset.states(i).dtype == np.float32 and dataset.states(i).shape == (LENGTHS[i], 6)
        index.extend(episode["index"])
    assert index == list(range(sum(LENGTHS)))  # the global frame number runs on across episodes and files
    stats = dataset.stats["action"]
    assert stats["count"] == [sum(LENGTHS)] and len(stats["mean"]) == 6
    np.testing.assert_allclose(stats["std"], np.concatenate([c["action"] for c, _, _ in written]).std(0), rtol=1e-6)


def _plain(extra):
    return {"seed": extra["seed"], "success": extra["success"], "dr": {k: float(v) for k, v in extra["dr"].items()}}


def test_both_formats_read_back_the_same_dataset(tmp_path):
    v3, v2 = read_dataset(_write(tmp_path / "v3", "v3.0")), read_dataset(_write(tmp_path / "v2", "v2.1"))
    assert v3.episodes == v2.episodes and v3.tasks == v2.tasks
    for i in range(len(v3)):
        a, b = v3.episode(i), v2.episode(i)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert v3.stats == v2.stats


def test_v3_tasks_parquet_keeps_the_pandas_index_lerobot_looks_tasks_up_in(tmp_path):
    import pandas as pd

    tasks = pd.read_parquet(_write(tmp_path / "d", "v3.0") / "meta/tasks.parquet")
    assert tasks.index.name == "task" and int(tasks.loc["return the sheet"].task_index) == 1


def test_the_default_joint_names_are_the_scene_joints():
    from rllib_paper.sim.scene import JOINT_NAMES

    assert LAYOUTS["rllib_paper"].joint_names == tuple(f"{name}.pos" for name in JOINT_NAMES)


def test_a_paper_return_v21_dataset_reads_with_its_layout(tmp_path, write_paper_return):
    dataset = read_dataset(write_paper_return(tmp_path / "paper_return"), layout="paper_return")
    assert (dataset.version, dataset.fps, len(dataset), dataset.tasks) == ("v2.1", 30, 2, ["return the paper"])
    assert dataset.layout is LAYOUTS["paper_return"] and dataset.stats is None
    states = dataset.states(1)
    assert states.shape == (6, 6) and states.dtype == np.float32
    np.testing.assert_allclose(dataset.actions(1), states + 0.1, atol=1e-6)
    np.testing.assert_array_equal(dataset.episode(1)["index"], np.arange(4, 10))
    assert dataset.video_path(0, "observation.images.front").name == "episode_000000.mp4"
    with pytest.raises(DatasetError, match="no environment state: the layout 'paper_return'"):
        dataset.environment_states(0)
    # The v2.0-style {"motors": [...]} names read the same.
    nested = write_paper_return(tmp_path / "nested", names={"motors": [f"motor_{i}" for i in range(1, 7)]})
    assert len(read_dataset(nested, "paper_return")) == 2


def test_a_layout_refuses_a_dataset_whose_joints_it_does_not_know(tmp_path, write_paper_return):
    root = write_paper_return(tmp_path / "paper_return")
    with pytest.raises(DatasetError) as caught:
        read_dataset(root)  # our layout
    message = str(caught.value)
    assert str(root / "meta/info.json") in message and "features['observation.state'].names are" in message
    assert "motor_1" in message and "shoulder_pan.pos" in message


def _data_file(root: Path) -> Path:
    return sorted((root / "data").glob("*/*.parquet"))[0]


def _rewrite_action(path: Path, values: pa.Array) -> None:
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index("action"), "action", values), path)


def _errors():
    def missing_info(root):
        (root / "meta/info.json").unlink()
        return root / "meta/info.json", None

    def truncated(root):
        path = _data_file(root)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "truncated"

    def wrong_shape_in_info(root):
        info = json.loads((root / "meta/info.json").read_text())
        info["features"]["action"]["shape"] = [7]
        (root / "meta/info.json").write_text(json.dumps(info))
        return root / "meta/info.json", "features['action'].shape is [7]; expected [6]"

    def wrong_shape_in_data(root):
        path = _data_file(root)
        rows = pq.read_metadata(path).num_rows
        _rewrite_action(path, pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * 7, np.float32)), 7))
        return path, "column 'action'"

    def wrong_dtype(root):
        path = _data_file(root)
        rows = pq.read_metadata(path).num_rows
        _rewrite_action(path, pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * 6, np.float64)), 6))
        return (
            path,
            "column 'action' is fixed_size_list<element: double>[6]; meta/info.json features['action'] declares",
        )

    def unknown_version(root):
        info = json.loads((root / "meta/info.json").read_text())
        info["codebase_version"] = "v4.0"
        (root / "meta/info.json").write_text(json.dumps(info))
        return root / "meta/info.json", "codebase_version is 'v4.0'"

    return [missing_info, truncated, wrong_shape_in_info, wrong_shape_in_data, wrong_dtype, unknown_version]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("breaks", _errors(), ids=lambda f: f.__name__)
def test_a_bad_dataset_fails_naming_the_file_and_the_field(tmp_path, format, breaks):
    root = _write(tmp_path / "d", format)
    path, field = breaks(root)
    with pytest.raises(DatasetError) as caught:
        read_dataset(root)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert field is None or field in message, message
    assert caught.value.path == path


@pytest.mark.parametrize("format", FORMATS)
def test_a_missing_data_file_or_column_is_named(tmp_path, format):
    root = _write(tmp_path / "gone", format, data_file_max_episodes=2)
    gone = sorted((root / "data").glob("*/*.parquet"))[-1]
    gone.unlink()
    with pytest.raises(DatasetError, match=rf"^{gone}: is missing; .*episode_index 2"):
        read_dataset(root)
    root = _write(tmp_path / "column", format)
    path = _data_file(root)
    pq.write_table(pq.read_table(path).drop_columns(["next.reward"]), path)
    with pytest.raises(DatasetError, match=rf"^{path}: column 'next.reward' is missing"):
        read_dataset(root)


def test_a_directory_that_is_not_there_points_at_downloading_it(tmp_path):
    with pytest.raises(DatasetError, match=r"local directories only.*huggingface-cli download --repo-type dataset"):
        read_dataset(tmp_path / "someone/paper_return")


def test_the_writer_refuses_columns_that_do_not_match_the_features(tmp_path):
    columns, task, extra = _episodes()[0]
    writer = DatasetWriter(tmp_path / "w", fps=FPS, features=_features())
    with pytest.raises(DatasetError, match=r"columns\['action'\].shape is \[5, 7\]; expected \[T, 6\]"):
        writer.add_episode({**columns, "action": np.zeros((5, 7), np.float32)}, task)
    with pytest.raises(DatasetError, match=r"columns\['next.reward'\] is missing"):
        writer.add_episode({k: v for k, v in columns.items() if k != "next.reward"}, task)
    with pytest.raises(DatasetError, match=r"columns\['index'\] is a frame column"):
        writer.add_episode({**columns, "index": np.arange(5)}, task)
    with pytest.raises(DatasetError, match=r"extra\['stats'\] is a name the episodes table uses"):
        writer.add_episode(columns, task, {"stats": 1})
    with pytest.raises(DatasetError, match=r"features\['action'\].shape is \[7\]; expected \[6\]"):
        DatasetWriter(tmp_path / "x", fps=FPS, features={**_features(), "action": {"dtype": "float32", "shape": [7]}})
    assert writer.add_episode(columns, task, extra) == 0  # nothing half-written by the refusals
    writer.finalize()
    with pytest.raises(DatasetError, match="not an empty directory"):
        DatasetWriter(tmp_path / "w", fps=FPS, features=_features())


@pytest.mark.parametrize("format", FORMATS)
def test_finalize_again_after_more_episodes_rewrites_meta_for_all_of_them(tmp_path, format):
    episodes = _episodes()
    writer = DatasetWriter(tmp_path / "d", fps=FPS, features=_features(), format=format)
    for columns, task, extra in episodes[:2]:
        writer.add_episode(columns, task, extra)
    writer.finalize()
    assert len(read_dataset(tmp_path / "d")) == 2
    writer.add_episode(*episodes[2])
    dataset = read_dataset(writer.finalize())
    assert len(dataset) == 3 and dataset.episodes[2]["seed"] == 1002
    assert list(dataset.episode(2)["index"]) == list(range(14, 17))


def _mp4(path: Path, frames: int) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            image = np.full((24, 32, 3), 10 * i, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("format", FORMATS)
def test_videos_go_to_the_format_video_path_and_their_feature_is_recorded(tmp_path, format):
    episodes = [
        (c, t, e, {"observation.images.top": _mp4(tmp_path / f"{i}.mp4", len(c["action"]))})
        for i, (c, t, e) in enumerate(_episodes())
    ]
    root = write_dataset(tmp_path / "d", episodes, fps=FPS, features=_features(), format=format)
    dataset = read_dataset(root)
    feature = dataset.features["observation.images.top"]
    assert feature["dtype"] == "video" and feature["shape"] == [24, 32, 3]
    assert feature["info"]["video.codec"] == "h264" and feature["info"]["video.fps"] == FPS
    expected = (
        "videos/observation.images.top/chunk-000/file-002.mp4"
        if format == "v3.0"
        else "videos/chunk-000/observation.images.top/episode_000002.mp4"
    )
    path, start, stop = dataset.video_segment(2, "observation.images.top")
    assert path == root / expected and path.read_bytes() == (tmp_path / "2.mp4").read_bytes()
    assert (start, stop) == (0.0, LENGTHS[2] / FPS)
    assert dataset.video_path(0, "observation.images.top").is_file()
    np.testing.assert_array_equal(dataset.actions(2), _episodes()[2][0]["action"])
