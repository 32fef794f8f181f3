"""The decode stage: bytes from a source -> SampleBlocks in physical units, problems -> counters.

Each origin (a serial port, an MQTT topic) has its own decoder, because a decoder keeps state
(a partial frame, the device's HELLO, the line being read) that must never mix two wearers.
Binary frames go to ``firmware_bridge.decoder.FrameDecoder``, CSV lines to
``firmware_bridge.linecsv.LineCsvDecoder``, and MQTT messages that start with ``{`` are JSON
samples (schema below). Nothing here raises on bad input: it is counted and logged.

JSON samples, one object per MQTT message::

    {"seq": 17, "t0": 12.5, "rate_hz": 50, "samples": [[ax, ay, az, gx, gy, gz], ...],
     "boot": 0, "channels": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
     "units": ["g", "g", "g", "rad/s", "rad/s", "rad/s"]}

``samples`` and ``rate_hz`` are required; ``seq`` (+1 per message) and ``t0`` (seconds, the
first sample's device time) enable gap detection; ``boot`` changes when the device restarts;
``channels`` must be in that order when present; ``units`` may say ``m/s^2`` for the
accelerometer and ``deg/s`` for the gyroscope, which are converted. Up to 1000 samples a message.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from edge_runtime.errors import ConfigError
from edge_runtime.layout import ACC_UNITS, RAW_CHANNELS
from edge_runtime.metrics import Metrics
from firmware_bridge.blocks import SampleBlock
from firmware_bridge.decoder import FrameDecoder, SampleBatch

log = logging.getLogger(__name__)

FORMATS = ("frames", "csv", "json", "mqtt")  # "mqtt": JSON when the payload starts with "{", frames otherwise
GYRO_UNITS = {"rad/s": 1.0, "deg/s": math.pi / 180.0}
MAX_JSON_SAMPLES = 1000
MAX_ORIGINS = 1024  # the decoder table's floor (see origin_bound), and its size where none is given
# An origin silent this long may give its decoder to a new one when the table is full. A live
# wearable repeats its HELLO every few seconds (2 s by default) and a rebooted one sends it at
# once, while one silent for a minute is gone: its stream has long been cut (streams.silence_s)
# and, should it come back, its next HELLO (a few seconds) is all it loses.
ORIGIN_IDLE_S = 60.0


class Received:
    """Bytes as a source got them, before anyone interprets them.

    Made by reader threads for every chunk or message, so a plain slotted class rather than a
    frozen dataclass (whose ``__init__`` sets each field through ``object.__setattr__``: about
    1.3 us against 0.3). Treat it as immutable: it crosses threads. The ``repr`` shows neither
    the bytes nor the device id."""

    __slots__ = ("origin", "data", "fmt", "device", "rate_hz", "options", "at")

    def __init__(self, origin: str, data: bytes, fmt: str, device: str | None = None, rate_hz: float | None = None,
                 options: tuple[tuple[str, str], ...] = (), at: float | None = None) -> None:
        self.origin = origin  # decoder key: "serial:/dev/ttyUSB0", "mqtt:imu/abc/raw", ...
        self.data = data
        self.fmt = fmt  # one of FORMATS
        self.device = device  # id the transport vouches for (topic, config)
        self.rate_hz = rate_hz  # for CSV lines, which do not carry a rate
        self.options = options  # decoder settings from the source URL (CSV units, columns)
        self.at = time.monotonic() if at is None else at  # when the bytes arrived

    def __repr__(self) -> str:
        return (f"Received(origin={self.origin!r}, fmt={self.fmt!r}, bytes={len(self.data)}, rate_hz={self.rate_hz!r}, "
                f"at={self.at!r})")


class _JsonDecoder:
    def __init__(self, device: str, note: Callable[[str, str], None]) -> None:
        self.device, self.note = device, note
        self.counters = {"json_ok": 0, "json_rejected": 0, "samples_refused_layout": 0}

    def feed(self, data: bytes) -> list[SampleBlock]:
        try:
            msg = json.loads(data.decode("utf-8"))
            block = self._block(msg)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            self.counters["json_rejected"] += 1
            self.note("json", f"JSON samples message rejected: {str(exc)[:120]}")
            return []
        if block is None:
            return []
        self.counters["json_ok"] += 1
        return [block]

    def _block(self, msg: Any) -> SampleBlock | None:
        if not isinstance(msg, dict):
            raise ValueError("the message must be a JSON object")
        samples = np.asarray(msg["samples"], dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[0] > MAX_JSON_SAMPLES:
            raise ValueError(f"samples must be 1..{MAX_JSON_SAMPLES} rows, got shape {samples.shape}")
        channels = tuple(msg.get("channels", RAW_CHANNELS))
        units = tuple(msg.get("units", ("g",) * 3 + ("rad/s",) * 3))
        if (channels != RAW_CHANNELS or samples.shape[1] != 6 or len(units) != 6 or len(set(units[:3])) != 1
                or units[0] not in ACC_UNITS or len(set(units[3:])) != 1 or units[3] not in GYRO_UNITS):
            self.counters["samples_refused_layout"] += samples.shape[0]
            self.note("layout", f"refusing samples with channels {list(channels)} in {list(units)}: the model "
                                f"takes {list(RAW_CHANNELS)} with acc in g or m/s^2 and gyro in rad/s or deg/s")
            return None
        if not np.isfinite(samples).all():
            raise ValueError("samples hold NaN or infinite values")
        scale = np.array([ACC_UNITS[units[0]]] * 3 + [GYRO_UNITS[units[3]]] * 3)
        rate = float(msg["rate_hz"])
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate}")
        seq = msg.get("seq")
        t0 = msg.get("t0")
        return SampleBlock(device_id=self.device, seq=None if seq is None else int(seq), epoch=int(msg.get("boot", 0)),
                           t0=math.nan if t0 is None else float(t0), rate_hz=rate,
                           samples=(samples * scale).astype(np.float32))


def _tally(into: dict[str, int], decoder: Any) -> None:
    """Add a decoder's integer counters to ``into``."""
    for name, value in dict(getattr(decoder, "counters", {})).items():
        if isinstance(value, int):
            into[name] = into.get(name, 0) + value


