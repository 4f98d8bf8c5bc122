"""GR00T mapping: shipped YAMLs, validation, unit conversions, round trips, wire format, specs."""

import io
import math
import sys

import numpy as np
import pytest

from rllib_paper.config import ConfigError
from rllib_paper.policies.groot import wire
from rllib_paper.policies.groot.config import GrootMappingConfig, load_mapping, shipped_mappings
from rllib_paper.policies.groot.mapping import SO101_RANGES, GrootMapping
from rllib_paper.policies.groot.policy import parse_groot_spec

SHIPPED = ("so100", "so100_dualcam", "arm0_dualcam")


def _random_qpos(rng, batch):
    lo, hi = SO101_RANGES[:, 0], SO101_RANGES[:, 1]
    return lo + (hi - lo) * rng.uniform(0.05, 0.95, size=(batch, 6))


def _frames(mapping, batch, rng):
    h, w = mapping.config.image_size
    return {c.camera: rng.integers(0, 255, size=(batch, h, w, 3), dtype=np.uint8) for c in mapping.config.cameras}


def test_shipped_mappings_load_with_the_documented_layouts():
    assert set(SHIPPED) <= set(shipped_mappings())
    so100 = load_mapping("so100")
    assert [g.key for g in so100.state] == ["state.single_arm", "state.gripper"]
    assert [g.key for g in so100.action] == ["action.single_arm", "action.gripper"]
    assert [c.key for c in so100.cameras] == ["video.webcam"]
    dual = load_mapping("so100_dualcam")
    assert [c.key for c in dual.cameras] == ["video.front", "video.wrist"]
    arm0 = load_mapping("arm0_dualcam")
    assert [g.key for g in arm0.state] == ["state.arm_0"] and len(arm0.state[0].joints) == 6
    assert [c.key for c in arm0.cameras] == ["video.image_cam_0", "video.image_cam_1"]
    assert arm0.arm_units == "radians" and arm0.color_order == "BGR"
    for name in SHIPPED:
        config = load_mapping(name)
        assert config.action_horizon == 16 and config.execution_horizon == 8


def test_so101_ranges_match_the_compiled_model(default_model):
    _, ids = default_model
    np.testing.assert_allclose(SO101_RANGES[:, 0], ids.ctrl_low, atol=1e-5)
    np.testing.assert_allclose(SO101_RANGES[:, 1], ids.ctrl_high, atol=1e-5)


def test_unknown_and_bad_keys_are_named(tmp_path):
    data = {
        "name": "x",
        "state": [{"key": "state.arm_0", "joints": ["shoulder_pan"]}],
        "action": [{"key": "action.arm_0", "joints": ["shoulder_pan"]}],
        "cameras": [],
    }
    with pytest.raises(ConfigError, match=r"unknown key groot\.colour_order"):
        GrootMappingConfig.from_dict({**data, "colour_order": "RGB"})
    with pytest.raises(ConfigError, match=r"joints .* are missing"):
        GrootMappingConfig.from_dict(data)
    full = {**data, "state": [{"key": "state.arm_0", "joints": list(load_mapping("arm0_dualcam").state[0].joints)}]}
    GrootMappingConfig.from_dict(full)
    with pytest.raises(ConfigError, match=r"arm_units='furlongs': allowed values are"):
        GrootMappingConfig.from_dict({**full, "arm_units": "furlongs"})
    with pytest.raises(ConfigError, match=r"execution_horizon=17: allowed range is \[1, 16\]"):
        GrootMappingConfig.from_dict({**full, "execution_horizon": 17})
    with pytest.raises(ConfigError, match=r"unknown key groot.cameras\[0\].fov"):
        GrootMappingConfig.from_dict({**full, "cameras": [{"key": "video.a", "camera": "top_view", "fov": 3}]})
    with pytest.raises(ConfigError, match="camera='side'"):
        GrootMappingConfig.from_dict({**full, "cameras": [{"key": "video.a", "camera": "side"}]})
    with pytest.raises(ConfigError, match="shipped mappings are"):
        load_mapping("no_such_mapping")


