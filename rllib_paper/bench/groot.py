"""`rllib-paper bench groot`: env steps/s with a slow GR00T-like base behind the batching actor.

Several envs step in parallel, each in its own Ray actor (as env runners with one env each
would), with a zero residual, phase-2 DR and the same seeds in every phase. The default, 16
envs, is as many as the shipped training config runs (2 runners x 8 envs): a slow model's
latency is hidden only by other envs stepping while one waits, so fewer envs are
latency-bound (4 envs reach 0.21 of scripted even without frames, at 50 ms a reply). In a
vectorized runner the envs wait for their base queries one after another; this benchmark
does not measure that layout. The bases:

* ``scripted``: the scripted pusher in each env's process (no network, no frames);
* ``actor``: GR00T through the shared BasePolicyActor, which gathers the envs' concurrent
  queries into one request to the stand-in (``rllib-paper serve-policy`` serving the
  scripted pusher, a subprocess, ``latency_ms`` added per reply: a slow model);
* ``direct``: each env its own GR00T client, no actor: the server answers one request at a
  time, so the envs queue behind each other's latency (what the actor's batching saves);
* ``actor_frames``: as ``actor``, with the two camera frames rendered env-side before each
  query, as a real GR00T needs them (Mesa's software EGL on this CPU machine).

The first three send the joint state only (a mapping without cameras), so they measure the
protocol, the latency and the batching; the last adds the rendering cost. Every env queries
once per k = 8 steps. The same env processes serve every phase (a new env per phase, same
seeds); each phase is warmed up (clients connected, first frames rendered) before it is
timed, the actor's statistics cover the timed part only, and the scripted figure is the
mean of a run before and after the others (the load on a shared machine drifts).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_mapping(path: Path, image_size: tuple[int, int] | None, cameras: bool) -> Path:
    import yaml

    from rllib_paper.policies.groot.config import CONFIG_DIR

    data = yaml.safe_load((CONFIG_DIR / "so100_dualcam.yaml").read_text())
    # The mapping's own render settings (size, detail, shadows, multisampling): what a user gets.
    data["sim_state_key"] = "state.sim"
    if image_size is not None:
        data["image_size"] = list(image_size)
    if not cameras:
        data["cameras"] = []
    path.write_text(yaml.safe_dump(data))
    return path


def _mapping_size() -> tuple[int, int]:
    from rllib_paper.policies.groot.config import load_mapping

    return load_mapping("so100_dualcam").image_size


class _StandIn:
    """`rllib-paper serve-policy` in a subprocess on a free loopback port, stopped by its PID."""

    def __init__(self, mapping: Path, latency_ms: float, policy: str = "scripted") -> None:
        from rllib_paper.policies.groot.client import GrootClient

        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "rllib_paper.cli", "serve-policy", "--policy", policy, "--mapping", str(mapping)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--latency-ms", f"{latency_ms:g}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with GrootClient(self.address, timeout_s=60) as client:
            if not client.ping():
                self.stop()
                raise RuntimeError(f"serve-policy did not start: {self.proc.stderr.read().decode()[-1000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _env_worker_class():
    import ray

    @ray.remote(num_cpus=0)
    class EnvWorker:
        """One env in its own process; ``configure`` swaps in a new base policy (same seed)."""

        def __init__(self, seed: int) -> None:
            self.first_seed = seed
            self.env = None

        def configure(self, env_config: dict[str, Any]) -> None:
            from rllib_paper.envs.residual import ResidualPaperEnv

            if self.env is not None:
                self.env.close()
            self.env = ResidualPaperEnv(env_config)
            self.seed = self.first_seed
            self.env.reset(seed=self.seed)

        def step(self, steps: int) -> dict[str, int]:
            env, zero = self.env, np.zeros(6, dtype=np.float32)
            calls, failures = env.base_calls, env.base_failures
            for _ in range(steps):
                _, _, terminated, truncated, _ = env.step(zero)
                if terminated or truncated:
                    self.seed += 1000
                    env.reset(seed=self.seed)
            return {"steps": steps, "base_calls": env.base_calls - calls, "failures": env.base_failures - failures}

    return EnvWorker


def _phase(workers: list, env_config: dict[str, Any], steps: int, warmup: int, actor=None) -> dict[str, Any]:
    """The envs in parallel with one base: configure, warm up, then time ``steps`` steps of each."""
    import ray

    ray.get([w.configure.remote(env_config) for w in workers])
    ray.get([w.step.remote(warmup) for w in workers])  # clients connected, first frames rendered
    if actor is not None:
        ray.get(actor.reset_stats.remote())
    start = time.perf_counter()
    runs = ray.get([w.step.remote(steps) for w in workers])
    elapsed = time.perf_counter() - start
    total = sum(r["steps"] for r in runs)
    return {
        "env_steps": total,
        "seconds": elapsed,
        "env_steps_per_s": total / elapsed,
        "base_calls_per_env_step": sum(r["base_calls"] for r in runs) / total,
        "base_failures": sum(r["failures"] for r in runs),
        "actor": ray.get(actor.stats.remote()) if actor is not None else None,
    }


def run(
    envs: int = 16,
    steps: int = 320,
    frame_steps: int = 96,
    latency_ms: float = 50.0,
    image_size: tuple[int, int] | None = None,
    max_wait_ms: float = 5.0,
    warmup: int = 16,
) -> dict[str, Any]:
    """The four phases in one run, side by side (ratios need one machine state): read top to
    bottom on purpose, so the function is long; each phase's timing is ``_phase``."""
    import ray

    from rllib_paper.config import ConfigError, coerce_env_config
    from rllib_paper.policies.registry import make_base_policy

    checks = (("envs", envs, 1), ("steps", steps, 1), ("frame_steps", frame_steps, 1), ("warmup", warmup, 1))
    for label, value, low in (*checks, ("latency_ms", latency_ms, 0), ("max_wait_ms", max_wait_ms, 0)):
        if not value >= low:
            raise ConfigError(f"bench groot: {label}={value!r}: allowed range is [{low}, inf)")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise ConfigError(f"bench groot: image_size={image_size!r}: expected two positive integers (H, W)")
    tmp = tempfile.TemporaryDirectory(prefix="rp-bench-groot-", dir="/tmp")  # short: Ray's socket paths
    started, server = False, None
    phases: dict[str, dict[str, Any]] = {}
    try:
        state_only = _write_mapping(Path(tmp.name) / "state_only.yaml", image_size, cameras=False)
        with_frames = _write_mapping(Path(tmp.name) / "two_cameras.yaml", image_size, cameras=True)
        server = _StandIn(with_frames, latency_ms)
        if not ray.is_initialized():
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
                _temp_dir=str(Path(tmp.name) / "ray"),
            )
            started = True

        def env_config(base: str):
            return coerce_env_config(None, dr="phase2", residual={"base_policy": base})

        workers = [_env_worker_class().remote(1000 + i) for i in range(envs)]
        scripted = env_config("scripted").to_dict()
        phases["scripted"] = _phase(workers, scripted, steps, warmup)
        for phase, mapping, n in (("actor", state_only, steps), ("actor_frames", with_frames, frame_steps)):
            options = f"name=bench-groot-{phase}-{os.getpid()}&max_batch={envs}&max_wait_ms={max_wait_ms:g}&detached=0"
            spec = f"actor:groot:{server.address}?config={mapping}&timeout=30#{options}"
            proxy = make_base_policy(spec, env_config(spec))  # the driver owns the actor; the envs find it by name
            try:
                phases[phase] = _phase(workers, env_config(spec).to_dict(), n, warmup, actor=proxy.handle)
            finally:
                ray.kill(proxy.handle, no_restart=True)
        direct = f"groot:{server.address}?config={state_only}&timeout=30"
        phases["direct"] = _phase(workers, env_config(direct).to_dict(), steps, warmup)
        # The scripted figure again at the end, averaged: drift in machine load hits both sides alike.
        again = _phase(workers, scripted, steps, warmup)
        phases["scripted"]["env_steps_per_s"] = (phases["scripted"]["env_steps_per_s"] + again["env_steps_per_s"]) / 2
        for worker in workers:
            ray.kill(worker)
    finally:
        if started:
            ray.shutdown()
        if server is not None:
            server.stop()
        tmp.cleanup()
    scripted = phases["scripted"]["env_steps_per_s"]
    actor, frames, direct_rate = phases["actor"], phases["actor_frames"], phases["direct"]["env_steps_per_s"]
    return {
        "envs": envs,
        "steps_per_env": steps,
        "frame_steps_per_env": frame_steps,
        "latency_ms": latency_ms,
        "image_size": list(image_size or _mapping_size()),
        "max_wait_ms": max_wait_ms,
        "scripted_env_steps_per_s": scripted,
        "actor_env_steps_per_s": actor["env_steps_per_s"],
        "direct_env_steps_per_s": direct_rate,
        "actor_frames_env_steps_per_s": frames["env_steps_per_s"],
        "ratio_actor_to_scripted": actor["env_steps_per_s"] / scripted,
        "ratio_actor_to_direct": actor["env_steps_per_s"] / direct_rate,
        "ratio_actor_frames_to_scripted": frames["env_steps_per_s"] / scripted,
        "actor_mean_batch_size": actor["actor"]["mean_batch_size"],
        "actor_requests": actor["actor"]["requests"],
        "actor_model_calls": actor["actor"]["model_calls"],
        "actor_latency_ms_p50": actor["actor"]["latency_ms_p50"],
        "actor_frames_mean_batch_size": frames["actor"]["mean_batch_size"],
        "actor_frames_latency_ms_p50": frames["actor"]["latency_ms_p50"],
        "base_calls_per_env_step": actor["base_calls_per_env_step"],
        "base_failures": sum(p["base_failures"] for p in phases.values()),
    }


