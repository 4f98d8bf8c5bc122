"""A GR00T-protocol server for our own base policies (``rllib-paper serve-policy``).

It speaks the Isaac-GR00T inference service's wire protocol (ZeroMQ REP, msgpack, arrays
as .npy bytes; endpoints ping, get_modality_config, get_action, kill), so it is the GR00T
stand-in for tests and lets a user host any base policy on another machine. Observations
are decoded through the same mapping YAML a client uses, the policy's targets are encoded
back into that mapping's action keys, padded to ``action_horizon`` steps.

Safety: binds 127.0.0.1 unless told otherwise, never unpickles (``allow_pickle=False``),
and survives any message: a multipart or malformed request gets ``{"error": ...}``, a
ZeroMQ error rebuilds the socket on the same port, and no request ends the loop. A token,
when set, is checked before the payload is decoded (``wire.read_header``), so a wrong one
costs no memory. Requests are capped in size (``max_message_bytes``, ZeroMQ's MAXMSGSIZE:
ZeroMQ drops the sender's connection, so that client times out while others are served)
and in rows (``max_batch``). ``kill`` needs the token, or ``allow_kill`` when there is none.

Stateful policies (the scripted pusher keeps a stroke plan per episode) need to know which
episode a row belongs to. GR00T's protocol has no such notion; when the mapping sets
``sim_state_key``, clients also send ``<key>`` (the 25-D task observation, laid out in
``sim/observation.py``), ``<key>_target`` and ``<key>_episode`` (an id per row), and the
server keeps one policy instance per episode (least recently used instances are reused for
new episodes; ``policies/sessions.py``).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zmq

from rllib_paper.config import ConfigError, EnvConfig
from rllib_paper.policies.base import BasePolicy
from rllib_paper.policies.groot import wire
from rllib_paper.policies.groot.config import GrootMappingConfig
from rllib_paper.policies.groot.mapping import GrootMapping, frame_key
from rllib_paper.policies.registry import make_base_policy
from rllib_paper.policies.sessions import SessionPool
from rllib_paper.sim.observation import OBS_DIM, QPOS

log = logging.getLogger(__name__)

# Request size cap (ZMQ_MAXMSGSIZE; ZeroMQ applies it to each frame, and only one-frame
# requests are served). Two 480x640x3 uint8 frames are 2 * 921,600 = 1,843,200 B; a batch
# of 64 state rows in the stand-in's widest layout (single_arm 5 + gripper 1 + sim state 25
# + sim target 6 + episode id 1 = 38 float64 = 304 B a row) is 19,456 B; .npy headers
# (128 B an array) and msgpack framing add under 2 KB. About 1.87 MB in all: 4 MiB leaves
# more than 2x headroom. A batch with full-size frames in every row (64 x 2 frames = 118 MB)
# needs --max-message-bytes raised.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH = 64
UNAUTHORIZED = {"error": "Unauthorized: invalid API token"}


class PolicyServer:
    def __init__(
        self,
        policy_spec: str,
        mapping: GrootMappingConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 5555,
        api_token: str | None = None,
        latency_ms: float = 0.0,
        env_config: EnvConfig | None = None,
        max_sessions: int = 256,
        policy_factory: Callable[[], BasePolicy] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch: int = DEFAULT_MAX_BATCH,
        allow_kill: bool = False,
    ) -> None:
        _check_int("max_message_bytes", max_message_bytes, 1024, 2**40)
        _check_int("max_batch", max_batch, 1, 100_000)
        self.max_message_bytes, self.max_batch = max_message_bytes, max_batch
        self.allow_kill = bool(allow_kill)
        self.policy_spec = policy_spec
        self.mapping = GrootMapping(mapping)
        self.host, self.port = host, int(port)
        self.api_token = api_token
        self.latency_s = max(0.0, float(latency_ms)) / 1000.0
        self.env_config = env_config or EnvConfig()
        self.max_sessions = max_sessions
        factory = policy_factory or (lambda: make_base_policy(policy_spec, self.env_config))
        self.pool = SessionPool(factory, max_sessions)  # builds one now: a bad spec fails here
        self._needs_sim_state = not self.pool.stateless
        self._stop = threading.Event()
        self._context = zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self.requests = 0
        self.errors = 0
        self.bound_port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def bind(self) -> int:
        socket = self._new_socket()
        try:
            if self.port == 0:
                self.bound_port = socket.bind_to_random_port(f"tcp://{self.host}")
            else:
                socket.bind(f"tcp://{self.host}:{self.port}")
                self.bound_port = self.port
        except BaseException:
            socket.close(linger=0)
            raise
        self._socket = socket
        return self.bound_port

    def _new_socket(self) -> zmq.Socket:
        socket = self._context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)  # bigger: ZeroMQ drops that peer
        return socket

    def _rebind(self) -> None:
        """A fresh REP socket on the same port: after a failed send or receive the old one may
        be stuck mid request/reply (EFSM for ever). Leaves ``_socket`` None when stopped."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        delay = 0.01
        while not self._stop.is_set():
            time.sleep(delay)  # also keeps a persistent failure from spinning
            try:
                socket = self._new_socket()
            except zmq.ZMQError as exc:
                if exc.errno == zmq.ETERM:
                    return  # the context is gone: serve_forever ends
                raise
            try:
                socket.bind(f"tcp://{self.host}:{self.bound_port}")
            except zmq.ZMQError as exc:  # the old listener may take a moment to go
                socket.close(linger=0)
                log.warning("rebinding tcp://%s:%s failed (%s); retrying", self.host, self.bound_port, exc)
                delay = min(1.0, 2 * delay)
                continue
            self._socket = socket
            return

    def serve_forever(self, poll_ms: int = 100) -> None:
        if self._socket is None:
            self.bind()
        try:
            while not self._stop.is_set():
                socket = self._socket
                if socket is None:
                    break  # stopped while rebinding
                try:
                    if not socket.poll(poll_ms, zmq.POLLIN):
                        continue
                    frames = socket.recv_multipart(copy=False)  # zmq.Frames: no copy of the payload
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.ETERM:
                        break  # the context is gone: nothing can be served any more
                    log.warning("receiving a request failed (%s); rebinding", exc)
                    self._rebind()
                    continue
                payload = self._answer(frames)
                try:
                    socket.send(payload)
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.ETERM:
                        break
                    log.warning("sending a reply failed (%s); rebinding", exc)
                    self._rebind()
        finally:
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None

    def _answer(self, frames: list[zmq.Frame]) -> bytes:
        """The encoded reply to one received message; never raises."""
        try:
            if len(frames) != 1:
                self.requests += 1
                self.errors += 1
                reply: Any = {
                    "error": f"a request is one msgpack frame; got a multipart message of {len(frames)} frames"
                }
            else:
                reply = self.handle(frames[0].buffer)
            if self.latency_s:
                time.sleep(self.latency_s)
        except Exception as exc:  # handle() catches its own; this is the last guard for the loop
            log.exception("request failed outside the handler")
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        return _encode_reply(reply)

    def start_thread(self) -> threading.Thread:
        """Bind now and serve on a daemon thread (tests, notebooks); stop with ``stop()``."""
        if self._socket is None:
            self.bind()
        thread = threading.Thread(target=self.serve_forever, name="groot-policy-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ requests
    def handle(self, raw: bytes | memoryview) -> Any:
        """One request -> one reply; never raises (errors become ``{"error": ...}``)."""
        self.requests += 1
        try:
            header = wire.read_header(raw)  # endpoint and token only: nothing else decoded yet
            if self.api_token is not None and not _same_token(header.get("api_token"), self.api_token):
                self.errors += 1
                return dict(UNAUTHORIZED)
            endpoint = header.get("endpoint", "get_action")
            if endpoint == "ping":
                return {"status": "ok", "message": "Server is running"}
            if endpoint == "kill":
                if self.api_token is None and not self.allow_kill:
                    self.errors += 1
                    return {"error": "kill is disabled: serve-policy takes it with --api-token, or --allow-kill"}
                self._stop.set()
                return {"status": "ok", "message": "Server is shutting down"}
            if endpoint == "get_modality_config":
                return self.modality_config()
            if endpoint == "get_action":
                request = wire.loads(raw)  # the token is good: now decode the arrays
                data = request.get("data")
                if not isinstance(data, Mapping):
                    raise ValueError("get_action needs 'data': a mapping of observation arrays")
                return self.get_action(data)
            raise ValueError(f"unknown endpoint {endpoint!r}; known: ping, get_action, get_modality_config, kill")
        except Exception as exc:
            self.errors += 1
            log.debug("request failed", exc_info=True)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def modality_config(self) -> dict[str, wire.ModalityConfig]:
        """Upstream's reply: ModalityConfig objects (tagged ``__ModalityConfig_class__`` on the wire)."""
        config = self.mapping.config
        return {
            "video": wire.ModalityConfig(delta_indices=[0], modality_keys=[c.key for c in config.cameras]),
            "state": wire.ModalityConfig(delta_indices=[0], modality_keys=[g.key for g in config.state]),
            "action": wire.ModalityConfig(
                delta_indices=list(range(config.action_horizon)), modality_keys=[g.key for g in config.action]
            ),
            "language": wire.ModalityConfig(delta_indices=[0], modality_keys=[config.language_key]),
        }

    def get_action(self, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        decoded = self.mapping.decode_observation(data)
        batch = decoded.qpos.shape[0]
        if batch > self.max_batch:
            raise ValueError(
                f"a batch of {batch} rows is over this server's limit max_batch={self.max_batch} "
                "(serve-policy --max-batch): send fewer rows per request"
            )
        if decoded.sim_state is None:
            if self._needs_sim_state:
                key = self.mapping.config.sim_state_key or "state.sim"
                raise ValueError(
                    f"policy {self.policy_spec!r} needs the simulator state: set sim_state_key "
                    f"(e.g. {key}) in the client's mapping, or serve 'zero'"
                )
            state = np.zeros((batch, OBS_DIM))
            state[:, QPOS] = decoded.qpos
            target = decoded.qpos
        else:
            state, target = decoded.sim_state, decoded.sim_target
            if state.shape != (batch, OBS_DIM) or target is None or target.shape != (batch, 6):
                raise ValueError(f"sim state has shape {state.shape}; expected ({batch}, {OBS_DIM}) and ({batch}, 6)")
        observations = {"state": state, "target": target}
        for camera, frames in decoded.frames.items():
            observations[frame_key(camera)] = frames
        out = self.pool.act(observations, self._episode_ids(data, batch))
        horizon = self.mapping.config.action_horizon
        chunk = np.empty((batch, horizon, 6))
        steps = min(out.shape[1], horizon)
        chunk[:, :steps] = out[:, :steps]
        chunk[:, steps:] = out[:, steps - 1 : steps]  # closed-loop policies: hold the last target
        return self.mapping.encode_action(chunk, decoded.qpos, decoded.batched)

    def _episode_ids(self, data: Mapping[str, Any], batch: int) -> list[Any]:
        key = self.mapping.config.sim_state_key
        if key is None or key + "_episode" not in data:
            return ["default"] * batch
        ids = np.asarray(data[key + "_episode"]).reshape(-1)
        if len(ids) != batch:
            raise ValueError(f"{key}_episode holds {len(ids)} ids for a batch of {batch}")
        return [int(i) for i in ids]


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"serve-policy {name}={value!r}: allowed range is [{low}, {high}]")


def _same_token(sent: Any, expected: str) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode())


