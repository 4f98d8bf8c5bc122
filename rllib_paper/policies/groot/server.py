"""A GR00T-protocol server for our own base policies (``rllib-paper serve-policy``).

It speaks the Isaac-GR00T inference service's wire protocol (ZeroMQ REP, msgpack, arrays
as .npy bytes; endpoints ping, get_modality_config, get_action, kill), so it is the GR00T
stand-in for tests and lets a user host any base policy on another machine. Observations
are decoded through the same mapping YAML a client uses, the policy's targets are encoded
back into that mapping's action keys, padded to ``action_horizon`` steps.

Safety: binds 127.0.0.1 unless told otherwise, never unpickles (``allow_pickle=False``),
rejects a wrong or missing token when one is set, and answers any malformed request with
``{"error": ...}`` and keeps serving.

Stateful policies (the scripted pusher keeps a stroke plan per episode) need to know which
episode a row belongs to. GR00T's protocol has no such notion; when the mapping sets
``sim_state_key``, clients also send ``<key>`` (25-D sim state), ``<key>_target`` and
``<key>_episode`` (an id per row), and the server keeps one policy instance per episode
(least recently used instances are reused for new episodes; ``policies/sessions.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zmq

from rllib_paper.config import EnvConfig
from rllib_paper.envs.paper_env import OBS_DIM
from rllib_paper.policies.base import BasePolicy, make_base_policy
from rllib_paper.policies.groot import wire
from rllib_paper.policies.groot.config import GrootMappingConfig
from rllib_paper.policies.groot.mapping import GrootMapping, frame_key
from rllib_paper.policies.sessions import SessionPool

log = logging.getLogger(__name__)


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
    ) -> None:
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
        socket = self._context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        if self.port == 0:
            self.bound_port = socket.bind_to_random_port(f"tcp://{self.host}")
        else:
            socket.bind(f"tcp://{self.host}:{self.port}")
            self.bound_port = self.port
        self._socket = socket
        return self.bound_port

    def serve_forever(self, poll_ms: int = 100) -> None:
        if self._socket is None:
            self.bind()
        socket = self._socket
        assert socket is not None
        try:
            while not self._stop.is_set():
                if not socket.poll(poll_ms, zmq.POLLIN):
                    continue
                raw = socket.recv()
                reply = self.handle(raw)
                if self.latency_s:
                    time.sleep(self.latency_s)
                socket.send(_encode_reply(reply))
        finally:
            socket.close(linger=0)
            self._socket = None

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
    def handle(self, raw: bytes) -> Any:
        """One request -> one reply; never raises (errors become ``{"error": ...}``)."""
        self.requests += 1
        try:
            request = wire.loads(raw)
            if not isinstance(request, Mapping):
                raise ValueError(f"a request must be a mapping, got {type(request).__name__}")
            if self.api_token is not None and request.get("api_token") != self.api_token:
                self.errors += 1
                return {"error": "Unauthorized: invalid API token"}
            endpoint = request.get("endpoint", "get_action")
            if endpoint == "ping":
                return {"status": "ok", "message": "Server is running"}
            if endpoint == "kill":
                self._stop.set()
                return {"status": "ok", "message": "Server is shutting down"}
            if endpoint == "get_modality_config":
                return self.modality_config()
            if endpoint == "get_action":
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
        if decoded.sim_state is None:
            if self._needs_sim_state:
                key = self.mapping.config.sim_state_key or "state.sim"
                raise ValueError(
                    f"policy {self.policy_spec!r} needs the simulator state: set sim_state_key "
                    f"(e.g. {key}) in the client's mapping, or serve 'zero'"
                )
            state = np.zeros((batch, OBS_DIM))
            state[:, :6] = decoded.qpos
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


def _encode_reply(reply: Any) -> bytes:
    try:
        return wire.dumps(reply)
    except Exception as exc:  # an unencodable reply must still answer the REQ socket
        return wire.dumps({"error": f"server could not encode its reply: {exc}"})


def serve_main(
    policy: str,
    host: str = "127.0.0.1",
    port: int = 5555,
    api_token: str | None = None,
    latency_ms: float = 0.0,
    mapping: str = "so100_dualcam",
    sim_state_key: str | None = "state.sim",
) -> int:
    """CLI entry: serve until killed (Ctrl-C or the 'kill' endpoint)."""
    from rllib_paper.policies.groot.config import load_mapping

    config = load_mapping(mapping)
    if sim_state_key and config.sim_state_key is None:
        config = config.replace(sim_state_key=sim_state_key)
    server = PolicyServer(policy, config, host=host, port=port, api_token=api_token, latency_ms=latency_ms)
    bound = server.bind()
    guard = "token required" if api_token else "no token"
    print(
        f"serving base policy {policy!r} as GR00T ({config.name}) on tcp://{host}:{bound} ({guard}, "
        f"+{latency_ms:g} ms latency)",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    print(f"stopped after {server.requests} requests ({server.errors} errors)", flush=True)
    return 0
