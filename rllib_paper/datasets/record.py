"""Record a base policy's seeded episodes in the sim as a LeRobot dataset.

    rllib-paper record --policy scripted --episodes 300 --seed 500 --dr phase2 --out runs/demos --only-success

Episodes are sharded over Ray workers like the evaluation (``runtime/shards.py``) and are the
same per seed on any worker: the dataset does not depend on how many ran it. Each finished
episode is staged at once under ``DIR.recording/`` (arrays, its metadata last), so an
interrupted recording resumes with ``--resume`` and runs only the seeds not staged; the
LeRobot files are written from the staged episodes, in seed order, at the end.

What a frame holds (LeRobot's convention: the observation before the step, the action taken):

| feature                          | shape | meaning                                                  |
|----------------------------------|-------|----------------------------------------------------------|
| `observation.state`              | 6     | joint angles (rad), the SO-101 order                     |
| `action`                         | 6     | absolute joint targets sent at this step (rad)           |
| `observation.environment_state`  | 7     | the sheet's pose: centre x y z (m), quaternion w x y z   |
| `observation.task_state`         | 25    | the full task observation BC reads (`sim/observation.py`) |
| `observation.images.{top,wrist}` | video | camera frames at `--image-size` (with `--cameras`)       |

The recorded targets are rounded to float32 *before* they are executed, so the dataset holds
exactly what the actuators were sent and ``rllib-paper replay`` reproduces the episode bit for
bit. Each episode keeps its seed, its domain-randomization draw and whether it succeeded (the
evaluation's success that holds, after the settle phase).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError, EnvConfig, coerce_env_config, preset_name
from rllib_paper.datasets.lerobot import FORMATS, LAYOUTS, DatasetWriter
from rllib_paper.evaluation.videos import check_video_size
from rllib_paper.policies.base import BasePolicy
from rllib_paper.runtime.files import dump_json
from rllib_paper.sim.observation import QPOS, SHEET_POSE, TASK_FIELDS

TASK_TEXT = "Push the paper sheet back into the taped frame."
STAGING_SUFFIX = ".recording"  # staged episodes live beside the dataset until it is written
SIM_META = "meta/rllib_paper.json"  # how the episodes were made: env config, base policy, seeds
CAMERA_NAMES = {"top": "top_view", "wrist": "so101/wrist_view"}  # --cameras name -> scene camera
DEFAULT_SETTLE_STEPS = 30  # demonstrations include the evaluation's settle phase (1 s of holding)
TASK_STATE_KEY = "observation.task_state"
SHEET_NAMES = ("x", "y", "z", "qw", "qx", "qy", "qz")
NOISE_STREAM = 0x5EED  # the action-noise generator's stream, apart from the episode's DR draw


@dataclass
class RecordConfig:
    env: EnvConfig = field(default_factory=EnvConfig)  # its residual.base_policy is the policy recorded
    out: str = "runs/dataset"
    episodes: int = 10  # seeds tried: seed, seed+1, ...
    seed: int = 500  # development seeds (0..999): held-out seeds stay unseen by anything trained
    format: str = "v3.0"  # or "v2.1" (GR00T fine-tuning, the paper_return dataset)
    only_success: bool = False  # keep only episodes whose success held to the end
    action_noise: float = 0.0  # std (rad) of Gaussian noise on the executed targets (Float32Targets)
    cameras: tuple[str, ...] = ()  # names from CAMERA_NAMES
    image_size: tuple[int, int] = (224, 224)  # (height, width) of each camera video
    workers: int = 2
    shard_size: int = 5
    resume: bool = False
    max_worker_failures: int = 5
    address: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.env = coerce_env_config(self.env)
        self.cameras = tuple(self.cameras)

    def check(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes}: allowed range is [1, inf)")
        if self.format not in FORMATS:
            raise ConfigError(f"format={self.format!r}: allowed: {list(FORMATS)}")
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown:
            raise ConfigError(f"cameras={list(self.cameras)}: unknown {unknown}; allowed: {sorted(CAMERA_NAMES)}")
        check_video_size(*self.image_size, what="image_size")
        if not 0.0 <= self.action_noise <= 0.1:
            raise ConfigError(f"action_noise={self.action_noise}: allowed range is [0, 0.1] rad")
        if self.workers < 1 or self.shard_size < 1:
            raise ConfigError(f"workers={self.workers}, shard_size={self.shard_size}: allowed range is [1, inf)")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.episodes))


class Float32Targets:
    """The wrapped policy's targets rounded to float32 before the env executes them: the
    dataset's float32 actions are then exactly what was sent, and a replay is exact.

    ``noise_std`` > 0 adds Gaussian noise (radians, per joint and target, seeded by the episode)
    to what is executed and recorded: demonstrations that visit the states a perturbed policy
    reaches, with the closed-loop demonstrator's corrections from there (DART, Laskey et al.
    2017). A policy cloned from them tolerates perturbations, such as a residual's exploration,
    that one cloned from clean demonstrations does not (docs/bc.md)."""

    def __init__(self, inner: BasePolicy, noise_std: float = 0.0) -> None:
        self.inner = inner
        self.chunk_length = inner.chunk_length
        self.execution_horizon = inner.execution_horizon
        self.noise_std = float(noise_std)
        self._rng = np.random.default_rng(0)

    def __getattr__(self, name: str) -> Any:  # frames, extra_observations, stateless: the inner policy's
        return getattr(self.inner, name)

    def reset(self, seed: int | None = None) -> None:
        self.inner.reset(seed=seed)
        self._rng = np.random.default_rng([NOISE_STREAM, 0 if seed is None else int(seed)])

    def act(self, observations: Mapping[str, np.ndarray]) -> np.ndarray:
        chunk = np.asarray(self.inner.act(observations), dtype=np.float64)
        if self.noise_std > 0.0:
            chunk = chunk + self._rng.normal(0.0, self.noise_std, chunk.shape)
        return chunk.astype(np.float32).astype(np.float64)


def features(config: RecordConfig) -> dict[str, dict[str, Any]]:
    """The dataset's features (LeRobot ``info.json`` form), named like the SO-101 datasets."""
    joints = list(LAYOUTS["rllib_paper"].joint_names)
    out: dict[str, dict[str, Any]] = {
        "observation.state": {"dtype": "float32", "shape": [6], "names": joints},
        "action": {"dtype": "float32", "shape": [6], "names": joints},
        "observation.environment_state": {"dtype": "float32", "shape": [7], "names": list(SHEET_NAMES)},
        TASK_STATE_KEY: {
            "dtype": "float32",
            "shape": [TASK_FIELDS[-1].slice.stop],
            "names": [meaning for f in TASK_FIELDS for meaning in f.meanings],
        },
    }
    height, width = config.image_size
    for name in config.cameras:
        out[f"observation.images.{name}"] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": "h264",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": 30,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    return out


