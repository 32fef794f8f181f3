"""The gateway's side of the wire: bytes in arbitrary chunks -> :class:`SampleBlock`s.

:class:`FrameDecoder` splits the stream at 0x00 delimiters, checks COBS and CRC, parses
messages, keeps each device's latest HELLO and turns SAMPLES into physical units. It never
raises on what arrives and never holds more than ``max_frame`` bytes of an unfinished frame:
every frame it cannot use is counted in :attr:`FrameDecoder.counters` (what each counter
means is listed in PROTOCOL.md, "Gateway behaviour").
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.blocks import SampleBlock
from firmware_bridge.errors import ProtocolError
from firmware_bridge.framing import MAX_ENCODED, FrameRejected, frame_body
from firmware_bridge.protocol import (FORMAT_INT16, SAMPLE_WIDTH, SAMPLES, SAMPLES_HEAD, VERSION, Heartbeat, Hello,
                                     Message, parse, samples_header)
from firmware_bridge.scaling import Converter, physical_converter

log = logging.getLogger(__name__)

COUNTERS = (
    "frames_ok", "frames_corrupt", "bytes_skipped", "oversized", "unknown_version", "unknown_type",
    "bad_config", "unknown_format", "config_mismatch", "awaiting_config", "hellos", "reboots",
    "config_changes", "heartbeats", "duplicates", "late", "seq_gaps", "frames_missing", "resyncs",
    "nonfinite", "samples_ok", "devices_evicted", "bad_input", "internal_errors",
)
# A frame at most this many sequence numbers behind the newest is "late" (reordered on the
# way) and dropped; further behind means the device's counter restarted without a new boot_id.
LATE_WINDOW = 64
U16, U32 = 1 << 16, 1 << 32
_SAMPLES_V1 = bytes((VERSION, SAMPLES))  # the first two body bytes of every SAMPLES frame
_PAYLOAD_AT = SAMPLES_HEAD.size  # where a SAMPLES body's samples start


def device_name(device_id: int) -> str:
    """The device id as :class:`SampleBlock` carries it: 16 lower-case hex digits."""
    return f"{device_id:016x}"


def alias(device: str) -> str:
    """A short stand-in for a device id in log lines, which must not carry hardware serials."""
    return "dev-" + hashlib.sha256(device.encode()).hexdigest()[:6]


@dataclass(slots=True)
class _Stream:
    """What the gateway knows about one device since its current HELLO."""

    hello: Hello
    epoch: int
    rate_hz: float  # hello.rate_hz, a property computed afresh at every call: read once per frame
    seq_raw: int | None = None  # last accepted u16 sequence number
    seq: int = 0  # unwrapped
    t_raw: int = 0  # last accepted u32 timestamp
    t_us: int = 0  # unwrapped
    heartbeat: Heartbeat | None = None
    # sample format -> (payload bytes per sample, physical_converter(hello, fmt)), made at first use
    formats: dict[int, tuple[int, Converter]] = field(default_factory=dict)


class SampleBatch:
    """Int16 SAMPLES frames of one decoding pass, converted together in :meth:`finish`: one
    strided multiply per sample layout (chip and ranges) for all of them instead of one per
    frame. Each numpy call costs microseconds on a gateway core whose caches the model has just
    evicted; a pipeline taking a backlog of frames pays them once per pass.

    Until :meth:`finish`, the blocks of those frames hold views of rows not yet written."""

    ROWS = 1024  # samples per buffer; a fuller pass starts another

    def __init__(self) -> None:
        self._groups: dict[Converter, _Rows] = {}

    def rows(self, convert: Converter, body: bytes | bytearray, count: int) -> np.ndarray:
        """The rows [count, 6] that :meth:`finish` fills from the SAMPLES ``body``'s payload."""
        group = self._groups.get(convert)
        if group is None or group.used + count > group.size:
            if group is not None:
                group.fill(convert)
            group = self._groups[convert] = _Rows(max(self.ROWS, count))
        used = group.used
        group.used = used + count
        group.payloads.append(body[_PAYLOAD_AT:])
        return group.out[used:used + count]

    def finish(self) -> None:
        """Write every row handed out; the batch is empty and reusable afterwards."""
        for convert, group in self._groups.items():
            group.fill(convert)
        self._groups.clear()


