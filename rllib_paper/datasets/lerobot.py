"""LeRobot datasets on disk, written and read with pyarrow alone.

Current ``lerobot`` releases read only v3.0 and pin a torch older than ours, and GR00T fine-tuning
reads v2.x, so this module speaks both formats itself rather than depending on the package. The
two layouts of files on disk:

v2.1 (v2.0 is the same, with ``meta/stats.json`` instead of per-episode stats): one parquet file
per episode::

    meta/info.json  meta/tasks.jsonl  meta/episodes.jsonl  meta/episodes_stats.jsonl  meta/stats.json
    data/chunk-000/episode_000000.parquet
    videos/chunk-000/{video_key}/episode_000000.mp4

v3.0: many episodes per parquet file, and an episodes table that says where each one lies::

    meta/info.json  meta/tasks.parquet  meta/stats.json
    meta/episodes/chunk-000/file-000.parquet   episode_index, tasks, length, data/chunk_index,
                                               data/file_index, dataset_from_index, dataset_to_index,
                                               videos/{key}/..., stats/{feature}/..., extra metadata
    data/chunk-000/file-000.parquet
    videos/{video_key}/chunk-000/file-000.mp4  (this writer: one episode per video file)

Every frame row holds the features of ``info.json`` plus ``timestamp``, ``frame_index``,
``episode_index``, ``index`` (the frame's number in the whole dataset) and ``task_index``. Which
columns hold the arm's state and action, and in which joint order, is a ``DatasetLayout``: data,
not code, because a real robot's dataset names them differently from ours.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rllib_paper.runtime.files import atomic_write, dump_json, write_text_atomic

FORMATS = ("v3.0", "v2.1")
READABLE_VERSIONS = ("v2.0", "v2.1", "v3.0")

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
V2_TASKS_PATH = "meta/tasks.jsonl"
V2_EPISODES_PATH = "meta/episodes.jsonl"
V2_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_TASKS_PATH = "meta/tasks.parquet"
V3_EPISODES_DIR = "meta/episodes"
V3_EPISODES_PATH = V3_EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
# LeRobot's defaults: files per chunk folder, and the size targets v3.0's info.json records.
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200

# Every frame row carries these; the writer fills them, so callers never pass them.
FRAME_FEATURES: dict[str, dict] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

# rllib_paper.sim.scene.JOINT_NAMES with the ".pos" suffix LeRobot's SO-101 datasets use (kept
# literal here so reading a dataset does not import MuJoCo; a test holds the two equal).
SO101_JOINT_NAMES = (
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
)
ENVIRONMENT_STATE_NAMES = ("x", "y", "z", "qw", "qx", "qy", "qz")

_ARROW_TYPES = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
}
# Top-level extra keys that would collide with the episodes table's own fields (v3.0 flattens
# nested dicts into "a/b" columns, so a "data" dict would land among "data/chunk_index").
_RESERVED_EXTRA = {
    "episode_index",
    "tasks",
    "length",
    "dataset_from_index",
    "dataset_to_index",
    "data",
    "videos",
    "meta",
    "stats",
}
_V3_EPISODE_COLUMNS = (
    "episode_index",
    "tasks",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)
_V3_LOCATION_PREFIXES = ("data/", "videos/", "meta/episodes/", "stats/")


class DatasetError(ValueError):
    """A dataset that cannot be used, said as one message naming the file and the field.

    A bad download or a layout mismatch is then fixed from the message alone; ``path`` and
    ``field`` carry the same two facts for code that reacts to them.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.field = field


def _error(path: str | Path, field: str | None, problem: str) -> DatasetError:
    message = f"{path}: {field} {problem}" if field else f"{path}: {problem}"
    return DatasetError(message, path=path, field=field)


@dataclass(frozen=True)
class DatasetLayout:
    """Which columns mean what: key names and the joint order are configuration.

    Our sim datasets and a real robot's recordings name the same quantities differently; the
    layout lets one reader (and one BC pipeline) take either, and refuses a dataset whose joints
    are not the ones the layout says, instead of silently mixing them up.
    """

    name: str
    state_key: str = "observation.state"
    action_key: str = "action"
    # The sheet pose (7: x y z qw qx qy qz); None: a real robot's dataset, which has none.
    environment_state_key: str | None = "observation.environment_state"
    joint_names: tuple[str, ...] = SO101_JOINT_NAMES

    def features(self) -> dict[str, dict]:
        """The info.json features of this layout's vectors: what a writer for it declares at least."""
        vector = {"dtype": "float32", "shape": [len(self.joint_names)], "names": list(self.joint_names)}
        features = {self.state_key: dict(vector), self.action_key: dict(vector)}
        if self.environment_state_key is not None:
            features[self.environment_state_key] = {
                "dtype": "float32",
                "shape": [len(ENVIRONMENT_STATE_NAMES)],
                "names": list(ENVIRONMENT_STATE_NAMES),
            }
        return features


LAYOUTS: dict[str, DatasetLayout] = {
    "rllib_paper": DatasetLayout("rllib_paper"),
    # The real SO-101 "paper_return" recordings: motor_1..motor_6 (radians), no sheet pose.
    "paper_return": DatasetLayout(
        "paper_return",
        environment_state_key=None,
        joint_names=tuple(f"motor_{i}" for i in range(1, 7)),
    ),
}


