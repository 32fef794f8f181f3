"""What a published message holds: one anonymised window as JSON (default) or compact binary.

JSON (UTF-8, one object per message / per line)::

    {"v": 1, "stream": "s-3f2a9c01d4e5b6a7", "segment": 0, "index": 41, "t0": 82.0,
     "rate_hz": 50.0, "channels": ["acc_mag", "gyro_mag"], "units": ["g", "rad/s"],
     "model": "9c1d2e3f4a5b", "values": [[...W numbers...], [...W numbers...]]}

``values`` is channel-major (C lists of n numbers) with 6 decimals (``1.062865``); ``t0`` is the time
of ``values[c][0]`` in seconds (the device's clock when it sends one), ``rate_hz`` the spacing.

Binary (little-endian), for links where 2-3 kB of JSON per window is too much::

    offset size  field
    0      4     magic b"IAW1"
    4      1     C, channel count
    5      1     length of the stream id, L
    6      2     n, samples per channel
    8      4     segment (uint32)
    12     4     index (uint32)
    16     8     t0 (float64)
    24     4     rate_hz (float32)
    28     12    model (ASCII hex)
    40     L     stream id (ASCII)
    40+L   4*C*n values, float32, channel-major

Channel names and units are not repeated in binary messages: they are in the retained status
message (:func:`status`), which every consumer reads once.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from typing import Any, Sequence

import numpy as np

from edge_runtime.signals import AnonymisedWindow

VERSION = 1
FORMATS = ("json", "binary")
MAGIC = b"IAW1"
_HEAD = struct.Struct("<4sBBHIIdf12s")


def encode(window: AnonymisedWindow, fmt: str = "json") -> bytes:
    if not isinstance(window, AnonymisedWindow):
        raise TypeError(f"only an AnonymisedWindow can be encoded, not {type(window).__name__}")
    if fmt == "json":
        return _json(window)
    if fmt == "binary":
        stream = window.stream.encode("ascii")
        head = _HEAD.pack(MAGIC, len(window.channels), len(stream), window.samples, window.segment & 0xFFFFFFFF,
                          window.index & 0xFFFFFFFF, window.t0, window.rate_hz, window.model.encode("ascii")[:12])
        return head + stream + np.ascontiguousarray(window.values, dtype="<f4").tobytes()
    raise ValueError(f"unknown payload format {fmt!r}; known: {', '.join(FORMATS)}")


def encode_many(windows: Sequence[AnonymisedWindow], fmt: str = "json") -> list[bytes]:
    """``[encode(w, fmt) for w in windows]``, byte for byte."""
    return [encode(w, fmt) for w in windows]


def as_dict(window: AnonymisedWindow) -> dict[str, Any]:
    return {
        "v": VERSION, "stream": window.stream, "segment": window.segment, "index": window.index,
        "t0": round(float(window.t0), 6), "rate_hz": float(window.rate_hz),
        "channels": list(window.channels), "units": list(window.units), "model": window.model,
        "values": np.round(window.values.astype(np.float64), 6).tolist(),
    }


def _json(window: AnonymisedWindow) -> bytes:
    """``json.dumps(as_dict(window))`` at a fraction of the cost: every value written with 6
    decimals by :func:`_fixed6` (readable numbers, the ones ``as_dict``'s rounding gives, a
    zero's sign aside); NaN or infinities take ``json.dumps`` as before."""
    values = window.values.astype(np.float64)
    t0, rate = round(float(window.t0), 6), float(window.rate_hz)
    if not (np.isfinite(values).all() and math.isfinite(t0) and math.isfinite(rate)):
        return json.dumps(as_dict(window), separators=(",", ":")).encode("utf-8")
    head = (f'{{"v":{VERSION},"stream":{json.dumps(window.stream)},"segment":{int(window.segment)},'
            f'"index":{int(window.index)},"t0":{t0!r},"rate_hz":{rate!r}'
            f'{_fixed_fields(window.channels, window.units, window.model)},"values":').encode("utf-8")
    return head + _fixed6(values) + b"}"


FIXED6_MAX = 999.999  # from here on (never in g or rad/s) the %-template: the integer part stays < 1000


def _words(texts: list[str]) -> np.ndarray:
    """Each text (at most 4 ASCII characters) as one uint32 word, NUL-padded."""
    return np.frombuffer(b"".join(t.encode("ascii").ljust(4, b"\0") for t in texts), dtype=np.uint32)


_WHOLE = _words([str(i) for i in range(1000)] + [f"-{i}" for i in range(1000)])  # sign and integer part
_HIGH = _words([f".{i:03d}" for i in range(1000)])  # the point and decimals 1-3
_LOW = _words([f"{i:03d}" for i in range(1000)])  # decimals 4-6


def _fixed6(values: np.ndarray) -> bytes:
    """``[[v,...],...]`` of a finite float64 [C, n] array with 6 decimals (``-1.062865``).

    Table look-ups instead of a ``%.6f`` per value (less than half the time): each value is
    rounded to the integer ``rint(|v| * 1e6)`` (numpy's own ``round(v, 6)`` arithmetic), split
    into three-digit groups, each group read as a 4-byte word from a table of its text; the
    words of all values side by side are the text once their NUL padding is deleted."""
    c, n = values.shape
    flat = values.ravel()
    mag = np.abs(flat)
    if not flat.size or float(mag.max()) >= FIXED6_MAX:
        return (_values_template(c, n) % tuple(flat.tolist())).encode("ascii")
    scaled = np.rint(mag * 1e6).astype(np.int64)
    whole, frac = np.divmod(scaled, 1_000_000)
    high, low = np.divmod(frac, 1000)
    whole += 1000 * ((flat < 0) & (scaled > 0))  # a minus sign, except on what rounds to zero
    words = np.array([_WHOLE[whole], _HIGH[high], _LOW[low], _separators(c, n)])
    return b"[[" + words.T.tobytes().translate(None, b"\0") + b"]"


@functools.lru_cache(maxsize=16)
def _separators(channels: int, samples: int) -> np.ndarray:
    """What follows each value: a comma, "],[" at the end of a channel, "]" after the last."""
    comma, next_row, last = _words([",", "],[", "]"])
    out = np.full((channels, samples), comma, dtype=np.uint32)
    out[:, -1] = next_row
    out[-1, -1] = last
    return out.ravel()


@functools.lru_cache(maxsize=64)
def _fixed_fields(channels: tuple[str, ...], units: tuple[str, ...], model: str) -> str:
    """The part of the JSON that is the same for every window of a model."""
    rest = json.dumps({"channels": list(channels), "units": list(units), "model": model}, separators=(",", ":"))
    return "," + rest[1:-1]


@functools.lru_cache(maxsize=16)
def _values_template(channels: int, samples: int) -> str:
    row = "[" + ",".join(["%.6f"] * samples) + "]"
    return "[" + ",".join([row] * channels) + "]"


def decode(data: bytes) -> dict[str, Any]:
    """Read a message back (for consumers and tests): the JSON object, or the binary fields
    as the same keys (``channels``/``units`` are None in binary)."""
    if data[:4] == MAGIC:
        if len(data) < _HEAD.size:
            raise ValueError(f"binary window of {len(data)} bytes is shorter than its {_HEAD.size}-byte header")
        _, c, slen, n, segment, index, t0, rate, model = _HEAD.unpack_from(data)
        stream = data[_HEAD.size:_HEAD.size + slen].decode("ascii")
        body = data[_HEAD.size + slen:]
        if len(body) != 4 * c * n:
            raise ValueError(f"binary window holds {len(body)} value bytes, its header says {4 * c * n}")
        values = np.frombuffer(body, dtype="<f4").reshape(c, n)
        return {"v": VERSION, "stream": stream, "segment": segment, "index": index, "t0": t0, "rate_hz": rate,
                "channels": None, "units": None, "model": model.decode("ascii").strip(), "values": values.tolist()}
    return json.loads(data.decode("utf-8"))


def status(state: str, *, gateway: str, model: str, card: Any, fmt: str, stitch: str, topic: str) -> bytes:
    """The retained status message: online/offline plus what a consumer needs to read the windows."""
    return json.dumps({
        "state": state, "gateway": gateway, "model": model, "arch": card.arch, "precision": card.precision,
        "window": card.window, "hop": card.hop, "rate_hz": card.sample_rate_hz,
        "channels": list(card.output_channels), "units": list(card.output_units),
        "format": fmt, "stitch": stitch, "topic": topic,
    }, separators=(",", ":")).encode("utf-8")