def test_unit_conversions():
    base = load_mapping("so100_dualcam")
    q = np.array([[0.5, -0.25, 0.0, 0.1, -0.2, -0.17453]])
    deg = GrootMapping(base.replace(arm_units="degrees", gripper_units="degrees")).to_units(q)
    np.testing.assert_allclose(deg[0, :5], np.degrees(q[0, :5]))
    m100 = GrootMapping(base)  # range100 arm, percent gripper (open high)
    lo, hi = SO101_RANGES[:, 0], SO101_RANGES[:, 1]
    np.testing.assert_allclose(m100.to_units(lo[None])[0, :5], -100.0)
    np.testing.assert_allclose(m100.to_units(hi[None])[0, :5], 100.0)
    np.testing.assert_allclose(m100.to_units(((lo + hi) / 2)[None])[0, :5], 0.0, atol=1e-9)
    assert m100.to_units(lo[None])[0, 5] == pytest.approx(0.0)  # closed
    assert m100.to_units(hi[None])[0, 5] == pytest.approx(100.0)  # open
    flipped = GrootMapping(base.replace(gripper_open_is_high=False))
    assert flipped.to_units(hi[None])[0, 5] == pytest.approx(0.0)
    # calibration: offset and sign
    cal = GrootMapping(
        base.replace(
            arm_units="radians", gripper_units="radians", joint_offsets=(0.1,) * 6, joint_signs=(-1, 1, 1, 1, 1, 1)
        )
    )
    v = cal.to_units(np.full((1, 6), 0.3))
    np.testing.assert_allclose(v[0], [-0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(cal.from_units(v), np.full((1, 6), 0.3))


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_round_trips(name, mode):
    rng = np.random.default_rng(0)
    config = load_mapping(name).replace(
        action_mode=mode,
        image_size=(24, 32),
        joint_offsets=(0.05, -0.02, 0, 0, 0.1, 0),
        joint_signs=(1, -1, 1, 1, -1, 1),
    )
    mapping = GrootMapping(config)
    for batch, batched in ((1, False), (3, True)):
        qpos = _random_qpos(rng, batch)
        frames = _frames(mapping, batch, rng)
        obs = mapping.encode_observation(qpos, frames, batched=batched)
        first = config.state[0].key
        assert obs[first].shape == (
            (batch, 1, len(config.state[0].joints)) if batched else (1, len(config.state[0].joints))
        )
        decoded = mapping.decode_observation(wire.loads(wire.dumps(obs)))  # through the wire format too
        assert decoded.batched == batched
        np.testing.assert_allclose(decoded.qpos, qpos, atol=1e-9)
        for camera, image in frames.items():
            np.testing.assert_array_equal(decoded.frames[camera], image)
        assert decoded.task == [config.task_description] * batch
        targets = _random_qpos(rng, batch * 16).reshape(batch, 16, 6)
        action = mapping.encode_action(targets, qpos, batched)
        for group in config.action:
            shape = (batch, 16, len(group.joints)) if batched else (16, len(group.joints))
            assert action[group.key].shape == shape
        back = mapping.decode_action(wire.loads(wire.dumps(action)), qpos, batched)
        np.testing.assert_allclose(back, targets, atol=1e-9)


def test_bgr_frames_are_sent_channel_swapped():
    rng = np.random.default_rng(1)
    mapping = GrootMapping(load_mapping("arm0_dualcam").replace(image_size=(16, 16)))
    frames = _frames(mapping, 1, rng)
    obs = mapping.encode_observation(np.zeros((1, 6)), frames)
    np.testing.assert_array_equal(obs["video.image_cam_0"], frames["top_view"][..., ::-1])


def test_relative_actions_add_to_the_state():
    mapping = GrootMapping(load_mapping("arm0_dualcam").replace(action_mode="relative"))
    qpos = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    chunk = mapping.decode_action({"action.arm_0": np.full((16, 6), 0.01)}, qpos, False)
    np.testing.assert_allclose(chunk[0], np.repeat(qpos + 0.01, 16, axis=0))


def test_missing_action_joints_hold_and_bad_shapes_are_named():
    config = load_mapping("so100_dualcam")
    mapping = GrootMapping(config)
    with pytest.raises(ValueError, match=r"lacks 'action\.gripper'"):
        mapping.decode_action({"action.single_arm": np.zeros((16, 5))}, np.zeros((1, 6)), False)
    with pytest.raises(ValueError, match=r"expected \(T, 5\)"):
        mapping.decode_action(
            {"action.single_arm": np.zeros((16, 6)), "action.gripper": np.zeros((16, 1))}, np.zeros((1, 6)), False
        )
    arm_only = GrootMapping(config.replace(action=config.action[:1]))
    q = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.7]])
    chunk = arm_only.decode_action({"action.single_arm": np.zeros((16, 5))}, q, False)
    assert np.allclose(chunk[0, :, 5], 0.7)


