"""`rllib-paper submit -- train ...`: run any rllib-paper command as a Ray job on a cluster.

It is `ray job submit --working-dir . -- python -m rllib_paper ...` with what users get wrong on
their first cluster run caught before anything uploads: a relative `--out` (it would land in the
job's temporary working directory on the head node and vanish with it), and calls without
timeouts (Ray's job client has none; a dead head would hang the terminal forever).

The entrypoint is `python -m rllib_paper` rather than the `rllib-paper` script so the uploaded
working directory, not whatever version the nodes installed, is the code that runs.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rllib_paper.config import ConfigError
from rllib_paper.runtime.storage import is_uri

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
# Flags whose value is where a command writes results or reads checkpoints.
PATH_FLAGS = ("--out", "--checkpoint", "--storage", "--seeds-file", "--compare-out", "--json")


@dataclass
class SubmitConfig:
    command: list[str]  # the rllib-paper subcommand and its arguments, e.g. ["train", "--config", "demo"]
    address: str | None = None  # dashboard URL (http://head:8265); None: RAY_ADDRESS
    runtime_env_file: str | None = None  # YAML: working_dir, excludes, env_vars, pip
    working_dir: str = "."
    install_dependencies: bool = False  # pip-install the project's dependencies in the job's runtime env
    allow_relative_paths: bool = False
    wait: bool = True
    job_timeout_s: float | None = None  # stop the job if it runs longer; None: wait as long as it runs
    request_timeout_s: float = 120.0  # each HTTP call to the job server (uploads included)
    submission_id: str | None = None
    entrypoint_num_cpus: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.command:
            raise ConfigError("command=[]: give the rllib-paper subcommand after `--`, e.g. `submit -- train ...`")
        if self.command[0] in ("submit", "local-cluster"):
            raise ConfigError(f"command={self.command[0]!r}: allowed are the job commands (train, eval, tune, ...)")
        if not 1.0 <= self.request_timeout_s <= 3600.0:
            raise ConfigError(f"request_timeout_s={self.request_timeout_s}: allowed range is [1, 3600]")
        if self.job_timeout_s is not None and self.job_timeout_s <= 0:
            raise ConfigError(f"job_timeout_s={self.job_timeout_s}: allowed range is (0, inf)")
        if not self.allow_relative_paths:
            check_paths_are_shared(self.command, self.working_dir)


class JobServerUnreachable(ConnectionError):
    """The dashboard/job server did not answer: wrong address, tunnel down, or head dead."""


def check_paths_are_shared(command: list[str], working_dir: str | Path = ".") -> None:
    """A job runs in a temporary copy of the working dir on the head: relative outputs die with it
    (relative inputs shipped inside ``working_dir``, e.g. a committed checkpoint, travel with it)."""
    for i, token in enumerate(command):
        flag, _, inline = token.partition("=")
        if flag not in PATH_FLAGS:
            continue
        value = inline or (command[i + 1] if i + 1 < len(command) else "")
        if not value or is_uri(value) or Path(value).is_absolute():
            continue
        if flag in ("--checkpoint", "--seeds-file") and (Path(working_dir) / value).exists():
            continue  # an input shipped in the working directory (e.g. a committed checkpoint)
        raise ConfigError(
            f"{flag}={value!r}: a relative path on a cluster lands in the job's temporary working directory "
            "on the head node and is deleted with it; give an absolute path on storage every node shares "
            "(e.g. /mnt/shared/runs/x) or a URI (s3://..., gs://...), or pass --allow-relative-paths"
        )


def project_dependencies() -> list[str]:
    """The project's own dependency list, so a bare Ray image can run jobs without a custom image."""
    from importlib.metadata import requires

    deps = [dep for dep in requires("rllib-paper") or [] if "extra ==" not in dep]
    # Ray itself is already on every node, at the cluster's version; pip must not replace it.
    return [dep for dep in deps if not dep.replace(" ", "").startswith("ray[")]


def build_runtime_env(config: SubmitConfig) -> dict[str, Any]:
    runtime_env: dict[str, Any] = {}
    if config.runtime_env_file:
        loaded = yaml.safe_load(Path(config.runtime_env_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"runtime_env_file={config.runtime_env_file!r}: expected a YAML mapping")
        runtime_env.update(loaded)
    runtime_env.setdefault("working_dir", config.working_dir)
    if config.install_dependencies:
        runtime_env["pip"] = project_dependencies()
    return runtime_env


def build_entrypoint(command: list[str]) -> str:
    return shlex.join(["python", "-m", "rllib_paper", *command])


def _job_client_class():
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        """Ray's client with a timeout on every HTTP request (upstream sends them without one)."""

        def __init__(self, *args: Any, request_timeout_s: float, **kwargs: Any) -> None:
            self._request_timeout_s = request_timeout_s
            super().__init__(*args, **kwargs)

        def _do_request(self, method: str, endpoint: str, **kwargs: Any):
            kwargs.setdefault("timeout", self._request_timeout_s)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobSubmissionClient


def submit(config: SubmitConfig, out=sys.stdout) -> tuple[str, str]:
    """Submit the job; when waiting, stream its logs and return (submission id, final status)."""
    config.validate()
    try:
        client = _job_client_class()(config.address, request_timeout_s=config.request_timeout_s)
    except (ConnectionError, OSError, RuntimeError) as exc:
        address = config.address or os.environ.get("RAY_ADDRESS", "<unset RAY_ADDRESS>")
        raise JobServerUnreachable(
            f"address={address!r}: no Ray job server answered within {config.request_timeout_s:.0f} s ({exc}). "
            "Give the head's dashboard URL (http://HEAD:8265; `ray dashboard cluster/aws.yaml` or "
            "`kubectl port-forward` tunnels it to http://127.0.0.1:8265)"
        ) from exc
    entrypoint = build_entrypoint(config.command)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env=build_runtime_env(config),
        submission_id=config.submission_id,
        entrypoint_num_cpus=config.entrypoint_num_cpus,
        metadata={"tool": "rllib-paper", **config.metadata},
    )
    print(f"submitted {job_id}: {entrypoint}", file=out, flush=True)
    try:
        if not config.wait:
            return job_id, str(client.get_job_status(job_id)).split(".")[-1]
        return job_id, follow(client, job_id, config.job_timeout_s, out)
    except OSError as exc:  # requests' timeouts and connection errors
        raise JobServerUnreachable(
            f"lost the job server while following {job_id} ({exc}); the job itself may still be running: "
            f"`ray job status {job_id}` / `ray job logs {job_id}` once the head answers again"
        ) from exc


def follow(client, job_id: str, job_timeout_s: float | None, out, poll_s: float = 2.0) -> str:
    """Print the job's new log lines until it ends; stop it if it outlives job_timeout_s."""
    started = time.monotonic()
    printed = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in TERMINAL_STATES:
            print(f"job {job_id}: {status}", file=out, flush=True)
            return status
        if job_timeout_s is not None and time.monotonic() - started > job_timeout_s:
            client.stop_job(job_id)
            print(f"job {job_id}: stopped after {job_timeout_s:.0f} s (job timeout)", file=out, flush=True)
            return "STOPPED"
        time.sleep(poll_s)
