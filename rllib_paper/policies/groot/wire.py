"""The Isaac-GR00T inference-service wire format: msgpack with numpy arrays as .npy bytes.

Upstream (``gr00t/eval/service.py``, late N1.5 releases) encodes every ``np.ndarray`` as
``{"__ndarray_class__": True, "as_npy": <np.save bytes>}`` and a ``ModalityConfig`` as
``{"__ModalityConfig_class__": True, "as_json": <pydantic JSON>}``. We speak exactly that,
with one rule upstream does not enforce: arrays are decoded with ``allow_pickle=False`` only,
so an object array (the one way a .npy can carry a pickle) is rejected, never unpickled.

A ``ModalityConfig`` decodes into :class:`ModalityConfig` (``.delta_indices``,
``.modality_keys``), never into upstream's pydantic class. :func:`read_header` reads a
request's ``endpoint`` and ``api_token`` without decoding anything else, so a server can
refuse a wrong token before it spends memory on the payload.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

NDARRAY_TAG = "__ndarray_class__"
MODALITY_TAG = "__ModalityConfig_class__"


class WireError(ValueError):
    """A message could not be encoded or decoded in the GR00T wire format."""


def _encode_custom(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise WireError(f"cannot send an object array (dtype {obj.dtype}): only plain numeric arrays travel")
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        return {NDARRAY_TAG: True, "as_npy": buffer.getvalue()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, ModalityConfig):
        return {MODALITY_TAG: True, "as_json": obj.to_json()}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in the GR00T wire format")


def _decode_custom(obj: dict) -> Any:
    if obj.get(NDARRAY_TAG) is True and "as_npy" in obj:
        payload = obj["as_npy"]
        if not isinstance(payload, (bytes, bytearray)):
            raise WireError("an encoded array's 'as_npy' field is not bytes")
        try:
            return np.load(io.BytesIO(payload), allow_pickle=False)
        except ValueError as exc:  # object arrays need pickle: refused
            raise WireError(f"refused to decode an array: {exc}") from None
        except Exception as exc:
            raise WireError(f"malformed array payload: {exc}") from None
    if obj.get(MODALITY_TAG) is True and "as_json" in obj:
        return ModalityConfig.from_json(obj["as_json"])
    return obj


@dataclass
class ModalityConfig:
    """A GR00T ``ModalityConfig``: which steps (``delta_indices``) of which keys a modality carries.

    Travels as upstream's pydantic JSON. Fields other upstream releases add (for example
    ``eval_delta_indices``) are kept in ``extra`` and sent back unchanged. ``config["modality_keys"]``
    reads like the plain dicts older stand-ins sent.
    """

    delta_indices: list[int]
    modality_keys: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        indices, keys = self.delta_indices, self.modality_keys
        if not isinstance(indices, (list, tuple)) or not all(_is_int(i) for i in indices):
            raise WireError(f"malformed modality config: delta_indices={indices!r} is not a list of integers")
        if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
            raise WireError(f"malformed modality config: modality_keys={keys!r} is not a list of strings")
        self.delta_indices, self.modality_keys = list(indices), list(keys)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityConfig:
        if not isinstance(data, Mapping):
            raise WireError(f"malformed modality config: expected a JSON object, got {type(data).__name__}")
        missing = [name for name in ("delta_indices", "modality_keys") if name not in data]
        if missing:
            raise WireError(f"malformed modality config: {missing[0]!r} is missing (got {sorted(map(str, data))})")
        extra = {k: v for k, v in data.items() if k not in ("delta_indices", "modality_keys")}
        return cls(data["delta_indices"], data["modality_keys"], extra)

    @classmethod
    def from_json(cls, text: Any) -> ModalityConfig:
        if not isinstance(text, (str, bytes, bytearray)):
            raise WireError(f"malformed modality config: 'as_json' is a {type(text).__name__}, not a string")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise WireError(f"malformed modality config: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {"delta_indices": list(self.delta_indices), "modality_keys": list(self.modality_keys), **self.extra}

    def to_json(self) -> str:
        """Compact JSON, as pydantic's ``model_dump_json`` writes it."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def __getitem__(self, name: str) -> Any:
        if name in ("delta_indices", "modality_keys"):
            return getattr(self, name)
        return self.extra[name]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dumps(message: Any) -> bytes:
    return msgpack.packb(message, default=_encode_custom, use_bin_type=True)


def read_header(payload: bytes | memoryview, names: tuple[str, ...] = ("endpoint", "api_token")) -> dict[str, Any]:
    """The top-level ``names`` of a request map, every other value skipped undecoded.

    No array is decoded and no value outside ``names`` is built (``data`` is skipped as
    msgpack structure), so this costs a walk over the bytes, not the payload's memory.
    Raises :class:`WireError` for anything but one msgpack map.
    """
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(payload), 1))
    try:
        unpacker.feed(payload)
        size = unpacker.read_map_header()
    except Exception as exc:
        raise WireError(f"a request must be one msgpack map: {type(exc).__name__}: {exc}") from None
    found: dict[str, Any] = {}
    try:
        for _ in range(size):
            key = unpacker.unpack()  # no object_hook: even a map here stays plain data
            if isinstance(key, str) and key in names:
                found[key] = unpacker.unpack()  # the last one wins, as in a full decode
            else:
                unpacker.skip()
    except Exception as exc:
        raise WireError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    return found


def loads(payload: bytes | memoryview) -> Any:
    """Decode one message; any malformed input raises :class:`WireError`, never anything worse."""
    try:
        return msgpack.unpackb(payload, object_hook=_decode_custom, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several types for garbage input
        raise WireError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
