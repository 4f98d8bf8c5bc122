"""Wire-identical to the real GR00T inference service (issue 22 item 5).

A peer written here from the service's public description (msgpack with ``default`` /
``object_hook`` hooks, arrays as ``{"__ndarray_class__": True, "as_npy": np.save bytes}``,
ModalityConfig as ``{"__ModalityConfig_class__": True, "as_json": <pydantic JSON>}``; ZeroMQ
REQ/REP; ``{"endpoint", "data", "api_token"}`` requests; ``{"error": str}`` replies), then
both directions: the peer client against our server, our client against a peer server.
"""

import io
import json
import threading

import msgpack
import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from rllib_paper.policies.groot import wire  # noqa: E402
from rllib_paper.policies.groot.client import GrootClient, GrootServerError  # noqa: E402
from rllib_paper.policies.groot.config import load_mapping  # noqa: E402
from rllib_paper.policies.groot.mapping import GrootMapping  # noqa: E402
from rllib_paper.policies.groot.server import PolicyServer  # noqa: E402

try:
    from pydantic import BaseModel

    class PeerModalityConfig(BaseModel):
        delta_indices: list[int]
        modality_keys: list[str]

except ImportError:  # the same JSON by hand

    class PeerModalityConfig:
        def __init__(self, delta_indices, modality_keys):
            self.delta_indices, self.modality_keys = list(delta_indices), list(modality_keys)

        def model_dump_json(self):
            return json.dumps(vars(self), separators=(",", ":"))


# ---------------------------------------------------------------------------- the peer


def peer_encode(obj):
    if isinstance(obj, PeerModalityConfig):
        return {"__ModalityConfig_class__": True, "as_json": obj.model_dump_json()}
    if isinstance(obj, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buffer.getvalue()}
    return obj


def peer_decode(obj):
    if "__ModalityConfig_class__" in obj:
        return PeerModalityConfig(**json.loads(obj["as_json"]))
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    return obj


def peer_dumps(message) -> bytes:
    return msgpack.packb(message, default=peer_encode)


def peer_loads(payload: bytes):
    return msgpack.unpackb(payload, object_hook=peer_decode)


class PeerClient:
    """The service's client: endpoints without input send no ``data``; an error reply raises."""

    def __init__(self, endpoint: str, api_token: str | None = None, timeout_ms: int = 5000):
        self.socket = zmq.Context.instance().socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.socket.connect(endpoint)
        self.api_token = api_token

    def call_endpoint(self, endpoint: str, data=None, requires_input: bool = True):
        request = {"endpoint": endpoint}
        if requires_input:
            request["data"] = data
        if self.api_token:
            request["api_token"] = self.api_token
        self.socket.send(peer_dumps(request))
        reply = peer_loads(self.socket.recv())
        if "error" in reply:
            raise RuntimeError(f"Server error: {reply['error']}")
        return reply

    def ping(self) -> bool:
        return self.call_endpoint("ping", requires_input=False)["status"] == "ok"

    def get_modality_config(self):
        return self.call_endpoint("get_modality_config", requires_input=False)

    def get_action(self, observation):
        return self.call_endpoint("get_action", observation)

    def close(self):
        self.socket.close()