def origin_bound(max_devices: int, shards: int = 1) -> int:
    """How many decoders a runtime keeps for ``streams.max_devices`` in each of ``shards`` shards.

    Over MQTT every topic is an origin, and a sharded runtime decodes the topics of every shard
    before it keeps its own devices, so it sees up to ``max_devices * shards`` origins at once.
    Twice that leaves room for devices coming and going (an origin silent for ``ORIGIN_IDLE_S``
    gives its place to a new one) and for stray topics; never fewer than ``MAX_ORIGINS``, so
    serial ports, files and a fleet larger than ``max_devices`` (whose extra devices the streams
    refuse) fit as before."""
    return max(MAX_ORIGINS, 2 * max_devices * shards)


class Decoders:
    """One decoder per origin; blocks from a transport-vouched device must carry that id.

    At most ``max_origins`` decoders are kept (:func:`origin_bound` sizes them from the
    configuration), first come, first served, like the streams' ``max_devices``. When the table
    is full, a new origin takes the place of the least recently heard one only if that one has
    been silent for ``idle_s`` (its decoder state, a HELLO, is dropped: counted as
    ``origins_evicted``, logged once). Otherwise the new origin's item is dropped (each such item
    counted as ``origins_refused``, logged once) and it tries again with its next item, so a
    flood of topics never takes the decoders of live devices. Time is the items' ``at``."""

    def __init__(self, metrics: Metrics, pseudonym: Callable[[str], str], max_origins: int = MAX_ORIGINS, *,
                 idle_s: float = ORIGIN_IDLE_S) -> None:
        if not (isinstance(max_origins, int) and max_origins > 0):
            raise ConfigError(f"the decoders need room for at least one origin, got {max_origins!r}")
        if not (isinstance(idle_s, (int, float)) and idle_s > 0):
            raise ConfigError(f"the decoders' idle time must be a positive number of seconds, got {idle_s!r}")
        self.metrics, self.pseudonym, self.max_origins, self.idle_s = metrics, pseudonym, max_origins, idle_s
        self._decoders: OrderedDict[tuple[str, str], Any] = OrderedDict()  # the least recently heard first
        self._heard: dict[tuple[str, str], float] = {}  # when each origin was last heard
        self._retired: dict[str, int] = {}  # counters of evicted decoders, so totals never go down
        self._evicted = self._refused = 0
        self._noted: set[tuple[str, str]] = set()
        metrics.add_collector(self.counters)

    def counters(self) -> dict[str, int]:
        out = dict(self._retired)
        out["origins_evicted"], out["origins_refused"] = self._evicted, self._refused
        for dec in list(self._decoders.values()):
            _tally(out, dec)
        return out

    def _note(self, origin: str, device: str | None) -> Callable[[str, str], None]:
        who = self.pseudonym(device) if device else origin.split(":")[0]

        def note(kind: str, message: str) -> None:
            if (origin, kind) not in self._noted:  # once per origin and kind; the counters keep counting
                self._noted.add((origin, kind))
                log.warning("%s: %s", who, message)
        return note

    def _room(self, now: float) -> bool:
        """Whether a new origin may have a decoder: a free place, or a silent origin's."""
        if len(self._decoders) < self.max_origins:
            return True
        key = next(iter(self._decoders))  # the least recently heard
        if now - self._heard[key] < self.idle_s:
            if not self._refused:  # origins are not named: an MQTT topic holds a device id
                log.warning("decoder table full: %d origins (MQTT topics, serial ports) heard within %g s, so "
                            "items from new ones are dropped (counted as origins_refused) and the devices already "
                            "heard keep decoding; raise streams.max_devices if this gateway should serve more "
                            "wearables, or share them out over more gateways (streams.shard)",
                            self.max_origins, self.idle_s)
            self._refused += 1
            return False
        old = self._decoders.pop(key)
        del self._heard[key]
        self._noted = {noted for noted in self._noted if noted[0] != key[0]}  # a comer-back may be told again
        _tally(self._retired, old)
        if not self._evicted:
            log.info("decoder table full (%d origins): an origin silent for %g s gives its decoder to a new one "
                     "(counted as origins_evicted); if its device comes back, its frames wait for its next HELLO",
                     self.max_origins, self.idle_s)
        self._evicted += 1
        return True

    def _decoder(self, item: Received, fmt: str) -> Any:
        """A new decoder for the item's origin and format, or None when the table has no room."""
        if not self._room(item.at):
            return None
        if fmt == "frames":
            dec = FrameDecoder()
        elif fmt == "csv":
            from firmware_bridge.linecsv import LineCsvDecoder
            opts = dict(item.options)
            dec = LineCsvDecoder(item.device or item.origin, item.rate_hz, acc_unit=opts.get("acc", "g"),
                                 gyro_unit=opts.get("gyro", "rad/s"), skip_columns=int(opts.get("skip", 0)))
        else:
            dec = _JsonDecoder(item.device or item.origin, self._note(item.origin, item.device))
        self._decoders[(item.origin, fmt)] = dec
        self._heard[(item.origin, fmt)] = item.at
        return dec

    def decode(self, item: Received | SampleBlock, batch: SampleBatch | None = None) -> list[SampleBlock]:
        """The blocks of one item. With a ``batch`` (see :meth:`decode_many`), the samples of int16
        frames are written by ``batch.finish()``."""
        if isinstance(item, SampleBlock):  # recordings are read as blocks already
            return [item]
        fmt = item.fmt
        packet = fmt in ("mqtt", "frames") and item.origin.startswith("mqtt:")
        if fmt == "mqtt":
            fmt = "json" if item.data[:1] == b"{" else "frames"
        key = (item.origin, fmt)
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._decoder(item, fmt)
            if decoder is None:
                return []
        else:
            self._decoders.move_to_end(key)
            self._heard[key] = item.at
        if fmt != "frames":
            return decoder.feed(item.data)
        # One MQTT message holds whole frames: feed_packet drops a torn leftover first.
        blocks = decoder.feed_packet(item.data, batch) if packet else decoder.feed(item.data, batch)
        if item.device is None:
            return blocks
        # The transport (the broker's ACL on the topic) vouches for who sent it; a frame that
        # claims another id is dropped rather than let one wearer write into another's stream.
        good = [b for b in blocks if b.device_id.lower() == item.device.lower()]
        if len(good) != len(blocks):
            self.metrics.inc("blocks_device_mismatch", len(blocks) - len(good))
            self._note(item.origin, item.device)("mismatch", "frames on this topic carry another device id; dropped")
        return good

    def decode_many(self, items: Sequence[Received | SampleBlock]) -> list[list[SampleBlock]]:
        """:meth:`decode` of each item (the lists in the items' order), with the int16 samples of
        all of them converted in one go (:class:`~firmware_bridge.decoder.SampleBatch`): for a
        pipeline that takes the frames waiting in its inbox together."""
        batch = SampleBatch()
        try:
            return [self.decode(item, batch) for item in items]
        finally:
            batch.finish()
