"""BasePolicyActor: batching of concurrent callers, stats, restart after a kill, env retry."""

import contextlib
import threading
import time

import numpy as np
import pytest


def _kill(ray, handle):
    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)


def _obs(batch=1):
    from rllib_paper.config import EnvConfig

    home = np.asarray(EnvConfig().task.home_qpos)
    return {"state": np.zeros((batch, 25)), "target": np.tile(home, (batch, 1))}


def test_concurrent_callers_are_batched(ray_local):
    from rllib_paper.config import EnvConfig
    from rllib_paper.policies.actor import ActorBasePolicy, ActorOptions
    from rllib_paper.policies.registry import make_base_policy

    options = ActorOptions(name="test-batching", max_wait_ms=30, max_batch=16, timeout=60)
    proxies = [ActorBasePolicy("zero", options, EnvConfig(), make_base_policy) for _ in range(6)]
    try:
        # One caller alone: each request waits out the whole 30 ms batching window, and the
        # latency the actor reports is part of the round trip the caller measured.
        round_trips = []
        for _ in range(5):
            start = time.perf_counter()
            proxies[0].act(_obs())
            round_trips.append(1000 * (time.perf_counter() - start))
        alone = proxies[0].stats()
        assert alone["requests"] == alone["model_calls"] == 5 and alone["mean_batch_size"] == 1.0
        assert options.max_wait_ms <= alone["latency_ms_p50"] <= alone["latency_ms_p90"] <= alone["latency_ms_p99"]
        assert alone["latency_ms_p99"] <= max(round_trips), (alone, round_trips)
        ray_local.get(proxies[0].handle.reset_stats.remote(), timeout=60)

        errors = []

        def caller(proxy):
            try:
                for _ in range(5):
                    out = proxy.act(_obs())
                    assert out.shape == (1, 1, 6)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(p,)) for p in proxies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        stats = proxies[0].stats()
        assert stats["requests"] == 30 and stats["errors"] == 0
        assert stats["mean_batch_size"] > 1.0, stats
        assert 0 < stats["latency_ms_p50"] <= stats["latency_ms_p90"] <= stats["latency_ms_p99"]
    finally:
        _kill(ray_local, proxies[0].handle)


def test_actor_killed_mid_episode_recovers(ray_local):
    from rllib_paper.envs.residual import ResidualPaperEnv

    spec = "actor:zero#name=test-restart&max_restarts=2&timeout=60"
    env = ResidualPaperEnv({"task": {"max_steps": 30}, "residual": {"base_policy": spec}})
    proxy = env.base_policy
    try:
        env.reset(seed=3)
        first_pid = ray_local.get(proxy.handle.pid.remote(), timeout=60)
        for _ in range(5):
            env.step(np.zeros(6))
        ray_local.kill(proxy.handle, no_restart=False)  # crash: Ray restarts it (max_restarts)
        for _ in range(10):
            info = env.step(np.zeros(6))[4]
            assert not info.get("base_policy_failed"), info.get("base_policy_error")
        assert ray_local.get(proxy.handle.pid.remote(), timeout=60) != first_pid
        ray_local.kill(proxy.handle, no_restart=True)  # gone for good: the proxy makes a new one
        for _ in range(5):
            info = env.step(np.zeros(6))[4]
            assert not info.get("base_policy_failed"), info.get("base_policy_error")
        assert env.base_failures >= 1  # the call that met the dead actor, retried once
    finally:
        _kill(ray_local, proxy.handle)
        env.close()


def test_actor_serves_groot_through_the_stand_in(ray_local, tmp_path):
    import yaml

    from rllib_paper.envs.residual import ResidualPaperEnv
    from rllib_paper.policies.groot.config import CONFIG_DIR, load_mapping
    from rllib_paper.policies.groot.server import PolicyServer

    small = {"image_size": [48, 64], "render_shadows": False, "render_samples": 0}
    data = {**yaml.safe_load((CONFIG_DIR / "so100_dualcam.yaml").read_text()), **small}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    srv = PolicyServer("zero", load_mapping(path), port=0)
    port = srv.bind()
    srv.start_thread()
    spec = f"actor:groot:tcp://127.0.0.1:{port}?config={path}&timeout=20#name=test-groot-actor&timeout=60"
    env = ResidualPaperEnv({"residual": {"base_policy": spec}})
    try:
        assert env.base_policy.execution_horizon == 8 and env.base_policy.chunk_length == 16
        env.reset(seed=1000)
        for _ in range(16):
            _, _, _, _, info = env.step(np.zeros(6))
            assert not info.get("base_policy_failed"), info.get("base_policy_error")
        assert env.base_calls == 3 and srv.requests == 3
        assert env.base_policy.stats()["requests"] == 3
    finally:
        _kill(ray_local, env.base_policy.handle)
        srv.stop()
        env.close()


def test_bad_actor_options_are_named():
    from rllib_paper.config import ConfigError
    from rllib_paper.policies.actor import parse_actor_spec

    inner, options = parse_actor_spec("actor:groot:tcp://h:1?config=so100#num_gpus=1&resource=groot&max_batch=8")
    assert inner == "groot:tcp://h:1?config=so100"
    assert options.num_gpus == 1.0 and options.resource == "groot" and options.max_batch == 8
    with pytest.raises(ConfigError, match="max_batch=0"):
        parse_actor_spec("actor:zero#max_batch=0")
    with pytest.raises(ConfigError, match="unknown actor option 'gpus'"):
        parse_actor_spec("actor:zero#gpus=1")
    with pytest.raises(ConfigError, match="timeout='nan': expected a finite number"):
        parse_actor_spec("actor:zero#timeout=nan")