def _layout(layout: DatasetLayout | str) -> DatasetLayout:
    if isinstance(layout, DatasetLayout):
        return layout
    if layout not in LAYOUTS:
        raise DatasetError(f"layout {layout!r} is unknown; known layouts: {', '.join(LAYOUTS)}", field="layout")
    return LAYOUTS[layout]


def _names(names: Any) -> list[str] | None:
    """A feature's joint names as a list; v2 datasets often nest them as {"motors": [...]}."""
    if names is None:
        return None
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    if isinstance(names, Mapping) and all(isinstance(v, (list, tuple)) for v in names.values()):
        return [str(n) for v in names.values() for n in v]
    return None


def _check_layout(path: Path, features: Mapping[str, dict], layout: DatasetLayout) -> None:
    joints = len(layout.joint_names)
    for role, key in (("state", layout.state_key), ("action", layout.action_key)):
        feature = features.get(key)
        if feature is None:
            raise _error(
                path,
                f"features[{key!r}]",
                f"is missing; the layout {layout.name!r} reads the {role} from it "
                f"(features present: {', '.join(features)})",
            )
        if list(feature["shape"]) != [joints]:
            raise _error(
                path,
                f"features[{key!r}].shape",
                f"is {list(feature['shape'])}; expected [{joints}] (the layout {layout.name!r} has {joints} joints)",
            )
        names = _names(feature.get("names"))
        if names is not None and names != list(layout.joint_names):
            raise _error(
                path,
                f"features[{key!r}].names",
                f"are {names}; the layout {layout.name!r} expects {list(layout.joint_names)}",
            )
    key = layout.environment_state_key
    if key is not None and key in features and list(features[key]["shape"]) != [len(ENVIRONMENT_STATE_NAMES)]:
        raise _error(
            path,
            f"features[{key!r}].shape",
            f"is {list(features[key]['shape'])}; expected [{len(ENVIRONMENT_STATE_NAMES)}] "
            f"(the sheet pose {' '.join(ENVIRONMENT_STATE_NAMES)})",
        )


def _check_features(path: Path, features: Any) -> dict[str, dict]:
    if not isinstance(features, Mapping) or not features:
        raise _error(path, "features", f"is {features!r}; expected a dict of feature name -> dtype/shape/names")
    for key, feature in features.items():
        if not isinstance(feature, Mapping) or not isinstance(feature.get("dtype"), str):
            raise _error(path, f"features[{key!r}].dtype", "is missing; every feature declares its dtype")
        shape = feature.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and s > 0 for s in shape):
            raise _error(path, f"features[{key!r}].shape", f"is {shape!r}; expected a list of positive ints")
    return {key: dict(feature) for key, feature in features.items()}


# ---------------------------------------------------------------------------------------------
# Writing