class _FrameCapture:
    """``on_frame`` of an EpisodeRunner: the observation before each step and the target sent."""

    def __init__(self, cameras: Sequence[str], image_size: Sequence[int]) -> None:
        self.cameras = tuple(cameras)
        self.size = (int(image_size[0]), int(image_size[1]))
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self._encoders: dict[str, Any] = {}
        self._renderer = None

    def __call__(self, env, info: dict[str, Any]) -> None:
        if "residual_abs_mean" in info:  # after a step: the target that step executed
            self.actions.append(np.asarray(info["base_target"], dtype=np.float32))
        if "episode_summary" not in info:  # the final observation has no action after it
            self.states.append(env.env.state.astype(np.float32))
            if self.cameras:
                self._render(env.env)

    def _render(self, paper) -> None:
        from rllib_paper.evaluation.videos import Mp4Encoder, video_renderer

        if self._renderer is None:
            self._renderer = video_renderer(paper.model, *self.size)
            self._encoders = {name: Mp4Encoder(*self.size) for name in self.cameras}
        for name in self.cameras:
            self._encoders[name].add(self._renderer.render(paper.data, CAMERA_NAMES[name]))

    def finish(self) -> dict[str, bytes]:
        videos = {f"observation.images.{name}": enc.finish() for name, enc in self._encoders.items()}
        if self._renderer is not None:
            self._renderer.close()
        return videos