class _Rows:
    """One buffer of a :class:`SampleBatch`: rows handed out so far and the payloads that go into them."""

    __slots__ = ("out", "size", "used", "payloads")

    def __init__(self, size: int) -> None:
        self.out = np.empty((size, 6), dtype=np.float32)
        self.size, self.used = size, 0
        self.payloads: list[bytes | bytearray] = []

    def fill(self, convert: Converter) -> None:
        if self.used:
            convert(b"".join(self.payloads), self.used, 0, self.out[:self.used])


class FrameDecoder:
    """Incremental decoder: ``feed(chunk)`` with whatever ``serial.read`` returned."""

    def __init__(self, max_frame: int = MAX_ENCODED, *, max_devices: int = 64) -> None:
        if not 16 <= max_frame <= 64 * 1024:
            raise ProtocolError(f"max_frame must be 16..65536 bytes, got {max_frame}")
        if max_devices < 1:
            raise ProtocolError(f"max_devices must be at least 1, got {max_devices}")
        self.max_frame = max_frame
        self.max_devices = max_devices
        self.counters: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._buf = bytearray()
        self._skipping = False  # inside an oversized frame: discard up to the next delimiter
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._names: dict[int, str] = {}  # device_name() of recent ids, not formatted again every frame
        self._hellos: dict[bytes, Hello] = {}  # recent HELLO bodies, parsed
        self._warned: set[str] = set()

    @property
    def configs(self) -> dict[str, Hello]:
        """device id -> the latest HELLO of every device the decoder tracks."""
        return {dev: st.hello for dev, st in self._streams.items()}

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held now (never more than ``max_frame``)."""
        return len(self._buf)

    def last_heartbeat(self, device_id: str) -> Heartbeat | None:
        st = self._streams.get(device_id)
        return st.heartbeat if st else None

    def feed(self, chunk: bytes | bytearray | memoryview, batch: SampleBatch | None = None) -> list[SampleBlock]:
        """Consume any bytes; return the sample blocks of every complete, valid frame in them.

        With a ``batch``, the samples of int16 frames are written when ``batch.finish()`` runs
        (see :class:`SampleBatch`); read the blocks' samples only after that."""
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            self.counters["bad_input"] += 1
            self._warn_once("bad_input", "feed() was given %s, not bytes; ignored", type(chunk).__name__)
            return []
        data = bytes(chunk)
        n = len(data)
        if not self._buf and not self._skipping and 1 < n <= self.max_frame + 1 and data.find(0) == n - 1:
            # One whole frame, as a packet transport or a reader thread at low rates hands it over.
            block = self._frame(data, n - 1, batch)
            return [] if block is None else [block]
        out: list[SampleBlock] = []
        start = 0
        while start < n:
            end = data.find(0, start)
            piece_end = n if end < 0 else end
            self._take(data, start, piece_end)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif self._buf:
                block = self._frame(bytes(self._buf), len(self._buf), batch)
                if block is not None:
                    out.append(block)
            self._buf.clear()
            start = end + 1
        return out

    def feed_packet(self, payload: bytes | bytearray | memoryview,
                    batch: SampleBatch | None = None) -> list[SampleBlock]:
        """Decode a message-oriented payload (one MQTT message) holding whole frames.

        A partial frame left over from earlier input is dropped first and the trailing
        delimiter is optional, so one bad packet cannot spoil the next."""
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            return self.feed(payload, batch)
        if self._buf or self._skipping:
            self.counters["frames_corrupt"] += 1
            self.counters["bytes_skipped"] += len(self._buf)
            self._buf.clear()
            self._skipping = False
        data = bytes(payload)
        n = len(data)
        end = data.find(0)
        if 0 < n <= self.max_frame and end < 0:  # one frame without its delimiter, as MQTT usually carries it
            block = self._frame(data, n, batch)
            return [] if block is None else [block]
        return self.feed(data if data.endswith(b"\x00") else data + b"\x00", batch)

    def summary(self) -> str:
        """One line of the non-zero counters, for a periodic log line."""
        return " ".join(f"{k}={v}" for k, v in self.counters.items() if v) or "nothing received"

    # -- framing -------------------------------------------------------------------------------

    def _take(self, data: bytes, start: int, end: int) -> None:
        """Append data[start:end] to the unfinished frame without ever exceeding max_frame."""
        if start == end:
            return
        if self._skipping:
            self.counters["bytes_skipped"] += end - start
            return
        room = self.max_frame - len(self._buf)
        if end - start <= room:
            self._buf += data[start:end]
            return
        self.counters["oversized"] += 1
        self.counters["bytes_skipped"] += len(self._buf) + (end - start)
        self._buf.clear()
        self._skipping = True

    def _frame(self, data: bytes, end: int, batch: SampleBatch | None) -> SampleBlock | None:
        """The block of the frame whose COBS bytes are ``data[:end]`` (no 0x00 among them), if
        it is a SAMPLES frame the decoder can use; every other frame is counted or remembered."""
        try:
            body = frame_body(data, end)
            # SAMPLES, nearly every frame, is read in one unpack without a message object.
            head = samples_header(body) if body[:2] == _SAMPLES_V1 else None
            message = self._message(bytes(body)) if head is None else None
        except FrameRejected as exc:
            self.counters[exc.reason] += 1
            if exc.reason == "frames_corrupt":
                self.counters["bytes_skipped"] += end
            elif exc.reason in ("unknown_version", "unknown_type"):
                self._warn_once(f"{exc.reason}:{exc}", "frame ignored: %s; upgrade imu-anon on the gateway "
                                "if the device runs newer firmware", exc)
            else:
                self._warn_once(f"{exc.reason}:{exc}", "HELLO ignored: %s; fix the device's configuration", exc)
            return None
        try:
            self.counters["frames_ok"] += 1
            if head is not None:
                return self._samples(body, batch, *head[2:])
            if isinstance(message, Hello):
                self._hello(message)
            else:
                self._heartbeat(message)
        except Exception:  # the decode loop must survive a bug too; the counter makes it visible
            self.counters["internal_errors"] += 1
            log.exception("internal error while decoding a frame (please report it)")
        return None

    def _message(self, body: bytes) -> Message:
        """:func:`parse`, remembering HELLOs: every device repeats its HELLO byte for byte every
        few seconds, and validating one costs more than a dozen SAMPLES frames."""
        hello = self._hellos.get(body)
        if hello is None:
            message = parse(body)
            if not isinstance(message, Hello):
                return message
            if len(self._hellos) >= 2 * self.max_devices:
                self._hellos.clear()
            hello = self._hellos[body] = message
        return hello

    # -- per device ------------------------------------------------------------------------------

    def _hello(self, msg: Hello) -> None:
        dev = device_name(msg.device_id)
        self.counters["hellos"] += 1
        st = self._streams.get(dev)
        if st is None:
            self._open(dev, msg, epoch=0)
            log.info("%s: HELLO, %.3g Hz, %d channels, firmware %d.%d.%d", alias(dev), msg.rate_hz,
                     len(msg.channels), *msg.firmware)
        elif st.hello.boot_id != msg.boot_id:
            self.counters["reboots"] += 1
            self._open(dev, msg, epoch=st.epoch + 1)
            log.info("%s: rebooted (new boot_id); epoch %d", alias(dev), st.epoch + 1)
        elif st.hello is not msg and st.hello != msg:
            self.counters["config_changes"] += 1
            self._open(dev, msg, epoch=st.epoch + 1)
            log.info("%s: configuration changed; epoch %d", alias(dev), st.epoch + 1)
        else:
            self._streams.move_to_end(dev)

    def _open(self, dev: str, hello: Hello, epoch: int) -> None:
        self._streams[dev] = _Stream(hello=hello, epoch=epoch, rate_hz=hello.rate_hz)
        self._streams.move_to_end(dev)
        while len(self._streams) > self.max_devices:
            gone, _ = self._streams.popitem(last=False)
            self.counters["devices_evicted"] += 1
            log.warning("%s: forgotten to make room (more than %d devices)", alias(gone), self.max_devices)

    def _heartbeat(self, msg: Heartbeat) -> None:
        self.counters["heartbeats"] += 1
        st = self._streams.get(device_name(msg.device_id))
        if st is not None and st.hello.boot_id == msg.boot_id:
            st.heartbeat = msg

    def _samples(self, body: bytearray, batch: SampleBatch | None, device_id: int, boot_id: int, seq: int, t_us: int,
                 fmt: int, count: int) -> SampleBlock | None:
        dev = self._names.get(device_id)
        if dev is None:
            if len(self._names) >= 4 * self.max_devices:
                self._names.clear()
            dev = self._names[device_id] = device_name(device_id)
        st = self._streams.get(dev)
        if st is None or st.hello.boot_id != boot_id:
            self.counters["awaiting_config"] += count
            self._warn_once(f"await:{dev}:{boot_id}", "%s: samples before its HELLO are dropped until the "
                            "device repeats its configuration", alias(dev))
            return None
        hello = st.hello
        known = st.formats.get(fmt)
        if known is None:
            if fmt not in SAMPLE_WIDTH:
                self.counters["unknown_format"] += 1
                return None
            known = st.formats[fmt] = (hello.sample_bytes(fmt), physical_converter(hello, fmt))
        sample_bytes, convert = known
        if len(body) - _PAYLOAD_AT != count * sample_bytes:
            self.counters["config_mismatch"] += 1
            self._warn_once(f"mismatch:{dev}", "%s: SAMPLES of %d bytes do not fit its HELLO's %d channels",
                            alias(dev), len(body) - _PAYLOAD_AT, len(hello.channels))
            return None
        if fmt == FORMAT_INT16:  # counts are always finite: nothing to check, so the batch may wait
            samples = convert(body, count, _PAYLOAD_AT) if batch is None else batch.rows(convert, body, count)
        else:
            samples = convert(body, count, _PAYLOAD_AT)
            if not np.isfinite(samples).all():
                self.counters["nonfinite"] += count
                return None
        if st.seq_raw is not None and (seq - st.seq_raw) % U16 == 1:
            # The next frame, as nearly always: what _advance does for it, without the call.
            st.seq += 1
            st.t_us += (t_us - st.t_raw) % U32
            st.seq_raw, st.t_raw = seq, t_us
        elif not self._advance(st, seq, t_us, dev):
            return None
        self._streams.move_to_end(dev)
        self.counters["samples_ok"] += count
        return SampleBlock._trusted(dev, st.seq, st.epoch, st.t_us / 1e6, st.rate_hz, samples)

    def _advance(self, st: _Stream, seq: int, t_us: int, dev: str) -> bool:
        """Place the frame in the device's sequence; False drops it (duplicate or late)."""
        if st.seq_raw is not None:
            ahead = (seq - st.seq_raw) % U16
            behind = (st.seq_raw - seq) % U16
            if ahead == 0:
                self.counters["duplicates"] += 1
                return False
            if behind <= LATE_WINDOW:
                self.counters["late"] += 1
                return False
            if ahead < U16 // 2:
                if ahead > 1:
                    self.counters["seq_gaps"] += 1
                    self.counters["frames_missing"] += ahead - 1
                st.seq += ahead
                st.t_us += (t_us - st.t_raw) % U32
                st.seq_raw, st.t_raw = seq, t_us
                return True
            # Far behind: the counter restarted without a new boot_id (or a very long outage).
            self.counters["resyncs"] += 1
            st.epoch += 1
            log.info("%s: sequence restarted without a HELLO; epoch %d", alias(dev), st.epoch)
        st.seq_raw, st.seq = seq, seq
        st.t_raw, st.t_us = t_us, t_us
        return True

    def _warn_once(self, key: str, fmt: str, *args: object) -> None:
        # Bounded like everything else: past 1024 kinds of trouble the counters speak alone.
        if key in self._warned or len(self._warned) >= 1024:
            log.debug(fmt, *args)
            return
        self._warned.add(key)
        log.warning(fmt, *args)