def _to_arrow(values: np.ndarray) -> pa.Array:
    """(T,) -> a scalar column, (T, n) -> fixed_size_list<n>: what LeRobot's Sequence(length=n) writes."""
    if values.ndim == 1 or values.shape[1] == 1:
        return pa.array(values.reshape(len(values)))
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _feature_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature stats (reduced over frames, shape kept): what policies normalise with."""
    data = values.reshape(len(values), -1).astype(np.float64)
    return {
        "min": data.min(axis=0).tolist(),
        "max": data.max(axis=0).tolist(),
        "mean": data.mean(axis=0).tolist(),
        "std": data.std(axis=0).tolist(),
        "count": [len(data)],
    }


def _aggregate_stats(per_episode: list[dict[str, dict]]) -> dict[str, dict]:
    """Pooled min/max/mean/std over episodes, the parallel-variance way LeRobot aggregates them."""
    out = {}
    for key in per_episode[0]:
        counts = np.array([s[key]["count"][0] for s in per_episode], dtype=np.float64)[:, None]
        means = np.array([s[key]["mean"] for s in per_episode])
        variances = np.array([s[key]["std"] for s in per_episode]) ** 2
        total = counts.sum()
        mean = (means * counts).sum(axis=0) / total
        variance = ((variances + (means - mean) ** 2) * counts).sum(axis=0) / total
        out[key] = {
            "min": np.min([s[key]["min"] for s in per_episode], axis=0).tolist(),
            "max": np.max([s[key]["max"] for s in per_episode], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(variance).tolist(),
            "count": [int(total)],
        }
    return out


def _plain(value: Any, where: str) -> Any:
    """Extra metadata as plain JSON/Arrow values, refusing what one of the formats would not give back equal."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, Mapping):
        if not value:
            raise DatasetError(f"{where} is an empty dict, which v3.0's flattened columns cannot keep; leave it out")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise DatasetError(f"{where} has the key {key!r}; keys are non-empty strings without '/'")
            if item is None:
                raise DatasetError(f"{where}[{key!r}] is None, which reads back as absent; leave the key out")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise DatasetError(f"{where} is a {type(value).__name__}; extra metadata holds numbers, strings, lists and dicts")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _unflatten(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        *parents, leaf = key.split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # "a" and "a/b" both present: keep the flat name
                out[key] = value
                break
        else:
            node[leaf] = value
    return out


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def _write_parquet(path: Path, tables: list[pa.Table]) -> None:
    """One row group per episode (as LeRobot writes), so a reader of one episode skips the rest."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, tables[0].schema) as writer:
            for table in tables:
                writer.write_table(table)

    atomic_write(path, write)


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))


def _probe_video(root: Path, key: str, path: Path, fps: int) -> dict:
    """The video feature LeRobot records (shape and codec) read from the file, so callers need not know them."""
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is a dependency
        raise _error(root, f"features[{key!r}]", "is not declared, and PyAV is missing to read the video") from error
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            context = stream.codec_context
            rate = stream.average_rate or stream.base_rate
            info = {
                "video.height": int(context.height),
                "video.width": int(context.width),
                "video.codec": context.name,
                "video.pix_fmt": context.pix_fmt,
                "video.is_depth_map": False,
                "video.fps": round(float(rate)) if rate else fps,
                "video.channels": 3,
                "has_audio": bool(container.streams.audio),
            }
    except (av.FFmpegError, IndexError, OSError) as error:
        raise _error(path, None, f"is not a readable video for {key!r} ({error})") from error
    return {
        "dtype": "video",
        "shape": [info["video.height"], info["video.width"], 3],
        "names": ["height", "width", "channels"],
        "info": info,
    }


class DatasetWriter:
    """Writes one new LeRobot dataset in either format.

    v2.1 episodes reach disk as they come; v3.0 ones a data file (``data_file_max_episodes``) at
    a time, so a long recording does not hold everything in memory. ``meta/`` is written by
    ``finalize`` with ``info.json`` last: a directory with an ``info.json`` is a whole dataset.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int,
        features: Mapping[str, Mapping],
        robot_type: str | None = "so101_follower",
        format: str = "v3.0",
        layout: DatasetLayout | str = LAYOUTS["rllib_paper"],
        data_file_max_episodes: int = 1000,
    ):
        self.root = Path(root)
        if format not in FORMATS:
            raise _error(self.root, "format", f"is {format!r}; the writer writes {' or '.join(FORMATS)}")
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise _error(self.root, None, "already exists and is not an empty directory; a writer starts a new dataset")
        if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
            raise _error(self.root, "fps", f"is {fps!r}; expected a positive int")
        if data_file_max_episodes < 1:
            raise _error(self.root, "data_file_max_episodes", f"is {data_file_max_episodes}; expected >= 1")
        self.fps = int(fps)
        self.format = format
        self.robot_type = robot_type
        self.layout = _layout(layout)
        self.data_file_max_episodes = int(data_file_max_episodes)
        self.features = self._declare(features)
        self._tasks: dict[str, int] = {}
        self._episodes: list[tuple[dict, dict]] = []  # (episodes-table row, extra metadata)
        self._stats: list[dict[str, dict]] = []
        self._pending: list[pa.Table] = []  # v3.0: episodes of the data file not yet written
        self._data_file = (0, 0)
        self._frames = 0

    def _declare(self, features: Mapping[str, Mapping]) -> dict[str, dict]:
        declared: dict[str, dict] = {}
        for key, feature in _check_features(self.root, features).items():
            dtype, shape = feature["dtype"], [int(s) for s in feature["shape"]]
            if key in FRAME_FEATURES:
                if dtype != FRAME_FEATURES[key]["dtype"] or shape != [1]:
                    raise _error(self.root, f"features[{key!r}]", "is a frame column the writer fills; leave it out")
                continue
            if dtype != "video" and (dtype not in _ARROW_TYPES or len(shape) != 1):
                raise _error(
                    self.root,
                    f"features[{key!r}]",
                    f"is dtype {dtype!r} shape {shape}; the writer takes numeric/bool vectors (shape [n]) and videos",
                )
            declared[key] = {**feature, "dtype": dtype, "shape": shape, "names": feature.get("names")}
        for key, names in (
            (self.layout.state_key, self.layout.joint_names),
            (self.layout.action_key, self.layout.joint_names),
            (self.layout.environment_state_key, ENVIRONMENT_STATE_NAMES),
        ):
            if key in declared and declared[key]["names"] is None and declared[key]["shape"] == [len(names)]:
                declared[key]["names"] = list(names)
        _check_layout(self.root, declared, self.layout)
        return declared

    def _columns(self, columns: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        keys = [key for key, feature in self.features.items() if feature["dtype"] != "video"]
        for key in columns:
            if key in FRAME_FEATURES:
                raise _error(self.root, f"columns[{key!r}]", "is a frame column the writer fills; leave it out")
            if key not in self.features:
                raise _error(self.root, f"columns[{key!r}]", f"is not a declared feature ({', '.join(keys)})")
        arrays, length = {}, None
        for key in keys:
            if key not in columns:
                raise _error(self.root, f"columns[{key!r}]", "is missing; the features declare it")
            values = np.asarray(columns[key])
            width = self.features[key]["shape"][0]
            if width == 1 and values.ndim == 1:
                values = values[:, None]
            if values.ndim != 2 or values.shape[1] != width:
                raise _error(self.root, f"columns[{key!r}].shape", f"is {list(values.shape)}; expected [T, {width}]")
            dtype = np.dtype(self.features[key]["dtype"])
            if not np.can_cast(values.dtype, dtype, "same_kind"):
                raise _error(self.root, f"columns[{key!r}].dtype", f"is {values.dtype}; the features declare {dtype}")
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise _error(self.root, f"columns[{key!r}]", f"has {len(values)} frames; columns[{keys[0]!r}] {length}")
            arrays[key] = values.astype(dtype, copy=False)
        if not length:
            raise _error(self.root, "columns", "hold no frames; an episode has at least one")
        return arrays, length

    def _videos(self, videos: Mapping[str, str | Path] | None, index: int) -> dict[str, Path]:
        videos = {key: Path(path) for key, path in (videos or {}).items()}
        for key, path in videos.items():
            if not path.is_file():
                raise _error(path, f"videos[{key!r}]", "does not exist")
            feature = self.features.get(key)
            if feature is None and index == 0:
                self.features[key] = _probe_video(self.root, key, path, self.fps)
            elif feature is None:
                raise _error(self.root, f"videos[{key!r}]", "is new after episode 0; every episode has the same videos")
            elif feature["dtype"] != "video":
                raise _error(self.root, f"videos[{key!r}]", f"names a {feature['dtype']} feature, not a video")
            elif "info" not in feature:
                feature["info"] = _probe_video(self.root, key, path, self.fps)["info"]
        for key, feature in self.features.items():
            if feature["dtype"] == "video" and key not in videos:
                raise _error(self.root, f"videos[{key!r}]", "is missing; the features declare this video")
        return videos

    def add_episode(
        self,
        columns: Mapping[str, Any],
        task: str,
        extra: Mapping[str, Any] | None = None,
        videos: Mapping[str, str | Path] | None = None,
    ) -> int:
        """Add one episode; returns its episode_index.

        ``columns``: per-frame arrays with leading axis T for every declared non-video feature
        (the writer adds timestamp, frame_index, episode_index, index and task_index).
        ``extra``: per-episode metadata (e.g. the seed and the DR draw) kept in the episodes
        table: extra keys of episodes.jsonl (v2.1) or columns, nested dicts flattened as
        ``dr/NAME`` (v3.0); both read back equal. ``videos``: an encoded MP4 per video key,
        copied (the caller's file stays) to the format's video path.
        """
        index = len(self._episodes)
        if not isinstance(task, str) or not task:
            raise _error(self.root, "task", f"is {task!r}; expected a non-empty string")
        arrays, length = self._columns(columns)
        extra = _plain(dict(extra or {}), "extra") if extra else {}
        for key in extra:
            if key in _RESERVED_EXTRA:
                raise _error(self.root, f"extra[{key!r}]", "is a name the episodes table uses itself; rename it")
        videos = self._videos(videos, index)

        task_index = self._tasks.setdefault(task, len(self._tasks))
        frames = np.arange(length, dtype=np.int64)
        frame_columns = {
            "timestamp": (frames / self.fps).astype(np.float32),
            "frame_index": frames,
            "episode_index": np.full(length, index, dtype=np.int64),
            "index": self._frames + frames,
            "task_index": np.full(length, task_index, dtype=np.int64),
        }
        table = pa.table({key: _to_arrow(values) for key, values in {**arrays, **frame_columns}.items()})
        stats = {key: _feature_stats(values) for key, values in {**arrays, **frame_columns}.items()}
        row: dict[str, Any] = {"episode_index": index, "tasks": [task], "length": length}
        if self.format == "v2.1":
            chunk = index // CHUNKS_SIZE
            _write_parquet(self.root / V2_DATA_PATH.format(episode_chunk=chunk, episode_index=index), [table])
            for key, path in videos.items():
                _copy(path, self.root / V2_VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=index))
        else:
            chunk, file = self._data_file
            row.update(
                {
                    "data/chunk_index": chunk,
                    "data/file_index": file,
                    "dataset_from_index": self._frames,
                    "dataset_to_index": self._frames + length,
                }
            )
            video_chunk, video_file = divmod(index, CHUNKS_SIZE)
            for key, path in videos.items():
                _copy(
                    path,
                    self.root / V3_VIDEO_PATH.format(video_key=key, chunk_index=video_chunk, file_index=video_file),
                )
                row.update(
                    {
                        f"videos/{key}/chunk_index": video_chunk,
                        f"videos/{key}/file_index": video_file,
                        f"videos/{key}/from_timestamp": 0.0,
                        f"videos/{key}/to_timestamp": length / self.fps,
                    }
                )
            self._pending.append(table)
            if len(self._pending) >= self.data_file_max_episodes:
                self._flush()
        self._episodes.append((row, extra))
        self._stats.append(stats)
        self._frames += length
        return index

    def _flush(self) -> None:
        if self._pending:
            chunk, file = self._data_file
            _write_parquet(self.root / V3_DATA_PATH.format(chunk_index=chunk, file_index=file), self._pending)
            self._pending = []
            self._data_file = _next_file(chunk, file)

    def _info(self) -> dict:
        video_keys = [key for key, feature in self.features.items() if feature["dtype"] == "video"]
        features = {key: dict(feature) for key, feature in {**self.features, **FRAME_FEATURES}.items()}
        if self.format == "v3.0":  # v3.0 records each frame feature's rate, as LeRobot's conversion does
            for feature in features.values():
                if feature["dtype"] != "video":
                    feature["fps"] = self.fps
        episodes = len(self._episodes)
        info: dict[str, Any] = {
            "codebase_version": self.format,
            "robot_type": self.robot_type,
            "total_episodes": episodes,
            "total_frames": self._frames,
            "total_tasks": len(self._tasks),
        }
        if self.format == "v2.1":
            info["total_videos"] = episodes * len(video_keys)
            info["total_chunks"] = math.ceil(episodes / CHUNKS_SIZE)
        info["chunks_size"] = CHUNKS_SIZE
        if self.format == "v3.0":
            info["data_files_size_in_mb"] = DATA_FILES_SIZE_IN_MB
            info["video_files_size_in_mb"] = VIDEO_FILES_SIZE_IN_MB
        v2 = self.format == "v2.1"
        info.update(
            {
                "fps": self.fps,
                "splits": {"train": f"0:{episodes}"},
                "data_path": V2_DATA_PATH if v2 else V3_DATA_PATH,
                "video_path": (V2_VIDEO_PATH if v2 else V3_VIDEO_PATH) if video_keys else None,
                "features": features,
            }
        )
        return info

    def finalize(self) -> Path:
        """Write the rest of the data and ``meta/``; callable again after more episodes (it rewrites meta/)."""
        if not self._episodes:
            raise _error(self.root, "episodes", "are none; a dataset holds at least one episode")
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        tasks = sorted(self._tasks, key=self._tasks.__getitem__)
        if self.format == "v2.1":
            write_text_atomic(
                self.root / V2_TASKS_PATH,
                "".join(json.dumps({"task_index": i, "task": task}) + "\n" for i, task in enumerate(tasks)),
            )
            write_text_atomic(
                self.root / V2_EPISODES_PATH,
                "".join(json.dumps({**row, **extra}) + "\n" for row, extra in self._episodes),
            )
            write_text_atomic(
                self.root / V2_EPISODES_STATS_PATH,
                "".join(json.dumps({"episode_index": i, "stats": stats}) + "\n" for i, stats in enumerate(self._stats)),
            )
        else:
            self._flush()
            self._write_tasks_parquet(tasks)
            self._write_episodes_parquet()
        dump_json(_aggregate_stats(self._stats), self.root / STATS_PATH)
        dump_json(self._info(), self.root / INFO_PATH)
        return self.root

    def _write_tasks_parquet(self, tasks: list[str]) -> None:
        # LeRobot reads meta/tasks.parquet with pandas and looks tasks up in the index, so the
        # file carries pandas' index metadata ("task" as the index, task_index as the column).
        import pandas as pd

        frame = pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name="task"))
        table = pa.Table.from_pandas(frame)
        atomic_write(self.root / V3_TASKS_PATH, lambda tmp: pq.write_table(table, tmp))

    def _write_episodes_parquet(self) -> None:
        rows = []
        for (row, extra), stats in zip(self._episodes, self._stats, strict=True):
            rows.append(
                {
                    **row,
                    "meta/episodes/chunk_index": 0,
                    "meta/episodes/file_index": 0,
                    **_flatten(extra),
                    **_flatten({"stats": stats}),
                }
            )
        names = list(dict.fromkeys(key for row in rows for key in row))
        arrays = {}
        for name in names:
            try:
                arrays[name] = pa.array([row.get(name) for row in rows])
            except (pa.ArrowException, TypeError) as error:
                raise _error(
                    self.root, f"extra[{name!r}]", f"holds values of mixed types across episodes ({error})"
                ) from error
        path = self.root / V3_EPISODES_PATH.format(chunk_index=0, file_index=0)
        _write_parquet(path, [pa.table(arrays)])