class PeerServer:
    """The service's server loop: token first, endpoints by name, any failure -> ``{"error": str}``."""

    def __init__(self, api_token=None, plain_modality=False, modality=None):
        self.socket = zmq.Context.instance().socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.socket.bind_to_random_port('tcp://127.0.0.1')}"
        self.api_token = api_token
        self.modality = modality or {
            "video": PeerModalityConfig(delta_indices=[0], modality_keys=["video.front", "video.wrist"]),
            "state": PeerModalityConfig(delta_indices=[0], modality_keys=["state.single_arm", "state.gripper"]),
            "action": PeerModalityConfig(
                delta_indices=list(range(16)), modality_keys=["action.single_arm", "action.gripper"]
            ),
            "language": PeerModalityConfig(delta_indices=[0], modality_keys=["annotation.human.task_description"]),
        }
        if plain_modality:  # an older or sloppier service: plain maps
            self.modality = {k: json.loads(v.model_dump_json()) for k, v in self.modality.items()}
        self.observations = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _get_action(self, data):
        self.observations.append(data)
        arm = np.asarray(data["state.single_arm"], dtype=np.float64)
        lead = arm.shape[:-2]  # () one observation, (B,) a batch
        return {
            "action.single_arm": np.broadcast_to(arm[..., -1:, :], (*lead, 16, 5)).copy(),
            "action.gripper": np.zeros((*lead, 16, 1)),
        }

    def _run(self):
        handlers = {
            "ping": lambda data: {"status": "ok", "message": "Server is running"},
            "kill": lambda data: setattr(self, "running", False),
            "get_modality_config": lambda data: self.modality,
            "get_action": self._get_action,
        }
        while self.running:
            if not self.socket.poll(50):
                continue
            try:
                request = peer_loads(self.socket.recv())
                if self.api_token is not None and request.get("api_token") != self.api_token:
                    self.socket.send(peer_dumps({"error": "Unauthorized: Invalid API token"}))
                    continue
                endpoint = request.get("endpoint", "get_action")
                if endpoint not in handlers:
                    raise ValueError(f"Unknown endpoint: {endpoint}")
                self.socket.send(peer_dumps(handlers[endpoint](request.get("data", {}))))
            except Exception as exc:
                self.socket.send(peer_dumps({"error": str(exc)}))
        self.socket.close()

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------- fixtures

SMALL = {"image_size": (48, 64), "render_shadows": False, "render_samples": 0}


@pytest.fixture
def our_server():
    srv = PolicyServer("zero", load_mapping("so100_dualcam").replace(**SMALL), port=0, api_token="secret")
    endpoint = f"tcp://127.0.0.1:{srv.bind()}"
    thread = srv.start_thread()
    yield srv, endpoint
    srv.stop()
    thread.join(timeout=5)


# ---------------------------------------------------------------------------- our server, peer client


def test_our_server_sends_tagged_modality_configs(our_server):
    _, endpoint = our_server
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.RCVTIMEO, 5000)
    raw.connect(endpoint)
    try:
        raw.send(msgpack.packb({"endpoint": "get_modality_config", "api_token": "secret"}))
        reply = msgpack.unpackb(raw.recv())  # no hooks: the bytes as they travel
    finally:
        raw.close()
    assert sorted(reply) == ["action", "language", "state", "video"]
    for value in reply.values():
        assert set(value) == {"__ModalityConfig_class__", "as_json"} and value["__ModalityConfig_class__"] is True
        fields = json.loads(value["as_json"])
        assert set(fields) == {"delta_indices", "modality_keys"}
        assert PeerModalityConfig(**fields).model_dump_json() == value["as_json"]  # pydantic's own JSON, byte for byte
    assert json.loads(reply["action"]["as_json"]) == {
        "delta_indices": list(range(16)),
        "modality_keys": ["action.single_arm", "action.gripper"],
    }


def test_peer_client_against_our_server(our_server):
    _, endpoint = our_server
    bad = PeerClient(endpoint, api_token="wrong")
    with pytest.raises(RuntimeError, match="Unauthorized"):
        bad.ping()
    bad.close()
    client = PeerClient(endpoint, api_token="secret")
    try:
        assert client.ping()
        config = client.get_modality_config()
        assert all(isinstance(v, PeerModalityConfig) for v in config.values())
        assert config["video"].modality_keys == ["video.front", "video.wrist"]
        assert config["state"].modality_keys == ["state.single_arm", "state.gripper"]
        assert config["action"].delta_indices == list(range(16))
        # An observation built from the modality config alone, as a GR00T client does.
        h, w = SMALL["image_size"]
        obs = {key: np.zeros((1, h, w, 3), np.uint8) for key in config["video"].modality_keys}
        obs["state.single_arm"] = np.array([[10.0, -20.0, 5.0, 30.0, 0.0]])
        obs["state.gripper"] = np.array([[40.0]])
        obs[config["language"].modality_keys[0]] = ["push the paper"]
        action = client.get_action(obs)
        assert sorted(action) == sorted(config["action"].modality_keys)
        assert action["action.single_arm"].shape == (16, 5) and action["action.gripper"].shape == (16, 1)
        np.testing.assert_allclose(action["action.single_arm"], np.repeat(obs["state.single_arm"], 16, 0), atol=1e-9)
        with pytest.raises(RuntimeError, match=r"lacks 'state\.single_arm'"):
            client.get_action({"video.front": obs["video.front"]})
        assert client.ping()
    finally:
        client.close()