def _encode_reply(reply: Any) -> bytes:
    try:
        return wire.dumps(reply)
    except Exception as exc:  # an unencodable reply must still answer the REQ socket
        return wire.dumps({"error": f"server could not encode its reply: {exc}"})


def serve_main(
    env: EnvConfig,
    host: str = "127.0.0.1",
    port: int = 5555,
    api_token: str | None = None,
    latency_ms: float = 0.0,
    mapping: str = "so100_dualcam",
    sim_state_key: str | None = "state.sim",
    max_message_bytes: int | None = None,
    max_batch: int | None = None,
    allow_kill: bool = False,
) -> int:
    """CLI entry: serve until killed (Ctrl-C, or the 'kill' endpoint with the token or allow_kill)."""
    from rllib_paper.policies.groot.config import load_mapping

    config = load_mapping(mapping)
    max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
    max_batch = DEFAULT_MAX_BATCH if max_batch is None else max_batch
    if sim_state_key and config.sim_state_key is None:
        config = config.replace(sim_state_key=sim_state_key)
    policy = env.residual.base_policy
    server = PolicyServer(
        policy,
        config,
        env_config=env,
        host=host,
        port=port,
        api_token=api_token,
        latency_ms=latency_ms,
        max_message_bytes=max_message_bytes,
        max_batch=max_batch,
        allow_kill=allow_kill,
    )
    bound = server.bind()
    guard = "token required" if api_token else "no token"
    kill = "kill with the token" if api_token else ("kill allowed" if allow_kill else "kill disabled")
    print(
        f"serving base policy {policy!r} as GR00T ({config.name}) on tcp://{host}:{bound} ({guard}, {kill}, "
        f"+{latency_ms:g} ms latency, requests up to {max_message_bytes} bytes and {max_batch} rows)",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    print(f"stopped after {server.requests} requests ({server.errors} errors)", flush=True)
    return 0