def write_dataset(
    root: str | Path,
    episodes: Iterable[tuple],
    **writer_kwargs: Any,
) -> Path:
    """Write a whole dataset from (columns, task[, extra[, videos]]) tuples; returns its root."""
    writer = DatasetWriter(root, **writer_kwargs)
    for columns, task, *rest in episodes:
        writer.add_episode(columns, task, *rest)
    return writer.finalize()


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class _Location:
    """Where one episode's frames lie, and who said so (for the message when the file is not there)."""

    data: Path
    source: str
    videos: dict[str, tuple[Path, float, float]]  # key -> (file, from_timestamp, to_timestamp)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _error(path, None, f"is not valid JSON ({error})") from error


def _load_jsonl(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise _error(path, None, "is missing; a v2 dataset keeps this table there")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise _error(path, f"line {number}", f"is not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise _error(path, f"line {number}", f"is {row!r}; expected a JSON object")
        rows.append((number, row))
    return rows


def _read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise _error(
            path, None, f"is not a readable parquet file ({error}); a truncated download? fetch it again"
        ) from error


def _read_metadata(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (pa.ArrowException, OSError) as error:
        raise _error(
            path, None, f"is not a readable parquet file ({error}); a truncated download? fetch it again"
        ) from error


def _int(path: Path, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _error(path, field, f"is {value!r}; expected an int")
    return int(value)


def _task_list(path: Path, pairs: list[tuple[Any, Any]]) -> list[str]:
    tasks: dict[int, str] = {}
    for index, task in pairs:
        index = _int(path, "task_index", index)
        if not isinstance(task, str):
            raise _error(path, f"task (task_index {index})", f"is {task!r}; expected a string")
        tasks[index] = task
    if sorted(tasks) != list(range(len(tasks))):
        raise _error(path, "task_index", f"values are {sorted(tasks)}; expected 0..{len(tasks) - 1}")
    return [tasks[i] for i in range(len(tasks))]


def _format(path: Path, field: str, template: Any, **values: Any) -> str:
    if not isinstance(template, str):
        raise _error(path, field, f"is {template!r}; expected a path template")
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as error:
        raise _error(
            path, field, f"is {template!r}, which does not format with {', '.join(values)} ({error!r})"
        ) from error


def _read_v2(root: Path, info: dict, features: dict, fps: int) -> tuple[list[dict], list[_Location], list[str]]:
    info_path = root / INFO_PATH
    tasks_path = root / V2_TASKS_PATH
    tasks = _task_list(tasks_path, [(row.get("task_index"), row.get("task")) for _, row in _load_jsonl(tasks_path)])
    chunks_size = _int(info_path, "chunks_size", info.get("chunks_size", CHUNKS_SIZE))
    video_keys = [key for key, feature in features.items() if feature["dtype"] == "video"]
    episodes_path = root / V2_EPISODES_PATH
    found = []
    for number, row in _load_jsonl(episodes_path):
        index = _int(episodes_path, f"line {number}: episode_index", row.get("episode_index"))
        length = _int(episodes_path, f"line {number}: length", row.get("length"))
        chunk = index // chunks_size
        data = _format(info_path, "data_path", info.get("data_path"), episode_chunk=chunk, episode_index=index)
        videos = {}
        if video_keys and info.get("video_path") is not None:
            for key in video_keys:
                video = _format(
                    info_path, "video_path", info["video_path"], episode_chunk=chunk, video_key=key, episode_index=index
                )
                videos[key] = (root / video, 0.0, length / fps)
        episode = {
            "episode_index": index,
            "length": length,
            "tasks": list(row.get("tasks", [])),
            **{key: value for key, value in row.items() if key not in ("episode_index", "length", "tasks")},
        }
        source = f"{episodes_path} line {number} (episode_index {index}) with {INFO_PATH} data_path"
        found.append((episode, _Location(root / data, source, videos)))
    found.sort(key=lambda item: item[0]["episode_index"])
    return [e for e, _ in found], [loc for _, loc in found], tasks


def _read_v3(root: Path, info: dict, features: dict) -> tuple[list[dict], list[_Location], list[str]]:
    info_path = root / INFO_PATH
    tasks_path = root / V3_TASKS_PATH
    if not tasks_path.is_file():
        raise _error(tasks_path, None, "is missing; a v3.0 dataset keeps its task strings there")
    table = _read_table(tasks_path)
    names = table.column_names
    task_column = next((c for c in ("task", "__index_level_0__") if c in names), None)
    if task_column is None or "task_index" not in names:
        raise _error(tasks_path, "columns", f"are {names}; expected task_index and task")
    tasks = _task_list(
        tasks_path, list(zip(table["task_index"].to_pylist(), table[task_column].to_pylist(), strict=True))
    )

    episode_files = sorted((root / V3_EPISODES_DIR).glob("*/*.parquet"))
    if not episode_files:
        raise _error(
            root / V3_EPISODES_DIR, None, "holds no chunk-*/file-*.parquet; a v3.0 dataset lists its episodes there"
        )
    video_keys = [key for key, feature in features.items() if feature["dtype"] == "video"]
    required = list(_V3_EPISODE_COLUMNS)
    if info.get("video_path") is not None:
        for key in video_keys:
            required += [
                f"videos/{key}/{part}" for part in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
            ]
    found = []
    for path in episode_files:
        schema_names = _read_metadata(path).schema.to_arrow_schema().names
        for column in required:
            if column not in schema_names:
                raise _error(
                    path, f"column {column!r}", "is missing; a v3.0 episodes table locates each episode with it"
                )
        columns = [name for name in schema_names if not name.startswith("stats/")]
        for row in _read_table(path, columns).to_pylist():
            index = _int(path, "episode_index", row["episode_index"])
            where = f"episode_index {index}"
            length = _int(path, f"length ({where})", row["length"])
            span = _int(path, f"dataset_to_index ({where})", row["dataset_to_index"]) - _int(
                path, f"dataset_from_index ({where})", row["dataset_from_index"]
            )
            if span != length:
                raise _error(path, f"dataset_to_index - dataset_from_index ({where})", f"is {span}; length is {length}")
            chunk, file = row["data/chunk_index"], row["data/file_index"]
            data = _format(info_path, "data_path", info.get("data_path"), chunk_index=chunk, file_index=file)
            videos = {}
            for key in video_keys if info.get("video_path") is not None else ():
                video = _format(
                    info_path,
                    "video_path",
                    info["video_path"],
                    video_key=key,
                    chunk_index=row[f"videos/{key}/chunk_index"],
                    file_index=row[f"videos/{key}/file_index"],
                )
                videos[key] = (root / video, row[f"videos/{key}/from_timestamp"], row[f"videos/{key}/to_timestamp"])
            extra = {
                key: value
                for key, value in row.items()
                if key not in _V3_EPISODE_COLUMNS and not key.startswith(_V3_LOCATION_PREFIXES) and value is not None
            }
            episode = {"episode_index": index, "length": length, "tasks": list(row["tasks"] or []), **_unflatten(extra)}
            source = f"{path} ({where}: data/chunk_index {chunk}, data/file_index {file}) with {INFO_PATH} data_path"
            found.append((episode, _Location(root / data, source, videos)))
    found.sort(key=lambda item: item[0]["episode_index"])
    return [e for e, _ in found], [loc for _, loc in found], tasks


def _is_list(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)


def _check_type(path: Path, key: str, arrow_type: pa.DataType, feature: dict) -> None:
    dtype, shape = feature["dtype"], list(feature["shape"])
    if isinstance(arrow_type, pa.ExtensionType):
        arrow_type = arrow_type.storage_type
    inner, sizes = arrow_type, []
    while _is_list(inner):
        sizes.append(inner.list_size if pa.types.is_fixed_size_list(inner) else None)
        inner = inner.value_type
    if dtype == "string":
        ok = pa.types.is_string(inner) or pa.types.is_large_string(inner)
    elif dtype in _ARROW_TYPES:
        width = math.prod(shape)
        # A scalar column holds a shape-[1] feature; variable-length lists are measured when read.
        fits = width == 1 if not sizes else (None in sizes or math.prod(sizes) == width)
        ok = inner == _ARROW_TYPES[dtype] and fits
    else:
        return  # images and the like: LeRobot's own encodings, not checked here
    if not ok:
        raise _error(
            path,
            f"column {key!r}",
            f"is {arrow_type}; {INFO_PATH} features[{key!r}] declares dtype {dtype!r} shape {shape}",
        )


def _check_data_files(features: dict, episodes: list[dict], locations: list[_Location], v3: bool) -> None:
    columns = {key: feature for key, feature in features.items() if feature["dtype"] != "video"}
    files: dict[Path, list[int]] = {}
    for episode, location in zip(episodes, locations, strict=True):
        files.setdefault(location.data, []).append(episode["length"])
    sources = {location.data: location.source for location in reversed(locations)}
    for path, lengths in files.items():
        if not path.is_file():
            raise _error(path, None, f"is missing; {sources[path]} names it")
        metadata = _read_metadata(path)
        schema = metadata.schema.to_arrow_schema()
        for key, feature in columns.items():
            if key not in schema.names:
                raise _error(path, f"column {key!r}", f"is missing; {INFO_PATH} features declare it")
            _check_type(path, key, schema.field(key).type, feature)
        if v3 and "episode_index" not in schema.names:
            raise _error(path, "column 'episode_index'", "is missing; a v3.0 data file holds several episodes by it")
        if metadata.num_rows != sum(lengths):
            raise _error(
                path, "rows", f"are {metadata.num_rows}; the episodes table gives its episodes {sum(lengths)} frames"
            )


def _to_numpy(path: Path, key: str, column: pa.ChunkedArray, feature: dict) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if array.null_count:
        raise _error(path, f"column {key!r}", f"has {array.null_count} null values")
    dtype, shape = feature["dtype"], [int(s) for s in feature["shape"]]
    if dtype not in _ARROW_TYPES:
        return np.array(array.to_pylist(), dtype=object)
    values = array
    while _is_list(values.type):
        values = values.flatten()
    width = math.prod(shape)
    if len(values) != len(array) * width:
        raise _error(path, f"column {key!r}", f"holds lists whose lengths are not {shape}")
    out = values.to_numpy(zero_copy_only=False).astype(np.dtype(dtype), copy=False)
    return out.reshape(len(array)) if width == 1 else out.reshape(len(array), *shape)


@dataclass
class LeRobotDataset:
    """A local LeRobot dataset whose meta/ and data file footers were checked when it was opened.

    Frames are read per episode on demand (one data file cached), so a 200-episode dataset opens
    at once and a BC loader reads only what it uses.
    """

    root: Path
    version: str
    info: dict
    fps: int
    layout: DatasetLayout
    episodes: list[dict]  # per episode: episode_index, length, tasks, plus extra metadata
    tasks: list[str]  # by task_index
    stats: dict | None = None  # meta/stats.json, where the dataset has one
    _locations: list[_Location] = field(default_factory=list, repr=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    def _position(self, index: int) -> int:
        positions = self._cache.setdefault("positions", {e["episode_index"]: i for i, e in enumerate(self.episodes)})
        if index not in positions:
            raise IndexError(f"{self.root}: episode_index {index} is not in the dataset ({len(self)} episodes)")
        return positions[index]

    def episode_record(self, index: int) -> dict:
        """The episodes-table row of episode_index ``index`` (length, tasks, extra metadata)."""
        return self.episodes[self._position(index)]

    @property
    def episode_indices(self) -> list[int]:
        return [int(e["episode_index"]) for e in self.episodes]

    def _table(self, path: Path) -> pa.Table:
        if self._cache.get("path") != path:
            self._cache.update(path=path, table=_read_table(path))
        return self._cache["table"]

    def _episode_table(self, index: int) -> tuple[Path, pa.Table]:
        position = self._position(index)
        location, length = self._locations[position], self.episodes[position]["length"]
        table = self._table(location.data)
        if self.version == "v3.0":
            table = table.filter(pc.equal(table["episode_index"], index))
        if table.num_rows != length:
            raise _error(
                location.data,
                "rows",
                f"of episode_index {index} are {table.num_rows}; the episodes table says {length}",
            )
        if "frame_index" in table.column_names:
            order = np.argsort(table["frame_index"].to_numpy(), kind="stable")
            if np.any(order != np.arange(len(order))):
                table = table.take(pa.array(order))
        return location.data, table

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """Every non-video column of one episode, frames in order: (T, n) for vectors, (T,) for scalars."""
        path, table = self._episode_table(index)
        return {
            key: _to_numpy(path, key, table[key], feature)
            for key, feature in self.features.items()
            if feature["dtype"] != "video"
        }

    def _vector(self, index: int, key: str | None, what: str) -> np.ndarray:
        if key is None:
            raise _error(self.root, None, f"has no {what}: the layout {self.layout.name!r} names no column for it")
        if key not in self.features:
            raise _error(self.root / INFO_PATH, f"features[{key!r}]", f"is missing; the dataset records no {what}")
        path, table = self._episode_table(index)
        return _to_numpy(path, key, table[key], self.features[key]).astype(np.float32, copy=False)

    def states(self, index: int) -> np.ndarray:
        """(T, joints) float32, in the layout's joint order (checked against info.json's names when opened)."""
        return self._vector(index, self.layout.state_key, "state")

    def actions(self, index: int) -> np.ndarray:
        """(T, joints) float32: the commanded joint targets of each frame."""
        return self._vector(index, self.layout.action_key, "action")

    def environment_states(self, index: int) -> np.ndarray:
        """(T, 7) float32 sheet poses; a DatasetError for a dataset that records none (a real robot's)."""
        return self._vector(index, self.layout.environment_state_key, "environment state")

    def video_segment(self, index: int, key: str) -> tuple[Path, float, float]:
        """The file holding this episode's video and the episode's span in it (v3.0 files may hold several)."""
        feature = self.features.get(key)
        if feature is None or feature["dtype"] != "video":
            keys = [k for k, f in self.features.items() if f["dtype"] == "video"]
            raise _error(self.root / INFO_PATH, f"features[{key!r}]", f"is not a video feature (videos: {keys})")
        videos = self._locations[self._position(index)].videos
        if key not in videos:
            raise _error(self.root / INFO_PATH, "video_path", "is null; the dataset says where no video lies")
        path, start, stop = videos[key]
        if not path.is_file():
            raise _error(path, None, f"is missing; the episodes table names it for episode {index}'s {key!r} video")
        return path, float(start), float(stop)

    def video_path(self, index: int, key: str) -> Path:
        return self.video_segment(index, key)[0]


def read_dataset(root: str | Path, layout: DatasetLayout | str = "rllib_paper") -> LeRobotDataset:
    """Open a local v2.0/v2.1/v3.0 dataset, checking meta/ and every data file's schema and row count.

    The checks run up front so a bad download or the wrong layout fails here, with the file and
    the field named, and not deep inside a training loop.
    """
    layout = _layout(layout)
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(
            f"{root}: does not exist; read_dataset reads local directories only, so download a hub dataset "
            f"first, e.g. `huggingface-cli download --repo-type dataset OWNER/NAME --local-dir {root}`",
            path=root,
        )
    if not root.is_dir():
        raise _error(root, None, "is not a directory; a LeRobot dataset is a directory holding meta/info.json")
    info_path = root / INFO_PATH
    if not info_path.is_file():
        raise _error(info_path, None, "is missing; a LeRobot dataset keeps its format, fps and features there")
    info = _load_json(info_path)
    if not isinstance(info, dict):
        raise _error(info_path, None, f"holds {type(info).__name__}; expected a JSON object")
    version = info.get("codebase_version")
    if version not in READABLE_VERSIONS:
        raise _error(info_path, "codebase_version", f"is {version!r}; this reader knows {', '.join(READABLE_VERSIONS)}")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf or fps != int(fps):
        raise _error(info_path, "fps", f"is {fps!r}; expected a positive whole number")
    fps = int(fps)
    features = _check_features(info_path, info.get("features"))
    info = {**info, "features": features}
    _check_layout(info_path, features, layout)
    if version == "v3.0":
        episodes, locations, tasks = _read_v3(root, info, features)
    else:
        episodes, locations, tasks = _read_v2(root, info, features, fps)
    indices = [e["episode_index"] for e in episodes]
    if len(set(indices)) != len(indices):
        raise _error(root / "meta", "episode_index", "values repeat in the episodes table")
    for name, actual in (("total_episodes", len(episodes)), ("total_frames", sum(e["length"] for e in episodes))):
        if name in info and info[name] != actual:
            raise _error(info_path, name, f"is {info[name]}; the episodes table holds {actual} (a partial download?)")
    _check_data_files(features, episodes, locations, v3=version == "v3.0")
    stats = _load_json(root / STATS_PATH) if (root / STATS_PATH).is_file() else None
    return LeRobotDataset(
        root=root,
        version=version,
        info=info,
        fps=fps,
        layout=layout,
        episodes=episodes,
        tasks=tasks,
        stats=stats,
        _locations=locations,
    )


def write_subset(
    dataset: LeRobotDataset, out: str | Path, episode_indices: Iterable[int], format: str | None = None
) -> Path:
    """A new dataset holding some episodes of ``dataset`` (their frames, tasks, extras and videos):
    a sample small enough to commit or to attach to a bug report, readable like the whole."""
    features = {k: f for k, f in dataset.features.items() if k not in FRAME_FEATURES}
    writer = DatasetWriter(
        out,
        fps=dataset.fps,
        features=features,
        robot_type=dataset.info.get("robot_type"),
        format=format or ("v2.1" if dataset.version != "v3.0" else "v3.0"),
        layout=dataset.layout,
    )
    standard = {"episode_index", "tasks", "length"}
    for index in episode_indices:
        record = dataset.episode_record(index)
        columns = {k: v for k, v in dataset.episode(index).items() if k not in FRAME_FEATURES}
        videos = {}
        for key, feature in features.items():
            if feature["dtype"] == "video":
                path, start, _ = dataset.video_segment(index, key)
                if start != 0.0:
                    raise _error(path, key, "holds several episodes; write_subset copies whole-episode videos only")
                videos[key] = path
        extra = {k: v for k, v in record.items() if k not in standard}
        writer.add_episode(columns, record["tasks"][0], extra=extra or None, videos=videos or None)
    return writer.finalize()
