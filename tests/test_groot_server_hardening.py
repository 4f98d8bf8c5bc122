"""The stand-in GR00T server survives any message (issue 22 item 2) and guards its endpoints
(item 7): multipart and oversized messages, ZeroMQ errors inside the loop, the batch cap,
the token checked before any array is decoded, tokens on get_action and kill, the client's
two token routes, and a pickle-bearing array that must run no code."""

import io
import os
import socket
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from rllib_paper.policies.groot import server as server_module  # noqa: E402
from rllib_paper.policies.groot import wire  # noqa: E402
from rllib_paper.policies.groot.client import GrootClient, GrootServerError, GrootTimeout  # noqa: E402
from rllib_paper.policies.groot.config import load_mapping  # noqa: E402
from rllib_paper.policies.groot.mapping import GrootMapping  # noqa: E402
from rllib_paper.policies.groot.policy import make_backend, parse_groot_spec  # noqa: E402
from rllib_paper.policies.groot.server import PolicyServer  # noqa: E402

SMALL = {"image_size": (48, 64), "render_shadows": False, "render_samples": 0}
STATE_ONLY = {"cameras": (), "render_shadows": False, "render_samples": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Running:
    """A PolicyServer on a daemon thread, stopped (and joined) at the end."""

    def __init__(self, mapping_changes=SMALL, **kwargs):
        self.srv = PolicyServer("zero", load_mapping("so100_dualcam").replace(**mapping_changes), port=0, **kwargs)
        self.endpoint = f"tcp://127.0.0.1:{self.srv.bind()}"
        self.thread = self.srv.start_thread()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.srv.stop()
        self.thread.join(timeout=5)


def _raw_socket(endpoint: str, timeout_ms: int = 5000):
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.RCVTIMEO, timeout_ms)
    raw.setsockopt(zmq.SNDTIMEO, timeout_ms)
    raw.connect(endpoint)
    return raw


def _ask(endpoint: str, *frames: bytes, timeout_ms: int = 5000):
    """Send one (possibly multipart) message on a fresh REQ socket; the decoded reply, or None on timeout."""
    raw = _raw_socket(endpoint, timeout_ms)
    try:
        raw.send_multipart(list(frames))
        try:
            return wire.loads(raw.recv())
        except zmq.Again:
            return None
    finally:
        raw.close()


def _ping_works(endpoint: str, token: str | None = None) -> bool:
    with GrootClient(endpoint, api_token=token, timeout_s=5) as client:
        return client.ping()


def _state_batch(rows: int) -> dict:
    return {
        "state.single_arm": np.zeros((rows, 1, 5)),
        "state.gripper": np.full((rows, 1, 1), 50.0),
        "annotation.human.task_description": ["push"] * rows,
    }


# ---------------------------------------------------------------------------- item 2: any message


def test_multipart_request_gets_an_error_reply_and_serving_continues():
    ping = msgpack.packb({"endpoint": "ping"})
    with _Running(api_token="secret") as run:
        for first in (ping, msgpack.packb({"endpoint": "ping", "api_token": "secret"})):
            reply = _ask(run.endpoint, first, b"x")
            assert reply is not None, "no reply to a two-frame message: the serving loop died"
            assert set(reply) == {"error"} and "frame" in reply["error"]
        reply = _ask(run.endpoint, b"a", b"b", b"c", b"d")
        assert set(reply) == {"error"} and "4 frames" in reply["error"]
        assert run.thread.is_alive()
        assert _ping_works(run.endpoint, "secret")


def test_a_zmq_error_in_the_loop_does_not_end_serving():
    def fail_once(sock, *names):
        left = [1]
        for name in names:
            real = getattr(sock, name)

            def call(*args, _real=real, **kwargs):
                if left[0]:
                    left[0] -= 1
                    raise zmq.ZMQError(zmq.EFSM)
                return _real(*args, **kwargs)

            setattr(sock, name, call)  # on the serving socket only
        return left

    with _Running() as run:
        # The old loop read with recv, the new one with recv_multipart: patch both.
        left = fail_once(run.srv._socket, "recv", "recv_multipart")
        _ask(run.endpoint, wire.dumps({"endpoint": "ping"}), timeout_ms=1500)  # that request may be lost
        assert left == [0] and run.thread.is_alive()
        assert _ping_works(run.endpoint)
        left = fail_once(run.srv._socket, "send")
        assert _ask(run.endpoint, wire.dumps({"endpoint": "ping"}), timeout_ms=1500) is None  # its reply failed
        assert left == [0] and run.thread.is_alive()
        assert _ping_works(run.endpoint)
        assert _ping_works(run.endpoint)


