"""Message bodies of protocol version 1: layouts, typed messages, pack and parse (pure).

PROTOCOL.md is the normative description; this module is its executable form and the C
encoder in ``c/`` is checked against it byte for byte. Every multi-byte header field is
little-endian. A body starts with a 14-byte header common to all message types:

    off size field
      0  u8  version (1)
      1  u8  type (HELLO 0x01, SAMPLES 0x02, HEARTBEAT 0x03)
      2  u64 device_id
     10  u32 boot_id (chosen afresh at every boot; a new value announces a reboot)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields as dataclass_fields

from firmware_bridge.errors import ProtocolError
from firmware_bridge.framing import MAX_RAW, FrameRejected

VERSION = 1
HELLO, SAMPLES, HEARTBEAT = 0x01, 0x02, 0x03
TYPE_NAMES = {HELLO: "HELLO", SAMPLES: "SAMPLES", HEARTBEAT: "HEARTBEAT"}

FORMAT_INT16, FORMAT_FLOAT32 = 0, 1
SAMPLE_WIDTH = {FORMAT_INT16: 2, FORMAT_FLOAT32: 4}
FLAG_BIG_ENDIAN = 0x01  # HELLO flags bit 0: int16 samples are big-endian (MPU-6050 register order)

# Channel ids of the HELLO channel list. Ids other than the six axes (e.g. the MPU-6050's
# temperature register, which sits between acc and gyro in its burst read) are carried and
# ignored, so firmware can forward a register dump without copying.
ACC_X, ACC_Y, ACC_Z, GYRO_X, GYRO_Y, GYRO_Z, TEMPERATURE = 1, 2, 3, 4, 5, 6, 7
AXES = (ACC_X, ACC_Y, ACC_Z, GYRO_X, GYRO_Y, GYRO_Z)
MAX_CHANNELS = 16

HEADER = struct.Struct("<BBQI")
HELLO_FIXED = struct.Struct("<BBBBBIIIIIHB")
SAMPLES_FIXED = struct.Struct("<HIBB")
HEARTBEAT_FIXED = struct.Struct("<HIHB")
SAMPLES_HEAD = struct.Struct(HEADER.format + SAMPLES_FIXED.format[1:])  # both in one unpack
CRC_SIZE = 2
MAX_BODY = MAX_RAW - CRC_SIZE
MAX_SAMPLE_BYTES = MAX_BODY - HEADER.size - SAMPLES_FIXED.size  # 230


def _check_uint(problems: list[str], name: str, value: object, bits: int, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < (1 << bits):
        problems.append(f"{name} must be an integer in [{minimum}, {(1 << bits) - 1}], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """HELLO (also the periodic CONFIG): who the device is and how to read its samples."""

    device_id: int
    boot_id: int
    firmware: tuple[int, int, int] = (0, 0, 0)
    chip: int = 0  # informational: 0 custom, 1 MPU-6050, 2 LSM6DS3, 3 LSM6DSOX, 4 BMI270
    big_endian: bool = False
    rate_mhz: int  # sample rate in millihertz: 50 Hz is 50000
    acc_scale: tuple[int, int]  # g per LSB = numerator / denominator (int16 format)
    gyro_scale: tuple[int, int]  # degrees per second per LSB = numerator / denominator
    hello_period_ms: int = 2000  # how often the device repeats this message (0: never)
    channels: tuple[int, ...] = AXES
    flags_extra: int = 0  # reserved flag bits as received (senders set 0, receivers ignore)

    def __post_init__(self) -> None:
        problems: list[str] = []
        _check_uint(problems, "device_id", self.device_id, 64)
        _check_uint(problems, "boot_id", self.boot_id, 32)
        if len(self.firmware) != 3:
            problems.append(f"firmware must be (major, minor, patch), got {self.firmware!r}")
        for part in self.firmware:
            _check_uint(problems, "firmware version part", part, 8)
        _check_uint(problems, "chip", self.chip, 8)
        _check_uint(problems, "rate_mhz", self.rate_mhz, 32, minimum=1)
        for name, scale in (("acc_scale", self.acc_scale), ("gyro_scale", self.gyro_scale)):
            if len(scale) != 2:
                problems.append(f"{name} must be (numerator, denominator), got {scale!r}")
                continue
            _check_uint(problems, f"{name} numerator", scale[0], 32, minimum=1)
            _check_uint(problems, f"{name} denominator", scale[1], 32, minimum=1)
        _check_uint(problems, "hello_period_ms", self.hello_period_ms, 16)
        if not 1 <= len(self.channels) <= MAX_CHANNELS:
            problems.append(f"channels must list 1 to {MAX_CHANNELS} channel ids, got {len(self.channels)}")
        for ch in self.channels:
            _check_uint(problems, "channel id", ch, 8)
        missing = [a for a in AXES if self.channels.count(a) != 1]
        if missing:
            problems.append(f"channels must name each axis id 1..6 exactly once; wrong for {missing}")
        if problems:
            raise ProtocolError("invalid HELLO: " + "; ".join(problems))

    @property
    def rate_hz(self) -> float:
        return self.rate_mhz / 1000.0

    def sample_bytes(self, fmt: int) -> int:
        return len(self.channels) * SAMPLE_WIDTH[fmt]

    def max_samples_per_frame(self, fmt: int) -> int:
        return MAX_SAMPLE_BYTES // self.sample_bytes(fmt)


@dataclass(frozen=True, slots=True, kw_only=True)
class Samples:
    """SAMPLES: ``count`` consecutive samples starting at device time ``t_us``."""

    device_id: int
    boot_id: int
    seq: int  # u16, +1 per SAMPLES frame, wraps to 0 after 65535
    t_us: int  # u32 device clock of the first sample, microseconds since boot; wraps
    fmt: int  # FORMAT_INT16 (raw counts) or FORMAT_FLOAT32 (g and deg/s)
    count: int
    payload: bytes  # count samples x channels (HELLO order), interleaved per sample

    def __post_init__(self) -> None:
        problems: list[str] = []
        _check_uint(problems, "device_id", self.device_id, 64)
        _check_uint(problems, "boot_id", self.boot_id, 32)
        _check_uint(problems, "seq", self.seq, 16)
        _check_uint(problems, "t_us", self.t_us, 32)
        _check_uint(problems, "fmt", self.fmt, 8)
        _check_uint(problems, "count", self.count, 8, minimum=1)
        if len(self.payload) > MAX_SAMPLE_BYTES:
            problems.append(f"payload of {len(self.payload)} bytes exceeds {MAX_SAMPLE_BYTES}")
        elif isinstance(self.count, int) and self.count > 0 and len(self.payload) % self.count:
            problems.append(f"payload of {len(self.payload)} bytes is not {self.count} equal samples")
        if problems:
            raise ProtocolError("invalid SAMPLES: " + "; ".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """HEARTBEAT: the device is alive even when no samples flow."""

    device_id: int
    boot_id: int
    seq: int  # the seq the next SAMPLES frame will carry
    t_us: int  # device clock now, same clock as SAMPLES.t_us
    tx_dropped: int = 0  # frames the device could not send (saturates at 65535)
    status: int = 0  # bit 0: a sensor read failed, bit 1: a sample tick was missed (since the last heartbeat)

    def __post_init__(self) -> None:
        problems: list[str] = []
        _check_uint(problems, "device_id", self.device_id, 64)
        _check_uint(problems, "boot_id", self.boot_id, 32)
        _check_uint(problems, "seq", self.seq, 16)
        _check_uint(problems, "t_us", self.t_us, 32)
        _check_uint(problems, "tx_dropped", self.tx_dropped, 16)
        _check_uint(problems, "status", self.status, 8)
        if problems:
            raise ProtocolError("invalid HEARTBEAT: " + "; ".join(problems))


Message = Hello | Samples | Heartbeat


def pack(message: Message) -> bytes:
    """The body (without CRC) of a message."""
    if isinstance(message, Hello):
        flags = (FLAG_BIG_ENDIAN if message.big_endian else 0) | (message.flags_extra & ~FLAG_BIG_ENDIAN & 0xFF)
        body = HEADER.pack(VERSION, HELLO, message.device_id, message.boot_id) + HELLO_FIXED.pack(
            *message.firmware, message.chip, flags, message.rate_mhz, *message.acc_scale,
            *message.gyro_scale, message.hello_period_ms, len(message.channels),
        ) + bytes(message.channels)
    elif isinstance(message, Samples):
        body = HEADER.pack(VERSION, SAMPLES, message.device_id, message.boot_id) + SAMPLES_FIXED.pack(
            message.seq, message.t_us, message.fmt, message.count,
        ) + bytes(message.payload)
    elif isinstance(message, Heartbeat):
        body = HEADER.pack(VERSION, HEARTBEAT, message.device_id, message.boot_id) + HEARTBEAT_FIXED.pack(
            message.seq, message.t_us, message.tx_dropped, message.status,
        )
    else:
        raise ProtocolError(f"cannot pack {type(message).__name__}; expected Hello, Samples or Heartbeat")
    if len(body) > MAX_BODY:
        raise ProtocolError(f"message body of {len(body)} bytes exceeds {MAX_BODY}; send fewer samples per frame")
    return body


def parse(body: bytes) -> Message:
    """A typed message from a CRC-checked body; raises FrameRejected naming the counter."""
    if len(body) < HEADER.size:
        raise FrameRejected("frames_corrupt", f"body of {len(body)} bytes is shorter than the header")
    version, kind, device_id, boot_id = HEADER.unpack_from(body)
    if version != VERSION:
        raise FrameRejected("unknown_version", f"protocol version {version}; this gateway speaks {VERSION}")
    rest = body[HEADER.size:]
    try:
        if kind == HELLO:
            return _parse_hello(device_id, boot_id, rest)
        # struct reads every field of these two within its range, and samples_fields checks the
        # sizes: their __post_init__ would find nothing (a dozen checks, per heartbeat of every device).
        if kind == SAMPLES:
            return _read(Samples, *samples_fields(body)[2:])
        if kind == HEARTBEAT:
            if len(rest) != HEARTBEAT_FIXED.size:
                raise FrameRejected("frames_corrupt", f"HEARTBEAT body of {len(rest)} bytes, expected {HEARTBEAT_FIXED.size}")
            return _read(Heartbeat, device_id, boot_id, *HEARTBEAT_FIXED.unpack(rest))
    except ProtocolError as exc:
        reason = "bad_config" if kind == HELLO else "frames_corrupt"
        raise FrameRejected(reason, str(exc)) from None
    raise FrameRejected("unknown_type", f"message type {kind:#04x} is not known to protocol version {VERSION}")


def _read(cls: type[Samples] | type[Heartbeat], *values: object) -> Message:
    """A message of ``cls`` from values already known valid, in field order, set slot by slot."""
    message = object.__new__(cls)
    for set_slot, value in zip(_SLOT_SETTERS[cls], values):
        set_slot(message, value)
    return message


_SLOT_SETTERS = {cls: tuple(cls.__dict__[f.name].__set__ for f in dataclass_fields(cls))
                 for cls in (Samples, Heartbeat)}


def _parse_hello(device_id: int, boot_id: int, rest: bytes) -> Hello:
    if len(rest) < HELLO_FIXED.size:
        raise FrameRejected("frames_corrupt", f"HELLO body of {len(rest)} bytes is too short")
    major, minor, patch, chip, flags, rate, an, ad, gn, gd, period, nch = HELLO_FIXED.unpack_from(rest)
    channels = rest[HELLO_FIXED.size:]
    if len(channels) != nch:
        raise FrameRejected("frames_corrupt", f"HELLO announces {nch} channels but carries {len(channels)}")
    return Hello(
        device_id=device_id, boot_id=boot_id, firmware=(major, minor, patch), chip=chip,
        big_endian=bool(flags & FLAG_BIG_ENDIAN), rate_mhz=rate, acc_scale=(an, ad), gyro_scale=(gn, gd),
        hello_period_ms=period, channels=tuple(channels), flags_extra=flags & ~FLAG_BIG_ENDIAN,
    )


def samples_fields(body: bytes) -> tuple[int, int, int, int, int, int, int, int, bytes]:
    """(version, type, device_id, boot_id, seq, t_us, fmt, count, payload) of a SAMPLES body,
    without a :class:`Samples`. The caller has checked version and type; raises FrameRejected
    like :func:`parse`."""
    return (*samples_header(body), bytes(body[SAMPLES_HEAD.size:]))


def samples_header(body: bytes) -> tuple[int, int, int, int, int, int, int, int]:
    """(version, type, device_id, boot_id, seq, t_us, fmt, count) of a SAMPLES body, whose
    payload is ``body[SAMPLES_HEAD.size:]``: the gateway's per-frame path, in one unpack and
    without copying the payload. struct yields every field in its range, so only the sizes
    are checked, as ``Samples`` would. The caller has checked version and type; raises
    FrameRejected like :func:`parse`."""
    size = len(body) - SAMPLES_HEAD.size
    if size < 0:
        raise FrameRejected("frames_corrupt", f"SAMPLES body of {len(body) - HEADER.size} bytes is too short")
    fields = SAMPLES_HEAD.unpack_from(body)
    count = fields[7]
    if count == 0 or not size or size % count:
        raise FrameRejected("frames_corrupt", f"SAMPLES payload of {size} bytes is not {count} samples")
    if size > MAX_SAMPLE_BYTES:
        raise FrameRejected("frames_corrupt", f"SAMPLES payload of {size} bytes exceeds {MAX_SAMPLE_BYTES}")
    return fields