def main(
    envs: int = 16,
    steps: int = 320,
    frame_steps: int = 96,
    latency_ms: float = 50.0,
    image_size: tuple[int, int] | None = None,
    max_wait_ms: float = 5.0,
) -> dict[str, Any]:
    r = run(
        envs=envs,
        steps=steps,
        frame_steps=frame_steps,
        latency_ms=latency_ms,
        image_size=image_size,
        max_wait_ms=max_wait_ms,
    )
    h, w = r["image_size"]
    frames_batch = r["actor_frames_mean_batch_size"]
    print(
        f"{envs} envs stepping in parallel (one Ray actor each), zero residual, phase-2 DR, base queried every 8 steps"
    )
    print(f"GR00T stand-in: rllib-paper serve-policy (scripted pusher), +{latency_ms:g} ms per reply")
    print(f"{'base':<48} {'env steps/s':>11} {'vs scripted':>11} {'batch':>6}")
    rows = [
        ("scripted, in-process", r["scripted_env_steps_per_s"], None),
        ("GR00T stand-in via BasePolicyActor", r["actor_env_steps_per_s"], r["actor_mean_batch_size"]),
        ("GR00T stand-in, one client per env (no actor)", r["direct_env_steps_per_s"], None),
        (f"via BasePolicyActor + 2 frames {h} x {w} rendered", r["actor_frames_env_steps_per_s"], frames_batch),
    ]
    for label, rate, batch in rows:
        shown = f"{batch:6.2f}" if batch is not None else f"{'':>6}"
        print(f"{label:<48} {rate:>11.0f} {rate / r['scripted_env_steps_per_s']:>11.2f} {shown}")
    print(
        f"actor: {r['actor_requests']} requests in {r['actor_model_calls']} model calls, latency p50 "
        f"{r['actor_latency_ms_p50']:.0f} ms; base calls per env step {r['base_calls_per_env_step']:.3f}; "
        f"actor vs no actor x{r['ratio_actor_to_direct']:.2f}; failed base calls {r['base_failures']}"
    )
    print(json.dumps({"bench": "groot", **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}}))
    return r