def test_oversized_message_drops_only_that_peer():
    with _Running(max_message_bytes=4096) as run:
        assert run.srv._socket.getsockopt(zmq.MAXMSGSIZE) == 4096
        before = run.srv.requests
        big = wire.dumps({"endpoint": "ping", "pad": b"\0" * 8192})
        assert _ask(run.endpoint, big, timeout_ms=1500) is None  # ZeroMQ dropped the connection
        assert run.srv.requests == before  # never reached the application
        assert _ping_works(run.endpoint)  # a fresh client is served
        near = wire.dumps({"endpoint": "ping", "pad": b"\0" * 3900})
        assert len(near) < 4096 and _ask(run.endpoint, near)["status"] == "ok"


def test_default_limits_fit_two_full_frames_and_64_state_rows():
    frames = 2 * 480 * 640 * 3
    rows = 64 * (5 + 1 + 25 + 6 + 1) * 8  # single_arm, gripper, sim state, sim target, episode id: float64
    assert frames + rows < server_module.DEFAULT_MAX_MESSAGE_BYTES <= 4 * (frames + rows)
    assert server_module.DEFAULT_MAX_BATCH == 64
    with _Running() as run:
        assert run.srv._socket.getsockopt(zmq.MAXMSGSIZE) == server_module.DEFAULT_MAX_MESSAGE_BYTES
        h, w = 480, 640
        obs = {"video.front": np.zeros((1, h, w, 3), np.uint8), "video.wrist": np.zeros((1, h, w, 3), np.uint8)}
        obs.update({"state.single_arm": np.zeros((1, 5)), "state.gripper": np.zeros((1, 1))})
        with GrootClient(run.endpoint, timeout_s=10) as client:
            assert client.get_action(obs)["action.single_arm"].shape == (16, 5)  # full-size frames fit


def test_batch_cap_default_and_configured():
    with _Running(STATE_ONLY) as run, GrootClient(run.endpoint, timeout_s=10) as client:
        assert client.get_action(_state_batch(64))["action.single_arm"].shape == (64, 16, 5)
        with pytest.raises(GrootServerError, match=r"65 rows.*max_batch=64"):
            client.get_action(_state_batch(65))
        assert client.ping()
    with _Running(STATE_ONLY, max_batch=2) as run, GrootClient(run.endpoint, timeout_s=10) as client:
        assert client.get_action(_state_batch(2))["action.single_arm"].shape == (2, 16, 5)
        with pytest.raises(GrootServerError, match=r"3 rows.*max_batch=2"):
            client.get_action(_state_batch(3))


