"""One way to start or join Ray for every command, so a local run never writes into ~ or leaks a dashboard.

``address`` None starts a local Ray (or joins ``RAY_ADDRESS``); "auto" or host:port joins a
cluster. A local Ray keeps its session files under /tmp (short socket paths) unless RAY_TMPDIR
says otherwise.
"""

from __future__ import annotations

import os
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
