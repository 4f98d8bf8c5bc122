"""The Isaac-GR00T inference-service wire format: msgpack with numpy arrays as .npy bytes.

Upstream (``gr00t/eval/service.py``, late N1.5 releases) encodes every ``np.ndarray`` as
``{"__ndarray_class__": True, "as_npy": <np.save bytes>}`` and a ``ModalityConfig`` as
``{"__ModalityConfig_class__": True, "as_json": <pydantic JSON>}``. We speak exactly that,
with one rule upstream does not enforce: arrays are decoded with ``allow_pickle=False`` only,
so an object array (the one way a .npy can carry a pickle) is rejected, never unpickled.
"""

from __future__ import annotations

import io
import json
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
    if isinstance(obj, ModalityConfigDict):
        return {MODALITY_TAG: True, "as_json": json.dumps(dict(obj))}
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
        try:
            return ModalityConfigDict(json.loads(obj["as_json"]))
        except (TypeError, ValueError) as exc:
            raise WireError(f"malformed modality config: {exc}") from None
    return obj


class ModalityConfigDict(dict):
    """A GR00T ``ModalityConfig`` as plain data: ``{"delta_indices": [...], "modality_keys": [...]}``."""


def dumps(message: Any) -> bytes:
    return msgpack.packb(message, default=_encode_custom, use_bin_type=True)


def loads(payload: bytes) -> Any:
    """Decode one message; any malformed input raises :class:`WireError`, never anything worse."""
    try:
        return msgpack.unpackb(payload, object_hook=_decode_custom, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several types for garbage input
        raise WireError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
