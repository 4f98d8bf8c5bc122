"""Episode videos: the top and wrist cameras side by side with a small overlay, as H.264 MP4.

Encoding uses PyAV (``av``): its wheels bundle FFmpeg's libraries with libx264, so there is no
ffmpeg binary to find or install, and the same library decodes the files back (the tests count
frames with it). A video has one frame for the reset and one per control step: ``steps + 1``.

Which episodes get a video is decided from the finished table alone (``choose_video_seeds``):
the first failures and the first successes by seed, so the choice is the same whatever the
number of workers. The chosen seeds are then run again with rendering; episodes are
deterministic per seed and rendering only reads the simulation, so the re-run is the same
episode (the evaluator checks it row by row).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rllib_paper.config import ConfigError

CAMERAS = ("top_view", "so101/wrist_view")  # the scene camera and the wrist camera (GR00T mappings' names)
DEFAULT_SIZE = (240, 320)  # per view (height, width): two views make a 240 x 640 video
FPS = 30  # the control rate: one frame per control step plays in real time
VIDEO_DIR = "videos"


def choose_video_seeds(episodes, count: int) -> list[int]:
    """The first failures and the first successes by seed (half each, the rest from the other
    kind when one runs short), failures first: a pure function of the episodes table."""
    if count <= 0 or not len(episodes):
        return []
    frame = episodes.sort_values("seed")
    failures = [int(s) for s in frame.loc[~frame["success"].astype(bool), "seed"]]
    successes = [int(s) for s in frame.loc[frame["success"].astype(bool), "seed"]]
    n_fail = min(len(failures), math.ceil(count / 2))
    n_succ = min(len(successes), count - n_fail)
    n_fail = min(len(failures), count - n_succ)
    return failures[:n_fail] + successes[:n_succ]


def parse_seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"--video-seeds {text!r}: expected comma-separated integers, e.g. 1003,1007") from exc
    if not seeds:
        raise ConfigError(f"--video-seeds {text!r}: no seeds")
    return seeds


def video_name(seed: int, success: bool) -> str:
    return f"seed-{seed:010d}-{'success' if success else 'failure'}.mp4"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def check_video_size(height: int, width: int, what: str = "video size") -> None:
    """H.264 in yuv420p needs even sizes; below 16 pixels nothing is visible anyway."""
    if height < 16 or width < 16 or height % 2 or width % 2:
        raise ConfigError(f"{what} {height}x{width}: expected even sizes of at least 16 pixels")


def video_renderer(model, height: int, width: int):
    """A CameraRenderer for videos: no shadows (a third of the cost on a CPU renderer) and no
    multisampling (per-frame cost roughly halves, measured); videos are for looking, not for the
    model. The multisampling setting is read when a renderer is made and then restored, so a camera
    policy's own renderer (GR00T's frames) made later sees the scene's value: a video never changes
    what a policy sees."""
    from rllib_paper.policies.groot.render import CameraRenderer

    samples = int(model.vis.quality.offsamples)
    renderer = CameraRenderer(model, height, width, shadows=False, samples=0)
    model.vis.quality.offsamples = samples
    return renderer


class Mp4Encoder:
    """H.264 frames into an MP4 in memory, one thread (a worker owns one CPU)."""

    def __init__(self, height: int, width: int, fps: int = FPS) -> None:
        import av

        check_video_size(height, width)
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, mode="w", format="mp4")
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width, stream.height = int(width), int(height)
        stream.pix_fmt = "yuv420p"
        # CRF 23 / veryfast: small files, cheap encoding.
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1"}
        self._stream = stream
        self.frames = 0

    def add(self, image: np.ndarray) -> None:
        import av

        for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def finish(self) -> bytes:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        return self._buffer.getvalue()


class EpisodeVideo:
    """Collects one episode's frames (``add`` after reset and after every step) into an MP4 in memory."""

    def __init__(self, height: int = DEFAULT_SIZE[0], width: int = DEFAULT_SIZE[1], cameras=CAMERAS) -> None:
        check_video_size(height, width)  # each view, not only the side-by-side frame
        self.height, self.width, self.cameras = int(height), int(width), tuple(cameras)
        self._encoder = Mp4Encoder(self.height, self.width * len(self.cameras))
        self._renderer = None
        self._model = None
        self._font = _font(max(10, self.height // 16))
        self.render_seconds = 0.0
        self.encode_seconds = 0.0

    @property
    def frames(self) -> int:
        return self._encoder.frames

    def add(self, env, info: dict[str, Any]) -> None:
        """Render ``env`` (a PaperSquareEnv or anything with ``.env`` being one) now and append the frame."""
        paper = getattr(env, "env", env)
        start = time.perf_counter()
        if self._model is not paper.model:
            if self._renderer is not None:
                self._renderer.close()
            self._renderer = video_renderer(paper.model, self.height, self.width)
            self._model = paper.model
        views = [self._renderer.render(paper.data, camera) for camera in self.cameras]
        image = self._overlay(np.concatenate(views, axis=1), info)
        middle = time.perf_counter()
        self._encoder.add(image)
        self.render_seconds += middle - start
        self.encode_seconds += time.perf_counter() - middle

    def _overlay(self, image: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        from PIL import Image, ImageDraw

        picture = Image.fromarray(image)
        draw = ImageDraw.Draw(picture)
        once = bool(info.get("success_once", info.get("success", False)))
        state = "SUCCESS" if info.get("success") else ("inside, settling" if once else "")
        text = (
            f"step {int(info.get('step', 0)):3d}  distance {100 * float(info.get('distance', 0.0)):5.1f} cm  "
            f"yaw error {math.degrees(float(info.get('yaw_error', 0.0))):5.1f} deg  {state}"
        )
        box = draw.textbbox((4, 2), text, font=self._font)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
        draw.text((4, 2), text, fill=(0, 255, 0) if info.get("success") else (255, 255, 255), font=self._font)
        return np.asarray(picture)

    def finish(self) -> bytes:
        """Flush the encoder and return the MP4's bytes (the renderer is released)."""
        start = time.perf_counter()
        mp4 = self._encoder.finish()
        self.encode_seconds += time.perf_counter() - start
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        return mp4


@dataclass
class RenderedEpisode:
    record: Any  # the EpisodeRecord of the re-run
    mp4: bytes
    frames: int
    render_seconds: float
    encode_seconds: float


def render_episode(runner, seed: int, size: Sequence[int] = DEFAULT_SIZE) -> RenderedEpisode:
    """Run ``seed`` on an EpisodeRunner with a video of it (reset frame + one per step)."""
    video = EpisodeVideo(int(size[0]), int(size[1]))
    record = runner.run(seed, on_frame=video.add)
    mp4 = video.finish()
    return RenderedEpisode(record, mp4, video.frames, video.render_seconds, video.encode_seconds)


def count_frames(path) -> int:
    """Decoded frames of an MP4 (what the tests check against steps + 1)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
