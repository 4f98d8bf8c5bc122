"""Run directories on cloud storage: `--out s3://bucket/runs/x` (or gs://, abfs://, file://).

Why: on a cluster Ray no longer syncs files from worker nodes to the head, and a job's working
directory is deleted with the job, so results must go to storage every node reaches. A shared
filesystem mounted at the same path everywhere needs nothing from us; a URI needs this module.

How: the command works in a local staging directory, exactly as with a local `--out`, and a
mirror thread copies new or changed files to the URI every `interval_s` and once more at the end
(also on errors and Ctrl-C). `--resume` first pulls what the URI holds. A killed job therefore
loses at most the files written since the last mirror pass, on top of what the command itself
would lose (training: the work since its last checkpoint). Transfers go through pyarrow.fs, which
speaks S3, GCS, Azure and HDFS with the usual credential chains.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from rllib_paper.config import ConfigError

URI_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "az://", "hdfs://", "file://")


def is_uri(path: str | Path) -> bool:
    return str(path).startswith(URI_SCHEMES)


class RunMirror:
    """Copies a local run directory to a URI, file by file, skipping files unchanged since the last pass."""

    def __init__(self, local: Path, uri: str) -> None:
        from pyarrow import fs

        self.local = local
        self.uri = uri
        self.filesystem, self.root = fs.FileSystem.from_uri(uri)
        self._pushed: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def has_files(self) -> bool:
        from pyarrow import fs

        if self.filesystem.get_file_info(self.root).type == fs.FileType.NotFound:
            return False
        return any(
            entry.type == fs.FileType.File
            for entry in self.filesystem.get_file_info(fs.FileSelector(self.root, recursive=True))
        )

    def pull(self) -> int:
        """Download everything under the URI into the staging directory; returns the file count."""
        from pyarrow import fs

        info = self.filesystem.get_file_info(self.root)
        if info.type == fs.FileType.NotFound:
            return 0
        count = 0
        for entry in self.filesystem.get_file_info(fs.FileSelector(self.root, recursive=True)):
            if entry.type != fs.FileType.File:
                continue
            relative = entry.path[len(self.root.rstrip("/")) + 1 :]
            target = self.local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.filesystem.open_input_stream(entry.path) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            stat = target.stat()
            self._pushed[relative] = (stat.st_size, stat.st_mtime_ns)
            count += 1
        return count

    def push(self) -> int:
        """Upload new or changed files; returns how many were copied."""
        with self._lock:
            copied = 0
            for path in sorted(self.local.rglob("*")):
                if not path.is_file():
                    continue
                relative = path.relative_to(self.local).as_posix()
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # removed while we walked (e.g. a replaced checkpoint)
                signature = (stat.st_size, stat.st_mtime_ns)
                if self._pushed.get(relative) == signature:
                    continue
                destination = f"{self.root.rstrip('/')}/{relative}"
                self.filesystem.create_dir(destination.rsplit("/", 1)[0], recursive=True)
                with open(path, "rb") as src, self.filesystem.open_output_stream(destination) as dst:
                    shutil.copyfileobj(src, dst)
                self._pushed[relative] = signature
                copied += 1
            return copied


@contextlib.contextmanager
def run_directory(out: str, resume: bool = False, interval_s: float = 60.0) -> Iterator[Path]:
    """Yield a local directory for `out`: itself when it is a path, a mirrored staging dir for a URI."""
    if not is_uri(out):
        yield Path(out)
        return
    staging = Path(tempfile.mkdtemp(prefix="rllib-paper-run-"))
    mirror = RunMirror(staging, out)
    if resume:
        mirror.pull()
    elif mirror.has_files():
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"out={out!r}: already holds a run; pass --resume to continue it, or choose a new URI")
    stop = threading.Event()

    def mirror_loop() -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(OSError):  # a failed pass is retried at the next one and at the end
                mirror.push()

    thread = threading.Thread(target=mirror_loop, name="run-mirror", daemon=True)
    thread.start()
    try:
        yield staging
    finally:
        stop.set()
        thread.join()
        mirror.push()  # the final pass is not suppressed: a run whose results did not arrive must fail
        shutil.rmtree(staging, ignore_errors=True)


def local_copy(path_or_uri: str | Path) -> Path:
    """A local directory holding `path_or_uri`: the path itself, or a per-node download of a URI.

    Evaluation workers on any node call this for the checkpoint they load, so a checkpoint on
    s3:// or gs:// needs no shared filesystem. Downloads are cached per URI and published by an
    atomic rename, so concurrent workers on one node never see a half-written copy.
    """
    if not is_uri(path_or_uri):
        return Path(path_or_uri)
    uri = str(path_or_uri)
    target = Path(tempfile.gettempdir()) / f"rllib-paper-ckpt-{hashlib.sha256(uri.encode()).hexdigest()[:16]}"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=target.name + "-", dir=target.parent))
    if RunMirror(staging, uri).pull() == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise FileNotFoundError(f"checkpoint={uri!r}: no files under that URI")
    try:
        staging.rename(target)
    except OSError:  # another worker published it first
        shutil.rmtree(staging, ignore_errors=True)
    return target
