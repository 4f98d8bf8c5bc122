"""GR00T protocol client <-> our stand-in server: endpoints, tokens, timeouts, malformed input,
the serve-policy command in a subprocess, and the env querying it once per k steps."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from rllib_paper.policies.groot import wire
from rllib_paper.policies.groot.client import GrootClient, GrootServerError, GrootTimeout
from rllib_paper.policies.groot.config import load_mapping
from rllib_paper.policies.groot.mapping import GrootMapping
from rllib_paper.policies.groot.server import PolicyServer

SMALL = {"image_size": (48, 64), "render_shadows": False, "render_samples": 0, "sim_state_key": "state.sim"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    srv = PolicyServer("zero", load_mapping("so100_dualcam").replace(**SMALL), port=0, api_token="secret")
    port = srv.bind()
    thread = srv.start_thread()
    yield srv, f"tcp://127.0.0.1:{port}"
    srv.stop()
    thread.join(timeout=5)


def _observation(config, qpos):
    mapping = GrootMapping(config)
    h, w = config.image_size
    frames = {c.camera: np.zeros((1, h, w, 3), np.uint8) for c in config.cameras}
    return mapping, mapping.encode_observation(qpos, frames)


def test_ping_modality_and_action(server):
    srv, endpoint = server
    with GrootClient(endpoint, api_token="secret", timeout_s=5) as client:
        assert client.ping()
        modality = client.get_modality_config()
        assert modality["action"]["modality_keys"] == ["action.single_arm", "action.gripper"]
        assert modality["action"]["delta_indices"] == list(range(16))
        qpos = np.array([[0.1, -0.5, 0.4, 1.0, 0.2, 0.3]])
        mapping, obs = _observation(srv.mapping.config, qpos)
        action = client.get_action(obs)
        assert action["action.single_arm"].shape == (16, 5) and action["action.gripper"].shape == (16, 1)
        chunk = mapping.decode_action(action, qpos, False)
        np.testing.assert_allclose(chunk, np.repeat(qpos[:, None], 16, axis=1), atol=1e-9)  # zero = hold


def test_wrong_token_is_a_clear_error_and_server_keeps_serving(server):
    _, endpoint = server
    start = time.monotonic()
    with GrootClient(endpoint, api_token="wrong", timeout_s=5) as bad, pytest.raises(GrootServerError, match="token"):
        bad.ping()
    with GrootClient(endpoint, timeout_s=5) as none, pytest.raises(GrootServerError, match="token"):
        none.ping()
    assert time.monotonic() - start < 5
    with GrootClient(endpoint, api_token="secret", timeout_s=5) as good:
        assert good.ping()


def test_malformed_requests_are_answered_and_serving_continues(server):
    srv, endpoint = server
    context = zmq.Context.instance()
    raw = context.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.RCVTIMEO, 5000)
    raw.connect(endpoint)
    try:
        for payload in (
            b"\xc1\x00garbage",
            wire.dumps([1, 2, 3]),
            wire.dumps({"endpoint": "get_action", "api_token": "secret"}),
            wire.dumps({"endpoint": "get_action", "api_token": "secret", "data": {"state.single_arm": "x"}}),
            wire.dumps({"endpoint": "nope", "api_token": "secret"}),
        ):
            raw.send(payload)
            reply = wire.loads(raw.recv())
            assert set(reply) == {"error"} and reply["error"], payload
    finally:
        raw.close()
    with GrootClient(endpoint, api_token="secret", timeout_s=5) as client:
        assert client.ping()
        with pytest.raises(GrootServerError, match=r"lacks 'state\.single_arm'"):
            client.get_action({"video.front": np.zeros((1, 4, 4, 3), np.uint8)})
        assert client.ping()
    assert srv.errors >= 6


def test_dead_server_times_out_then_a_fresh_socket_reaches_a_new_one():
    port = _free_port()
    client = GrootClient(f"tcp://127.0.0.1:{port}", timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(GrootTimeout, match=r"did not answer 'get_modality_config' within 0\.5 s"):
        client.get_modality_config()
    assert time.monotonic() - start < 5  # the timeout's error, not a hang (10x its 0.5 s: loaded CI machines)
    assert client.ping() is False
    srv = PolicyServer("zero", load_mapping("so100"), port=port)
    srv.bind()
    srv.start_thread()
    try:
        assert client.ping(timeout_s=5)  # the stuck socket was replaced
    finally:
        srv.stop()
        client.close()


def test_serve_policy_command_with_latency_then_killed():
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "rllib_paper.cli", "serve-policy", "--policy", "zero", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--latency-ms", "100", "--api-token", "t0k"], env=env, stdout=subprocess.PIPE)
    try:
        client = GrootClient(f"tcp://127.0.0.1:{port}", api_token="t0k", timeout_s=30)
        assert client.ping()  # waits for the subprocess to start
        start = time.monotonic()
        assert client.ping()
        assert time.monotonic() - start >= 0.1  # the added latency
        line = proc.stdout.readline().decode()
        assert "127.0.0.1" in line and "token required" in line
        proc.kill()
        proc.wait(timeout=10)
        client.timeout_s = 0.5
        start = time.monotonic()
        with pytest.raises(GrootTimeout, match="is it running"):
            client.get_modality_config()
        assert time.monotonic() - start < 5  # 10x the 0.5 s timeout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _write_mapping(tmp_path, **changes):
    import yaml

    from rllib_paper.policies.groot.config import CONFIG_DIR

    data = yaml.safe_load((CONFIG_DIR / "so100_dualcam.yaml").read_text())
    data.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_env_queries_the_server_once_per_k_steps(tmp_path):
    from rllib_paper.envs.residual import ResidualPaperEnv

    srv = PolicyServer("scripted", load_mapping("so100_dualcam").replace(**SMALL), port=0)
    port = srv.bind()
    srv.start_thread()
    path = _write_mapping(tmp_path, **SMALL)
    try:
        env = ResidualPaperEnv(
            {
                "randomization": "phase2",
                "residual": {"base_policy": f"groot:tcp://127.0.0.1:{port}?config={path}&timeout=20"},
            }
        )
        assert env.base_policy.execution_horizon == 8 and env.base_policy.chunk_length == 16
        env.reset(seed=1000)
        steps = 40
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(np.zeros(6))
            assert not info.get("base_policy_failed")
            if terminated or truncated:
                break
        # one query at reset, then one each time k = 8 targets are used up (after steps 8, 16, ..)
        assert env.base_calls == 1 + steps // 8
        assert (env.base_calls - 1) / steps <= 1 / 8
        assert srv.requests == env.base_calls
        env.close()
    finally:
        srv.stop()


def test_env_ends_the_episode_when_the_server_is_gone(tmp_path):
    from rllib_paper.envs.residual import ResidualPaperEnv

    port = _free_port()
    path = _write_mapping(tmp_path, **SMALL)
    env = ResidualPaperEnv({"residual": {"base_policy": f"groot:tcp://127.0.0.1:{port}?config={path}&timeout=0.3"}})
    start = time.monotonic()
    env.reset(seed=0)  # both tries fail: the env holds its target and flags the failure
    _, _, terminated, truncated, info = env.step(np.zeros(6))
    assert time.monotonic() - start < 5
    assert terminated and not truncated and not info["success"]
    assert info["base_policy_failed"] and "GrootTimeout" in info["base_policy_error"]
    assert info["episode_summary"]["base_policy_failed"] is True
    assert env.base_failures == 2
    env.close()
