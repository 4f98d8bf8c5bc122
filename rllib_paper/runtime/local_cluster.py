"""A real two-node Ray cluster on one machine, started with `ray start` like a cluster would be.

Why it exists: the cluster path (`ray job submit`, env runners on CPU nodes, the GR00T actor on a
node that carries the `groot` resource) should be tried before renting machines. `ray start` on
loopback gives real separate raylets, a real dashboard/job server and real token authentication;
`ray.cluster_utils.Cluster` would skip the job server entirely.

Both nodes run as `ray start --block` children of this process's caller, each in its own session,
so `down` stops exactly the processes `up` started, by PID, and never touches any other Ray on the
machine (no `ray stop`). Ports are picked free, so it can run beside a local `ray.init()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rllib_paper.config import ConfigError

STATE_FILE = "cluster.json"
CPU_NODE_RESOURCE = "cpu_node"  # env runners and evaluation workers can pin to it
GROOT_RESOURCE = "groot"  # the GR00T actor asks for one unit; on a real cluster only GPU nodes carry it


@dataclass
class LocalClusterConfig:
    root: str  # short path: Ray's AF_UNIX socket paths must stay under 107 bytes
    head_cpus: int = 1
    worker_cpus: int = 1
    head_resources: dict[str, float] = field(default_factory=lambda: {CPU_NODE_RESOURCE: 4.0})
    worker_resources: dict[str, float] = field(default_factory=lambda: {GROOT_RESOURCE: 1.0, CPU_NODE_RESOURCE: 4.0})
    start_timeout_s: float = 90.0

    def validate(self) -> None:
        if len(str(Path(self.root).resolve())) > 40:
            raise ConfigError(
                f"root={self.root!r}: Ray puts socket files under it and their paths must stay under 107 bytes; "
                "use a short directory (at most 40 characters, e.g. /tmp/rpc)"
            )
        for name in ("head_cpus", "worker_cpus"):
            value = getattr(self, name)
            if not 0 <= value <= 1024:
                raise ConfigError(f"{name}={value}: allowed range is [0, 1024]")


@dataclass
class LocalClusterState:
    """What `up` wrote and `down` and clients read: addresses, auth, and the PIDs to stop."""

    root: str
    gcs_address: str
    dashboard_url: str
    auth_token_path: str
    temp_dir: str
    pids: list[int]

    def client_env(self) -> dict[str, str]:
        """Environment a client needs to reach this cluster (ray job submit, ray.init, rllib-paper submit)."""
        return {
            "RAY_ADDRESS": self.dashboard_url,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": self.auth_token_path,
        }

    def shell_exports(self) -> str:
        return "\n".join(f"export {k}={v}" for k, v in self.client_env().items())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


def _node_env(auth_token_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Token auth, with the token in the cluster directory: the same setting for every node and
    # client (Ray refuses mixed modes), and nothing written into the home directory.
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(auth_token_path)})
    env.pop("RAY_ADDRESS", None)
    # Job entrypoints run `python`/`rllib-paper` from the node's PATH: make it this environment's,
    # as it would be on a cluster node set up with the project installed.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _start_node(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns the handle for its lifetime
    return subprocess.Popen(
        [_ray_executable(), "start", "--block", "--disable-usage-stats", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: `down` can stop it and its daemons together
    )


def alive_node_ids(state: LocalClusterState, timeout_s: float = 60.0) -> set[str]:
    """Ids of the cluster's alive nodes, asked of its GCS from a fresh process (so the caller's
    own Ray state, auth token cache included, never mixes with this cluster's)."""
    script = (
        f"import ray; ray.init(address={state.gcs_address!r}, logging_level='ERROR', log_to_driver=False);"
        "print(','.join(n['NodeID'] for n in ray.nodes() if n['Alive']))"
    )
    env = {**os.environ, **state.client_env()}
    env.pop("RAY_ADDRESS")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout_s, check=True
    )
    return set(out.stdout.strip().splitlines()[-1].split(","))


