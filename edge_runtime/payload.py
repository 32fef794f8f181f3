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
        return _binary(window)
    raise ValueError(f"unknown payload format {fmt!r}; known: {', '.join(FORMATS)}")


def encode_many(windows: Sequence[AnonymisedWindow], fmt: str = "json") -> list[bytes]:
    """``[encode(w, fmt) for w in windows]``, byte for byte, at a fraction of the cost: the windows
    of one pipeline pass go through numpy together (see :func:`_json_many`), so numpy's per-call
    overhead, most of the cost of one window, is paid once per pass instead of once per window."""
    for window in windows:
        if not isinstance(window, AnonymisedWindow):
            raise TypeError(f"only an AnonymisedWindow can be encoded, not {type(window).__name__}")
    if fmt == "json":
        return _json_many(windows)
    if fmt == "binary":
        return _binary_many(windows)
    raise ValueError(f"unknown payload format {fmt!r}; known: {', '.join(FORMATS)}")


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


# The batched writer (encode_many): _fixed6's table look-ups for many windows per numpy call.
# Numbers per numpy pass: the pass's temporaries stay in the CPU's cache and below malloc's mmap
# threshold (128 kB); bigger passes cost more in page faults and cache misses than they save.
CHUNK_VALUES = 4096
_LOW_NEXT = _words([f"{i:03d}," for i in range(1000)])  # decimals 4-6 and the comma after them
_LOW_LAST = _words([f"{i:03d}]" for i in range(1000)])  # ... at the end of a channel


