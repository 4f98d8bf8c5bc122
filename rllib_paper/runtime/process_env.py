"""Process-wide defaults that must be set before numpy or MuJoCo load (``rllib_paper/__init__`` applies them).

* Rendering without a display: MuJoCo picks its GL backend from ``MUJOCO_GL`` when it is
  imported; unset on a headless machine it tries GLFW and fails. We choose ``egl`` (Mesa's
  on a CPU node, NVIDIA's on a GPU node) when neither ``MUJOCO_GL`` nor a display is set.
* The same episode on every x86-64 node: the pusher's inverse kinematics multiplies small
  matrices through numpy, i.e. OpenBLAS, whose kernel (and so the last bit of each sum)
  depends on the CPU: AVX-512 machines pick SkylakeX kernels, AVX2 machines Haswell ones,
  and an episode's last digits then differ. Pinning ``OPENBLAS_CORETYPE=Haswell`` on every
  AVX2-capable x86-64 CPU makes episodes bit-identical across them; the committed results
  were made with those kernels.

An explicit setting of either variable always wins. Ray workers inherit the driver's
environment, so setting them here before ``ray.init`` covers a local cluster too; a cluster
started elsewhere gets them from ``cluster/runtime_env.yaml``.
"""

from __future__ import annotations

import os
import platform
import sys


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(line.startswith("flags") and " avx2" in line for line in fh)
    except OSError:
        return False


def apply_process_defaults() -> dict[str, str]:
    """Set what is unset; returns the variables this call set (for logs and tests)."""
    chosen: dict[str, str] = {}
    headless = (
        sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    )
    if "MUJOCO_GL" not in os.environ and headless:
        chosen["MUJOCO_GL"] = "egl"
    if "OPENBLAS_CORETYPE" not in os.environ and platform.machine() in ("x86_64", "AMD64") and _has_avx2():
        chosen["OPENBLAS_CORETYPE"] = "Haswell"
    os.environ.update(chosen)
    if "OPENBLAS_CORETYPE" in chosen and "numpy" in sys.modules:
        import warnings

        warnings.warn(
            "numpy was imported before rllib_paper, so OpenBLAS already chose its kernels: episodes may differ "
            "in their last digits from other CPUs. Import rllib_paper first or export OPENBLAS_CORETYPE=Haswell.",
            stacklevel=3,
        )
    return chosen