def _wait_for_nodes(state: LocalClusterState, expected: int, procs: list[subprocess.Popen], timeout_s: float) -> None:
    """Poll the GCS until every node is alive; a node process that exits early fails fast."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` exited with code {proc.returncode}; see the logs in {state.root}")
        try:
            if len(alive_node_ids(state)) >= expected:
                return
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError, IndexError):
            pass  # the GCS is not answering yet
        time.sleep(1.0)
    raise TimeoutError(f"the local cluster did not come up with {expected} nodes within {timeout_s:.0f} s")


def _wait_for_dashboard(url: str, timeout_s: float) -> None:
    """The job server answers only once the dashboard is up; submitting earlier fails."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answered (e.g. 401 without a token): the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(1.0)
    raise TimeoutError(f"the Ray dashboard at {url} did not answer within {timeout_s:.0f} s")


def _per_node_ports() -> list[str]:
    # Two raylets on one host must not share the agent and metrics ports Ray otherwise fixes.
    ports = ("--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [item for flag in ports for item in (flag, str(free_port()))]


def _head_args(config: LocalClusterConfig, gcs_port: int, dashboard_port: int, temp_dir: Path) -> list[str]:
    return [
        *("--head", "--port", str(gcs_port), "--include-dashboard", "true"),
        *("--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)),
        *("--ray-client-server-port", str(free_port())),
        *("--num-cpus", str(config.head_cpus), "--num-gpus", "0", "--resources", json.dumps(config.head_resources)),
        *("--temp-dir", str(temp_dir), "--node-ip-address", "127.0.0.1"),
        *_per_node_ports(),
    ]


def _worker_args(config: LocalClusterConfig, gcs_address: str, temp_dir: Path) -> list[str]:
    return [
        *("--address", gcs_address),
        *("--num-cpus", str(config.worker_cpus), "--num-gpus", "0", "--resources", json.dumps(config.worker_resources)),
        *("--temp-dir", str(temp_dir), "--node-ip-address", "127.0.0.1"),
        *_per_node_ports(),
    ]


def up(config: LocalClusterConfig) -> LocalClusterState:
    """Start a head and a second node on loopback; write cluster.json with addresses and PIDs."""
    config.validate()
    root = Path(config.root).resolve()
    if (root / STATE_FILE).exists():
        raise ConfigError(f"root={config.root!r}: a local cluster is already recorded there; run `down` first")
    root.mkdir(parents=True, exist_ok=True)
    token_path = root / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    temp_dir = root / "ray"
    env = _node_env(token_path)

    gcs_port, dashboard_port = free_port(), free_port()
    state = LocalClusterState(
        root=str(root),
        gcs_address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        auth_token_path=str(token_path),
        temp_dir=str(temp_dir),
        pids=[],
    )
    head = _start_node(_head_args(config, gcs_port, dashboard_port, temp_dir), env, root / "head.log")
    state.pids.append(head.pid)
    _write_state(root, state)
    try:
        _wait_for_nodes(state, 1, [head], config.start_timeout_s)
        # Its own temp dir, as a separate machine would have: nodes sharing one would share
        # (and garbage-collect) each other's unpacked job working directories.
        worker = _start_node(_worker_args(config, state.gcs_address, root / "ray-w"), env, root / "worker.log")
        state.pids.append(worker.pid)
        _write_state(root, state)
        _wait_for_nodes(state, 2, [head, worker], config.start_timeout_s)
        _wait_for_dashboard(state.dashboard_url, config.start_timeout_s)
    except BaseException:
        down(str(root))
        raise
    return state


def _write_state(root: Path, state: LocalClusterState) -> None:
    (root / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))


def load_state(root: str) -> LocalClusterState:
    path = Path(root).resolve() / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no local cluster recorded in {root} (expected {path})")
    return LocalClusterState(**json.loads(path.read_text()))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down(root: str, timeout_s: float = 30.0) -> list[int]:
    """Stop the nodes `up` started: SIGTERM to each `ray start --block` (it tears down its daemons),
    then SIGKILL to its process group for anything left. Returns the PIDs that were signalled."""
    state = load_state(root)
    # Worker node first, so the head does not spend the grace period waiting for it.
    for pid in reversed(state.pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in state.pids):
        for pid in state.pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.5)
    for pid in state.pids:
        if _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    (Path(state.root) / STATE_FILE).unlink(missing_ok=True)
    return state.pids
