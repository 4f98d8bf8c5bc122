"""One way to start or join Ray for every command, so a local run never writes into ~ or leaks a dashboard.

``address`` None starts a local Ray (or joins ``RAY_ADDRESS``); "auto" or host:port joins a
cluster. A local Ray keeps its session files under /tmp (short socket paths) unless RAY_TMPDIR
says otherwise.

Security: a local Ray listens on every interface (GCS, raylet, workers, agents; its gRPC
servers bind 0.0.0.0 whatever the node address), so it relies on Ray's token authentication,
on by default for local clusters since Ray 2.59. Nothing here turns it off; a user who does
(``RAY_AUTH_MODE=disabled``) gets one warning line naming the address others can reach.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def start_ray(address: str | None = None, *, logging_level: str = "ERROR", **kwargs: Any) -> None:
    """Start or join Ray once per process; later calls are no-ops."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging_level}
    if address is None and not os.environ.get("RAY_TMPDIR") and "_temp_dir" not in kwargs:
        options["_temp_dir"] = str(Path("/tmp") / f"ray-{os.getuid()}-rllib-paper")
    options.update(kwargs)
    ray.init(address=address, **options)
    if address is None:
        warning = exposure_warning(os.environ.get("RAY_AUTH_MODE"), ray.util.get_node_ip_address())
        if warning:
            print(warning, file=sys.stderr, flush=True)


def exposure_warning(auth_mode: str | None, node_ip: str) -> str | None:
    """The warning for a local Ray without authentication reachable beyond loopback, or None."""
    if (auth_mode or "").strip().lower() != "disabled" or node_ip.startswith("127."):
        return None
    return (
        f"warning: RAY_AUTH_MODE=disabled and this local Ray listens on all interfaces (node {node_ip}): anyone who "
        "reaches this machine can run code in it; unset RAY_AUTH_MODE (token auth) or firewall the Ray ports"
    )