def test_wire_round_trip_and_never_unpickles():
    message = {"a": np.arange(6.0).reshape(2, 3), "b": [np.uint8(3), "x"], "c": {"d": np.zeros((1, 2, 2, 3), np.uint8)}}
    back = wire.loads(wire.dumps(message))
    np.testing.assert_array_equal(back["a"], message["a"])
    assert back["b"] == [3, "x"]
    assert back["c"]["d"].dtype == np.uint8
    # An object array (a pickle inside .npy) is refused, not executed.
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    import msgpack

    payload = msgpack.packb({"x": {"__ndarray_class__": True, "as_npy": buffer.getvalue()}})
    with pytest.raises(wire.WireError, match="refused"):
        wire.loads(payload)
    with pytest.raises(wire.WireError):
        wire.loads(b"\xc1 not msgpack")
    with pytest.raises(wire.WireError):
        wire.dumps({"x": np.array([object()], dtype=object)})


def test_spec_parsing():
    spec = parse_groot_spec("groot:tcp://127.0.0.1:5555?config=arm0_dualcam&horizon=4&timeout=2.5&task=push%20it")
    assert spec.target == "tcp://127.0.0.1:5555" and spec.mapping.name == "arm0_dualcam"
    assert spec.mapping.execution_horizon == 4 and spec.timeout_s == 2.5
    assert spec.mapping.task_description == "push it"
    assert parse_groot_spec("groot:localhost:6000").target == "tcp://localhost:6000"
    local = parse_groot_spec("groot-local:/models/x?config=so100&device=cuda:1")
    assert local.kind == "groot-local" and local.target == "/models/x"
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        parse_groot_spec("groot:tcp://127.0.0.1:5555?colour=1")
    with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
        parse_groot_spec("groot:tcp://127.0.0.1")
    with pytest.raises(ConfigError, match=r"allowed range is \[1, 16\]"):
        parse_groot_spec("groot:tcp://127.0.0.1:5555?horizon=40")
    with pytest.raises(ConfigError, match="timeout"):
        parse_groot_spec("groot:tcp://127.0.0.1:5555?timeout=-1")


def test_local_backend_without_gr00t_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "gr00t", None)  # as where it is not installed, even where it is
    from rllib_paper.policies.groot.local import GrootUnavailable
    from rllib_paper.policies.groot.policy import make_groot_policy

    with pytest.raises(GrootUnavailable, match=r"pip install -e '\.\[groot\]'.*groot:tcp://"):
        make_groot_policy("groot-local:/models/none?config=arm0_dualcam")


def test_degrees_of_a_right_angle():
    mapping = GrootMapping(load_mapping("so100"))
    assert mapping.to_units(np.full((1, 6), math.pi / 2))[0, 0] == pytest.approx(90.0)
