"""The evaluation's video pass: after every shard is in, re-run the chosen seeds with rendering.

The seeds come from the merged table (``videos.choose_video_seeds``) or the user's list, so
they do not depend on the worker count. They run on evaluation workers (one seed per task;
the MP4 bytes come back through Ray, so no shared filesystem is needed), and each re-run's
row must equal the table's row except for timing and placement: rendering never changes the
episode, and a difference stops the run rather than ship a video of another episode.
``DIR/videos/index.json`` lists what was written; the report carries it as ``videos``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rllib_paper.evaluation.videos import VIDEO_DIR, choose_video_seeds, video_name
from rllib_paper.runtime.files import atomic_write, dump_json

INDEX = "index.json"
VOLATILE_COLUMNS = ("wall_seconds", "node_id", "worker_pid")  # what may differ between two runs of a seed


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def episode_difference(row: dict[str, Any], table_row: dict[str, Any], volatile: Sequence[str]) -> str | None:
    """The first column where a re-run differs from the table's episode (None: the same episode)."""
    for key in sorted(set(row) | set(table_row)):
        if key in volatile:
            continue
        a, b = row.get(key), table_row.get(key)
        if hasattr(b, "item"):
            b = b.item()
        if not _same(a, b):
            return f"{key}: {b!r} in the table, {a!r} when rendered"
    return None


def read_video_index(out: Path, requested: set[int] | None = None) -> list[dict[str, Any]]:
    path = Path(out) / VIDEO_DIR / INDEX
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [e for e in entries if requested is None or e["seed"] in requested]


def render_videos(evaluator, episodes, seeds: Sequence[int], env_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Render the configured videos of ``evaluator``'s finished run (its shards' rows: ``episodes``);
    returns the index entries."""
    import ray

    config = evaluator.config
    episodes = episodes[episodes["seed"].isin(set(seeds))].drop_duplicates("seed", keep="first")
    table = {int(r["seed"]): r for r in episodes.to_dict("records")}
    if config.video_seeds is not None:
        chosen = [int(s) for s in config.video_seeds if int(s) in table]
    else:
        chosen = choose_video_seeds(episodes, config.videos)
    if not chosen:
        return []
    evaluator._start_ray()
    workers = [evaluator._new_worker(env_config) for _ in range(min(config.workers, len(chosen)))]
    video_dir = evaluator.out / VIDEO_DIR
    video_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    try:
        refs = [
            workers[i % len(workers)].render_video.remote(seed, tuple(config.video_size))
            for i, seed in enumerate(chosen)
        ]
        for seed, ref in zip(chosen, refs, strict=True):
            result = ray.get(ref)
            row = result["row"]
            difference = episode_difference(row, table[seed], VOLATILE_COLUMNS)
            if difference is not None:
                raise RuntimeError(f"seed {seed}: the rendered re-run is not the evaluated episode ({difference})")
            name = video_name(seed, bool(row["success"]))
            atomic_write(video_dir / name, lambda tmp, data=result["mp4"]: Path(tmp).write_bytes(data))
            entries.append(
                {
                    "seed": seed,
                    "file": f"{VIDEO_DIR}/{name}",
                    "success": bool(row["success"]),
                    "success_once": bool(row["success_once"]),
                    "steps": int(row["steps"]),
                    "frames": int(result["frames"]),  # the reset frame + one per control step
                    "size": [int(config.video_size[0]), 2 * int(config.video_size[1])],
                    "bytes": len(result["mp4"]),
                    "render_seconds": round(float(result["render_seconds"]), 3),
                    "encode_seconds": round(float(result["encode_seconds"]), 3),
                }
            )
    finally:
        for worker in workers:
            ray.kill(worker)
    dump_json(entries, video_dir / INDEX)
    return entries