def _json_many(windows: Sequence[AnonymisedWindow]) -> list[bytes]:
    """:func:`_json` of each window. The numbers of windows of one shape are written together
    (:func:`_numbers`); a window that :func:`_fixed6` leaves to its %-template or to
    ``json.dumps`` (non-finite or large numbers, no numbers at all) goes to :func:`_json`
    itself, so each message is the same bytes whichever way it went. So does a window alone:
    numpy's per-call overhead is then all there would be to share."""
    out = [b""] * len(windows)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, window in enumerate(windows):
        groups.setdefault(window.values.shape, []).append(i)
    tails: dict[tuple, bytes] = {}
    for (c, n), members in groups.items():
        step = max(1, CHUNK_VALUES // max(1, c * n))
        for first in range(0, len(members), step):
            part = members[first:first + step]
            heads = {i: _head(windows[i], tails) for i in part} if len(part) > 1 and c * n else {}
            ready = [i for i in part if heads.get(i) is not None]
            for i in part:
                if heads.get(i) is None:
                    out[i] = _json(windows[i])
            if ready:
                values = np.concatenate([windows[i].values for i in ready], dtype=np.float64, casting="unsafe")
                for i, numbers in zip(ready, _numbers(values.reshape(len(ready), c, n))):
                    out[i] = _json(windows[i]) if numbers is None else heads[i] + numbers
    return out


def _head(window: AnonymisedWindow, tails: dict[tuple, bytes]) -> bytes | None:
    """Everything before the numbers, ``"values":[[`` included; None where ``t0`` or ``rate_hz``
    is not finite (:func:`_json` leaves those to ``json.dumps``). ``tails`` keeps the part after
    ``t0``, the same for all windows of a model, for the rest of the batch."""
    t0, rate = float(window.t0), float(window.rate_hz)
    if not (math.isfinite(t0) and math.isfinite(rate)):
        return None
    key = (rate, window.channels, window.units, window.model)
    tail = tails.get(key)
    if tail is None:
        tail = tails[key] = (f',"rate_hz":{rate!r}{_fixed_fields(window.channels, window.units, window.model)}'
                             ',"values":[[').encode("utf-8")
    return b'{"v":%d,"stream":%s,"segment":%d,"index":%d,"t0":%s%s' % (
        VERSION, _quoted(window.stream), window.segment, window.index, _round6_repr(t0), tail)


@functools.lru_cache(maxsize=4096)  # bounded: pseudonyms rotate
def _quoted(stream: str) -> bytes:
    return json.dumps(stream).encode("utf-8")


def _round6_repr(x: float) -> bytes:
    """``repr(round(x, 6))`` of a finite float, in half the time where that is provably the
    same text: ``"%.6f" % x`` is the correctly rounded decimal that ``round`` converts back, and
    from 1e-4 to 1e9 it has at most 15 significant digits, so (DBL_DIG) no shorter decimal
    names the same double and ``repr`` writes the same digits, without an exponent."""
    if not 1e-4 <= abs(x) < 1e9:
        return repr(round(x, 6)).encode("ascii")
    text = (b"%.6f" % x).rstrip(b"0")
    return text + b"0" if text.endswith(b".") else text


def _numbers(values: np.ndarray) -> list[memoryview | None]:
    """The numbers of each of K windows [K, C, n] as :func:`_fixed6` writes them, without the
    leading ``[[`` and followed by ``]}``; None for a window :func:`_fixed6` would not write
    (NaN, infinities, |v| >= FIXED6_MAX). Windows whose numbers all read "d.dddddd" (no sign,
    one digit before the point: magnitudes in g and rad/s) take :func:`_plain`, the rest
    :func:`_signed`; both start from ``rint(v * 1e6)``, _fixed6's arithmetic."""
    k = values.shape[0]
    scaled = np.rint(values * 1e6)  # sign-symmetric: |rint(v * 1e6)| is _fixed6's rint(|v| * 1e6)
    rows = scaled.reshape(k, -1)
    plain = (rows.min(axis=1) >= 0) & (rows.max(axis=1) < 1e7)  # False for NaN too
    if plain.all():
        return _plain(scaled)
    signed = ~plain & (np.abs(values).reshape(k, -1).max(axis=1) < FIXED6_MAX)
    if signed.all():
        return _signed(scaled)
    out: list[memoryview | None] = [None] * k
    for chosen, write in ((plain, _plain), (signed, _signed)):
        which = np.flatnonzero(chosen)
        if which.size:
            for j, numbers in zip(which.tolist(), write(scaled[which])):
                out[j] = numbers
    return out


def _digits(scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer part, decimals 1-3 and decimals 4-6 of ``|scaled| / 1e6`` (|scaled| < 1e9)."""
    digits = np.abs(scaled).astype(np.int32)
    whole = digits // 1_000_000
    frac = digits - whole * 1_000_000
    high = frac // 1000
    return whole, high, frac - high * 1000


@functools.lru_cache(maxsize=16)
def _plain_layout(channels: int, samples: int) -> tuple[np.dtype, np.ndarray]:
    """A channel as a packed numpy record: ``samples`` times "d" ".ddd" "ddd," (the last one
    "ddd]"), then ",[" (or "]}" after the last channel)."""
    number = np.dtype([("unit", "u1"), ("high", "<u4"), ("low", "<u4")])
    row = np.dtype([("numbers", number, (samples,)), ("end", "S2")])
    return row, np.array([b",["] * (channels - 1) + [b"]}"], dtype="S2")


def _plain(scaled: np.ndarray) -> list[memoryview]:
    """Numbers 0 <= v < 10 have a fixed width: the texts need no NULs deleted, and every
    window's is as long as the next."""
    k, c, n = scaled.shape
    whole, high, low = _digits(scaled)
    row, ends = _plain_layout(c, n)
    text = np.empty((k, c), dtype=row)
    numbers = text["numbers"]
    numbers["unit"] = whole + ord("0")
    numbers["high"] = _HIGH.take(high)
    numbers["low"] = _LOW_NEXT.take(low)
    numbers["low"][:, :, -1] = _LOW_LAST.take(low[:, :, -1])
    text["end"] = ends
    size = row.itemsize * c
    view = memoryview(text.reshape(-1).view(np.uint8))
    return [view[j * size:(j + 1) * size] for j in range(k)]


@functools.lru_cache(maxsize=16)
def _channel_ends(channels: int) -> np.ndarray:
    return _words([",["] * (channels - 1) + ["]}"])


def _signed(scaled: np.ndarray) -> list[memoryview]:
    """Any number below FIXED6_MAX: _fixed6's words with their NUL padding deleted, except that
    the punctuation rides on the last decimals' word ("ddd," / "ddd]") plus one word per
    channel (",[" / "]}"): 12 bytes a number instead of 16 for ``translate``, most of the cost."""
    k, c, n = scaled.shape
    whole, high, low = _digits(scaled)
    whole += (scaled < 0) * np.int32(1000)  # a minus sign, except on what rounds to zero
    words = np.empty((k, c, 3 * n + 1), dtype=np.uint32)
    number = words[:, :, :-1].reshape(k, c, n, 3)
    _WHOLE.take(whole, out=number[..., 0], mode="clip")  # "clip" (the indices are in range) skips a buffer
    _HIGH.take(high, out=number[..., 1], mode="clip")
    _LOW_NEXT.take(low, out=number[..., 2], mode="clip")
    number[:, :, -1, 2] = _LOW_LAST.take(low[:, :, -1])
    words[:, :, -1] = _channel_ends(c)
    return [memoryview(window.tobytes().translate(None, b"\0")) for window in words]


def _binary_many(windows: Sequence[AnonymisedWindow]) -> list[bytes]:
    """:func:`_binary` of each window. No numpy pass over the batch here: packing the header is
    most of the cost, and one cast per window measured faster than a batched cast cut into
    windows at every batch size."""
    return [_binary(window) for window in windows]


def _binary(window: AnonymisedWindow) -> bytes:
    """The binary layout of the module docstring."""
    stream = window.stream.encode("ascii")
    c, n = window.values.shape
    head = _HEAD.pack(MAGIC, c, len(stream), n, window.segment & 0xFFFFFFFF, window.index & 0xFFFFFFFF, window.t0,
                      window.rate_hz, window.model.encode("ascii")[:12])
    return b"".join((head, stream, np.ascontiguousarray(window.values, dtype="<f4").tobytes()))


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
