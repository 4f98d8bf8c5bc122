"""A ZeroMQ REQ client for the Isaac-GR00T inference service, with timeouts.

Upstream's ``RobotInferenceClient`` blocks forever when the server is gone. Here every
request has a deadline; after a timeout the REQ socket (stuck mid request/reply) is closed
and a fresh one is connected, so the next call starts clean. Server-side errors
(``{"error": str}``) raise :class:`GrootServerError`; a wrong token is one of them.
``get_modality_config`` returns :class:`wire.ModalityConfig` objects whether the server
sent upstream's tagged form or plain maps (older stand-ins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zmq

from rllib_paper.policies.base import BasePolicyUnavailable
from rllib_paper.policies.groot import wire


class GrootError(BasePolicyUnavailable):
    """Talking to a GR00T inference service failed."""


class GrootTimeout(GrootError):
    """No reply within the request timeout (server down, overloaded or unreachable)."""


class GrootServerError(GrootError):
    """The server answered with an error."""


def parse_endpoint(address: str) -> str:
    """``tcp://host:port``, ``host:port`` or ``:port`` -> a ZeroMQ endpoint."""
    if "://" in address:
        return address
    host, _, port = address.rpartition(":")
    return f"tcp://{host or '127.0.0.1'}:{port}"


class GrootClient:
    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        *,
        api_token: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s}: allowed range is (0, inf)")
        self.endpoint = parse_endpoint(endpoint)
        self.api_token = api_token
        self.timeout_s = float(timeout_s)
        self._context = zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self.requests = 0
        self.timeouts = 0

    # ------------------------------------------------------------------ endpoints
    def ping(self, timeout_s: float | None = None) -> bool:
        """True when the server answers; False on a timeout (never raises for a dead server)."""
        try:
            self.call("ping", timeout_s=timeout_s)
        except GrootTimeout:
            return False
        return True

    def get_modality_config(self) -> dict[str, wire.ModalityConfig]:
        """``{"video": ..., "state": ..., "action": ..., "language": ...}``, each with
        ``.delta_indices`` and ``.modality_keys``."""
        reply = self.call("get_modality_config")
        if not isinstance(reply, Mapping):
            raise GrootError(f"get_modality_config reply is a {type(reply).__name__}, expected a mapping")
        out = {}
        for name, value in reply.items():
            if isinstance(value, wire.ModalityConfig):
                out[name] = value
                continue
            try:
                out[name] = wire.ModalityConfig.from_dict(value)  # a plain map
            except wire.WireError as exc:
                raise GrootError(f"get_modality_config reply for {name!r}: {exc}") from None
        return out

    def get_action(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        reply = self.call("get_action", dict(observation))
        if not isinstance(reply, Mapping):
            raise GrootError(f"get_action reply is a {type(reply).__name__}, expected a mapping of action arrays")
        return dict(reply)

    def kill_server(self) -> None:
        self.call("kill")

    # ------------------------------------------------------------------ transport
    def call(self, endpoint: str, data: Mapping[str, Any] | None = None, timeout_s: float | None = None) -> Any:
        request: dict[str, Any] = {"endpoint": endpoint}
        if data is not None:
            request["data"] = data
        if self.api_token is not None:
            request["api_token"] = self.api_token
        payload = wire.dumps(request)
        timeout_ms = int(1000 * (timeout_s if timeout_s is not None else self.timeout_s))
        socket = self._connect()
        self.requests += 1
        try:
            if not socket.poll(timeout_ms, zmq.POLLOUT):
                raise zmq.Again()
            socket.send(payload, zmq.NOBLOCK)
            if not socket.poll(timeout_ms, zmq.POLLIN):
                raise zmq.Again()
            raw = socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            self._reset()
            self.timeouts += 1
            raise GrootTimeout(
                f"GR00T server at {self.endpoint} did not answer {endpoint!r} within {timeout_ms / 1000:g} s: "
                "is it running (`rllib-paper serve-policy` or Isaac-GR00T's inference service) and reachable? "
                f"(A request of {len(payload)} bytes over serve-policy's --max-message-bytes is dropped unanswered.)"
            ) from None
        except zmq.ZMQError as exc:
            self._reset()
            raise GrootError(f"GR00T request {endpoint!r} to {self.endpoint} failed: {exc}") from None
        try:
            reply = wire.loads(raw)
        except wire.WireError as exc:
            raise GrootError(f"GR00T server at {self.endpoint} sent an undecodable reply: {exc}") from None
        if isinstance(reply, Mapping) and "error" in reply:
            raise GrootServerError(f"GR00T server at {self.endpoint} refused {endpoint!r}: {reply['error']}")
        return reply

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            socket = self._context.socket(zmq.REQ)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(self.endpoint)
            self._socket = socket
        return self._socket

    def _reset(self) -> None:
        """Drop a socket stuck between send and recv; the next call connects a new one."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> GrootClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self):  # sockets do not travel: a copy reconnects on first use
        return {"endpoint": self.endpoint, "api_token": self.api_token, "timeout_s": self.timeout_s}

    def __setstate__(self, state) -> None:
        self.__init__(state["endpoint"], api_token=state["api_token"], timeout_s=state["timeout_s"])