def record_episode(runner, seed: int, cameras: Sequence[str] = (), image_size=(224, 224)) -> dict[str, Any]:
    """One seeded episode as LeRobot columns (T frames) plus its metadata and camera MP4s."""
    capture = _FrameCapture(cameras, image_size)
    record = runner.run(int(seed), on_frame=capture)
    states = np.stack(capture.states)
    actions = np.stack(capture.actions)
    if len(states) != len(actions):  # an episode that ended without a summary (cannot happen: guard)
        raise RuntimeError(f"seed {seed}: {len(states)} observations for {len(actions)} actions")
    videos = capture.finish()
    return {
        "seed": int(seed),
        "columns": {
            "observation.state": states[:, QPOS],
            "action": actions,
            "observation.environment_state": states[:, SHEET_POSE],
            TASK_STATE_KEY: states,
        },
        "extra": {
            "seed": int(seed),
            "success": bool(record.success),
            "success_once": bool(record.success_once),
            "base_policy_failed": bool(record.base_policy_failed),
            "dr": {k: float(v) for k, v in record.dr.items()},
        },
        "videos": videos,
    }


class _RecordWorkerImpl:
    def __init__(
        self, env_config: dict[str, Any], cameras: Sequence[str], image_size: Sequence[int], action_noise: float
    ) -> None:
        from rllib_paper.evaluation.episodes import EpisodeRunner
        from rllib_paper.policies.registry import make_base_policy

        config = coerce_env_config(env_config)
        policy = Float32Targets(make_base_policy(config.residual.base_policy, config), action_noise)
        self.runner = EpisodeRunner(config, base_policy=policy, render_mode="rgb_array" if cameras else None)
        self.cameras, self.image_size = tuple(cameras), tuple(image_size)

    def record_shard(self, seeds: Sequence[int]) -> list[dict[str, Any]]:
        return [record_episode(self.runner, seed, self.cameras, self.image_size) for seed in seeds]


@functools.cache
def _worker_class():
    """The Ray actor class, made once per process (ray.remote is not free), as the evaluation's."""
    import ray

    return ray.remote(num_cpus=1, max_restarts=0)(_RecordWorkerImpl)


def _stem(seed: int) -> str:
    return f"seed-{seed:010d}"


def _stage(staging: Path, episode: dict[str, Any]) -> None:
    """Arrays and videos first, the metadata JSON last: a JSON file means a whole episode."""
    stem = _stem(episode["seed"])
    np.savez(staging / f"{stem}.npz", **{k.replace(".", "__"): v for k, v in episode["columns"].items()})
    for key, mp4 in episode["videos"].items():
        (staging / f"{stem}.{key}.mp4").write_bytes(mp4)
    dump_json(episode["extra"], staging / f"{stem}.json")


def _staged_extra(staging: Path, seed: int) -> dict[str, Any] | None:
    """The staged episode's metadata, or None if that seed is not staged (yet)."""
    path = staging / f"{_stem(seed)}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _staged(staging: Path, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Path]]:
    stem = _stem(seed)
    with np.load(staging / f"{stem}.npz", allow_pickle=False) as arrays:
        columns = {k.replace("__", "."): arrays[k] for k in arrays.files}
    extra = json.loads((staging / f"{stem}.json").read_text(encoding="utf-8"))
    videos = {p.name[len(stem) + 1 : -len(".mp4")]: p for p in staging.glob(f"{stem}.*.mp4")}
    return columns, extra, videos


def _snapshot(config: RecordConfig) -> dict[str, Any]:
    from rllib_paper.policies.registry import resolve_base_policy

    return {
        "env": config.env.to_dict(),
        "base_policy": resolve_base_policy(config.env.residual.base_policy),
        "dr": preset_name(config.env.randomization),
        "seeds": [config.seed, config.seed + config.episodes - 1],
        "only_success": config.only_success,
        "action_noise": config.action_noise,
        "cameras": list(config.cameras),
        "image_size": list(config.image_size),
        "format": config.format,
    }


def _prepare(config: RecordConfig, out: Path, staging: Path) -> None:
    snapshot = _snapshot(config)
    if (out / "meta" / "info.json").exists() and not config.resume:
        raise ConfigError(f"out={str(out)!r} already holds a dataset: choose a new --out (or --resume to rebuild it)")
    if out.is_dir() and any(out.iterdir()) and not (out / "meta" / "info.json").exists():
        raise ConfigError(
            f"out={str(out)!r} is a directory that holds something other than a dataset: choose a new --out"
        )
    snapshot_path = staging / "record_config.json"
    if staging.is_dir() and any(staging.glob("*.json")):
        if not config.resume:
            raise ConfigError(f"out={str(out)!r} holds an interrupted recording: pass --resume to continue it")
        if snapshot_path.is_file():
            previous = json.loads(snapshot_path.read_text(encoding="utf-8"))
            for key in ("env", "base_policy", "cameras", "image_size", "action_noise"):
                if previous.get(key) != json.loads(json.dumps(snapshot[key])):
                    raise ConfigError(f"--resume: {key} differs from the recording in {out}")
    staging.mkdir(parents=True, exist_ok=True)
    dump_json(snapshot, snapshot_path)