# ---------------------------------------------------------------------------- our client, peer server


def test_our_client_against_a_peer_server():
    peer = PeerServer(api_token="secret")
    try:
        with (
            GrootClient(peer.endpoint, api_token="wrong", timeout_s=5) as bad,
            pytest.raises(GrootServerError, match="Unauthorized"),
        ):
            bad.ping()
        with GrootClient(peer.endpoint, api_token="secret", timeout_s=5) as client:
            assert client.ping()
            config = client.get_modality_config()
            assert all(isinstance(v, wire.ModalityConfig) for v in config.values())
            assert config["video"].modality_keys == ["video.front", "video.wrist"]
            assert config["action"].delta_indices == list(range(16))
            assert config["action"]["modality_keys"] == ["action.single_arm", "action.gripper"]  # mapping style too
            mapping = GrootMapping(load_mapping("so100_dualcam").replace(**SMALL))
            qpos = np.array([[0.1, -0.5, 0.4, 1.0, 0.2, 0.3]])
            frames = {c.camera: np.zeros((1, 48, 64, 3), np.uint8) for c in mapping.config.cameras}
            for batched, q in ((False, qpos), (True, np.repeat(qpos, 3, 0))):
                obs = mapping.encode_observation(
                    q, {c: np.repeat(f, len(q), 0) for c, f in frames.items()}, batched=batched
                )
                chunk = mapping.decode_action(client.get_action(obs), q, batched)
                np.testing.assert_allclose(chunk[..., :5], np.repeat(q[:, None, :5], 16, 1), atol=1e-9)
            seen = peer.observations[0]
            assert seen["video.front"].dtype == np.uint8 and seen["state.single_arm"].dtype == np.float64
            with pytest.raises(GrootServerError, match="Unknown endpoint"):
                client.call("nope")
            client.kill_server()
        peer.thread.join(timeout=5)
        assert not peer.thread.is_alive()
    finally:
        peer.stop()


def test_our_client_accepts_plain_dict_modality_configs():
    peer = PeerServer(plain_modality=True)
    try:
        with GrootClient(peer.endpoint, timeout_s=5) as client:
            config = client.get_modality_config()
        assert config["state"].modality_keys == ["state.single_arm", "state.gripper"]
        assert config["action"].delta_indices == list(range(16))
    finally:
        peer.stop()


def test_our_client_accepts_newer_modality_config_fields():
    # Later upstream releases add optional fields (eval_delta_indices, ...): kept, not fatal.
    newer = json.dumps({"delta_indices": [0], "eval_delta_indices": None, "modality_keys": ["video.front"]})
    payload = msgpack.packb({"video": {"__ModalityConfig_class__": True, "as_json": newer}})
    config = wire.loads(payload)["video"]
    assert config.modality_keys == ["video.front"] and config.delta_indices == [0]
    assert config.extra == {"eval_delta_indices": None}
    assert json.loads(msgpack.unpackb(wire.dumps({"v": config}))["v"]["as_json"]) == json.loads(newer)
    for bad in ('{"modality_keys": ["x"]}', '{"delta_indices": ["0"], "modality_keys": []}', "[1]", "{"):
        with pytest.raises(wire.WireError, match="modality config"):
            wire.loads(msgpack.packb({"v": {"__ModalityConfig_class__": True, "as_json": bad}}))