def test_limits_are_validated():
    mapping = load_mapping("so100")
    for bad in ({"max_message_bytes": 0}, {"max_message_bytes": 10.5}, {"max_batch": 0}, {"max_batch": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PolicyServer("zero", mapping, port=0, **bad)


def test_wrong_token_is_refused_before_any_array_is_decoded(monkeypatch):
    loads = []
    real_load = np.load

    def spy(*args, **kwargs):
        loads.append(1)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)  # wire decodes every array through np.load
    batch = wire.dumps({"endpoint": "get_action", "api_token": "wrong", "data": _state_batch(8)})
    with _Running(STATE_ONLY, api_token="secret") as run:
        reply = _ask(run.endpoint, batch)
        assert reply == {"error": "Unauthorized: invalid API token"}
        untokened = wire.dumps({"endpoint": "get_action", "data": _state_batch(8)})
        assert _ask(run.endpoint, untokened) == {"error": "Unauthorized: invalid API token"}
        assert loads == []  # nothing was decoded for either
        good = wire.dumps({"endpoint": "get_action", "api_token": "secret", "data": _state_batch(8)})
        assert _ask(run.endpoint, good)["action.single_arm"].shape == (8, 16, 5)
        assert loads  # the spy sees arrays once the token is right


# ---------------------------------------------------------------------------- item 7: tokens, pickles


def test_get_action_token_checks():
    with _Running(SMALL, api_token="secret") as run:
        calls = []
        real_act = run.srv.pool.act
        run.srv.pool.act = lambda *a, **k: calls.append(1) or real_act(*a, **k)
        qpos = np.array([[0.1, -0.5, 0.4, 1.0, 0.2, 0.3]])
        h, w = SMALL["image_size"]
        mapping = GrootMapping(run.srv.mapping.config)
        obs = mapping.encode_observation(
            qpos, {c.camera: np.zeros((1, h, w, 3), np.uint8) for c in mapping.config.cameras}
        )
        for token in ("wrong", None, ""):
            request = {"endpoint": "get_action", "data": obs}
            if token is not None:
                request["api_token"] = token
            reply = _ask(run.endpoint, wire.dumps(request))
            assert reply == {"error": "Unauthorized: invalid API token"}, token
            with (
                GrootClient(run.endpoint, api_token=token, timeout_s=5) as client,
                pytest.raises(GrootServerError, match="invalid API token"),
            ):
                client.get_action(obs)
        assert calls == []  # the policy never ran for a refused request
        with GrootClient(run.endpoint, api_token="secret", timeout_s=5) as client:
            assert client.get_action(obs)["action.single_arm"].shape == (16, 5)
        assert calls == [1]


def test_client_token_from_env_or_spec_option(monkeypatch):
    with _Running(SMALL, api_token="secret") as run:
        spec = f"groot:{run.endpoint}?config=so100_dualcam&timeout=5"
        monkeypatch.delenv("GROOT_API_TOKEN", raising=False)
        anonymous = make_backend(parse_groot_spec(spec)).client
        assert anonymous.api_token is None
        with pytest.raises(GrootServerError, match="invalid API token"):
            anonymous.call("ping")
        by_option = make_backend(parse_groot_spec(spec + "&token=secret")).client
        assert by_option.api_token == "secret" and by_option.ping()
        monkeypatch.setenv("GROOT_API_TOKEN", "secret")
        by_env = make_backend(parse_groot_spec(spec)).client
        assert by_env.api_token == "secret" and by_env.ping()
        monkeypatch.setenv("GROOT_API_TOKEN", "stale")
        option_wins = make_backend(parse_groot_spec(spec + "&token=secret")).client
        assert option_wins.api_token == "secret" and option_wins.ping()
        for client in (anonymous, by_option, by_env, option_wins):
            client.close()


class _Touch:
    """Unpickling this creates the file at ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_npy(path) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Touch(path)], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_pickle_bearing_array_runs_no_code(tmp_path):
    control = tmp_path / "control"
    np.load(io.BytesIO(_pickle_npy(control)), allow_pickle=True)  # the payload is armed
    assert control.exists()
    marker = tmp_path / "marker"
    array = {"__ndarray_class__": True, "as_npy": _pickle_npy(marker)}
    with _Running(SMALL, api_token="secret") as run:
        for token in ("secret", "wrong"):
            for where in ({"state.single_arm": array}, {"nested": {"deeper": [array]}}):
                reply = _ask(run.endpoint, msgpack.packb({"endpoint": "get_action", "api_token": token, "data": where}))
                assert set(reply) == {"error"}, reply
                assert ("refused" in reply["error"]) if token == "secret" else ("Unauthorized" in reply["error"])
        assert not marker.exists()
        assert _ping_works(run.endpoint, "secret")


def test_kill_needs_a_token_or_allow_kill():
    kill = wire.dumps({"endpoint": "kill"})
    with _Running() as run:  # no token, no allow_kill: refused
        reply = _ask(run.endpoint, kill)
        assert set(reply) == {"error"} and "--allow-kill" in reply["error"]
        time.sleep(0.3)
        assert run.thread.is_alive() and _ping_works(run.endpoint)
    with _Running(api_token="secret") as run:
        for token in ("wrong", None):
            request = {"endpoint": "kill"} | ({} if token is None else {"api_token": token})
            assert _ask(run.endpoint, wire.dumps(request)) == {"error": "Unauthorized: invalid API token"}
        time.sleep(0.3)
        assert run.thread.is_alive() and _ping_works(run.endpoint, "secret")
        assert _ask(run.endpoint, wire.dumps({"endpoint": "kill", "api_token": "secret"}))["status"] == "ok"
        run.thread.join(timeout=5)
        assert not run.thread.is_alive()
    with _Running(allow_kill=True) as run:
        with GrootClient(run.endpoint, timeout_s=5) as client:
            client.kill_server()
        run.thread.join(timeout=5)
        assert not run.thread.is_alive()


# ---------------------------------------------------------------------------- the command


def _serve(port: int, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rllib_paper.cli", "serve-policy", "--policy", "zero", "--port", str(port), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GROOT_API_TOKEN", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_ready(proc: subprocess.Popen, endpoint: str, token: str | None = None) -> None:
    with GrootClient(endpoint, api_token=token, timeout_s=1) as client:
        for _ in range(60):
            if proc.poll() is not None:
                pytest.fail(f"serve-policy exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            if client.ping():
                return
    pytest.fail("serve-policy did not answer within 60 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_serve_policy_survives_multipart_oversized_and_wrong_token_kill():
    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = _serve(port, "--api-token", "t0k", "--max-message-bytes", "65536")
    try:
        _wait_ready(proc, endpoint, "t0k")
        banner = proc.stdout.readline().decode()
        assert "token required" in banner and "65536" in banner
        for first in (msgpack.packb({"endpoint": "ping"}), msgpack.packb({"endpoint": "ping", "api_token": "t0k"})):
            reply = _ask(endpoint, first, b"x")
            assert reply is not None and "frame" in reply["error"]
        assert _ask(endpoint, wire.dumps({"endpoint": "ping", "pad": b"\0" * 100_000}), timeout_ms=1500) is None
        for token in ("wrong", None):
            request = {"endpoint": "kill"} | ({} if token is None else {"api_token": token})
            assert _ask(endpoint, wire.dumps(request)) == {"error": "Unauthorized: invalid API token"}
        assert proc.poll() is None and _ping_works(endpoint, "t0k")
        with GrootClient(endpoint, api_token="t0k", timeout_s=5) as client:
            client.kill_server()
        assert proc.wait(timeout=10) == 0
    finally:
        _stop(proc)


def test_serve_policy_kill_is_off_without_token_unless_allowed():
    ports = _free_port(), _free_port()
    plain, allowed = _serve(ports[0]), _serve(ports[1], "--allow-kill", "--max-batch", "4")
    try:
        for proc, port in zip((plain, allowed), ports, strict=True):
            _wait_ready(proc, f"tcp://127.0.0.1:{port}")
        endpoint = f"tcp://127.0.0.1:{ports[0]}"
        reply = _ask(endpoint, msgpack.packb({"endpoint": "ping"}), b"x")
        assert reply is not None and "frame" in reply["error"]
        reply = _ask(endpoint, wire.dumps({"endpoint": "kill"}))
        assert "--allow-kill" in reply["error"]
        assert plain.poll() is None and _ping_works(endpoint)
        with GrootClient(f"tcp://127.0.0.1:{ports[1]}", timeout_s=5) as client:
            with pytest.raises(GrootServerError, match="max_batch=4"):
                client.get_action(_state_batch(5))
            client.kill_server()
        assert allowed.wait(timeout=10) == 0
    finally:
        _stop(plain)
        _stop(allowed)


def test_serve_policy_rejects_bad_limits():
    from rllib_paper.cli import main

    assert main(["serve-policy", "--policy", "zero", "--port", "0", "--max-message-bytes", "0"]) == 2
    assert main(["serve-policy", "--policy", "zero", "--port", "0", "--max-batch", "-1"]) == 2


def test_client_timeout_mentions_the_size_cap():
    with _Running(max_message_bytes=4096) as run, GrootClient(run.endpoint, timeout_s=1) as client:
        with pytest.raises(GrootTimeout, match="max-message-bytes"):
            client.get_action({"state.single_arm": np.zeros((1, 5)), "pad": np.zeros(1000)})
        assert client.ping()