def record(config: RecordConfig) -> dict[str, Any]:
    """Record (or resume) ``config`` and write the dataset; returns a summary of what was kept."""
    from tqdm import tqdm

    from rllib_paper.policies.registry import ping_base_policy
    from rllib_paper.runtime.ray_start import start_ray
    from rllib_paper.runtime.shards import run_shards

    config.check()
    out, started = Path(config.out), time.perf_counter()
    staging = out.with_name(out.name + STAGING_SUFFIX)
    _prepare(config, out, staging)
    seeds = config.seeds
    # An episode whose base policy failed is no demonstration: a resumed run records it again.
    todo = [s for s in seeds if (extra := _staged_extra(staging, s)) is None or extra["base_policy_failed"]]
    if todo:
        import ray

        ping_base_policy(config.env.residual.base_policy)
        if not ray.is_initialized():
            start_ray(config.address, logging_level="WARNING")
        worker_class = _worker_class()
        env_config = config.env.to_dict()
        bar = tqdm(
            total=len(seeds), initial=len(seeds) - len(todo), unit="ep", desc="record", disable=not config.progress
        )

        def save(shard: list[int], episodes: list[dict[str, Any]]) -> bool:
            for episode in episodes:
                _stage(staging, episode)
            bar.update(len(episodes))
            return not any(e["extra"]["base_policy_failed"] for e in episodes)

        try:
            run_shards(
                [todo[i : i + config.shard_size] for i in range(0, len(todo), config.shard_size)],
                lambda: worker_class.remote(env_config, config.cameras, config.image_size, config.action_noise),
                lambda worker, shard: worker.record_shard.remote(shard),
                save,
                workers=config.workers,
                max_worker_failures=config.max_worker_failures,
                what="recording",
            )
        finally:
            bar.close()
    return _write_dataset(config, out, staging, seeds, time.perf_counter() - started)


def _write_dataset(config: RecordConfig, out: Path, staging: Path, seeds: list[int], seconds: float) -> dict:
    extras = {s: _staged_extra(staging, s) for s in seeds}
    failed = [s for s, extra in extras.items() if extra is not None and extra["base_policy_failed"]]
    if failed:  # the run stopped starting shards after these: some seeds may not be staged at all
        from rllib_paper.policies.base import BasePolicyFailed

        missing = sum(extra is None for extra in extras.values())
        raise BasePolicyFailed(
            f"base policy failed on {len(failed)} episodes (seeds {failed[:5]}), {missing} not recorded: nothing "
            "written; --resume records them once it answers"
        )
    if (out / "meta" / "info.json").exists():
        shutil.rmtree(out)  # a rebuild (--resume) of our own dataset: the writer starts a new one
    writer = DatasetWriter(
        out, fps=round(config.env.physics.control_hz), features=features(config), format=config.format
    )
    kept, successes = [], 0
    for seed in seeds:
        columns, extra, videos = _staged(staging, seed)
        successes += extra["success"]
        if config.only_success and not extra["success"]:
            continue
        writer.add_episode(columns, TASK_TEXT, extra=extra, videos=videos)
        kept.append(seed)
    if not kept:
        raise ConfigError(f"no episode of seeds {seeds[0]}..{seeds[-1]} succeeded: --only-success kept nothing")
    writer.finalize()
    from rllib_paper.runtime.provenance import provenance

    summary = {
        **json.loads((staging / "record_config.json").read_text(encoding="utf-8")),
        "episodes_tried": len(seeds),
        "successes": successes,
        "episodes_kept": len(kept),
        "kept_seeds": kept,
        "provenance": provenance(),
        "record_seconds": round(seconds, 1),
    }
    dump_json(summary, out / SIM_META)
    shutil.rmtree(staging)
    return summary
