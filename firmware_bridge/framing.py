"""The envelope every frame travels in: CRC-16 then COBS, delimited by 0x00 (pure, no I/O).

A frame on the wire is ``COBS(body || crc16_le(body)) || 0x00``. COBS removes every zero
byte from the frame, so the 0x00 delimiter can only mean "a frame ends here": a receiver
that lost or corrupted bytes resynchronises at the next delimiter and loses at most the
frame it was in. The envelope is version-independent; the body's first byte carries the
protocol version (see PROTOCOL.md).

CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor) is what Python's
``binascii.crc_hqx(data, 0xFFFF)`` computes, so the gateway gets it in C for free and a
microcontroller needs about twenty instructions and no table.
"""

from __future__ import annotations

import binascii

from firmware_bridge.errors import ProtocolError

DELIMITER = 0x00
CRC_INIT = 0xFFFF
# A raw frame (body + CRC) of at most 254 bytes has no run of 255 non-zero bytes, so COBS
# adds exactly one byte and a microcontroller can encode it in place in one 256-byte buffer.
MAX_RAW = 254
MAX_ENCODED = MAX_RAW + 1  # without the delimiter


class FrameRejected(ValueError):
    """A delimited chunk that is not a valid frame; ``reason`` names the counter it feeds."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def crc16(data: bytes | bytearray | memoryview, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE; the check value of ``b"123456789"`` is 0x29B1."""
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """Consistent Overhead Byte Stuffing of ``data`` (any length); the result has no 0x00."""
    out = bytearray()
    data = bytes(data)
    start = 0
    n = len(data)
    while True:
        # One block: up to 254 non-zero bytes, ended by a zero (implied) or by the block limit.
        zero = data.find(b"\x00", start, start + 254)
        if zero < 0:
            end = min(start + 254, n)
            out.append(end - start + 1)
            out += data[start:end]
            if end == n:
                # A full 254-byte block at the very end needs no trailing code byte.
                return bytes(out)
            start = end
            continue
        out.append(zero - start + 1)
        out += data[start:zero]
        start = zero + 1
        if start == n:
            out.append(1)  # the trailing zero needs an empty final block
            return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Undo :func:`cobs_encode`; raises :class:`FrameRejected` on a malformed encoding."""
    data = bytes(data)
    return bytes(_cobs_decode(data, len(data)))


def _cobs_decode(data: bytes, end: int) -> bytearray:
    """The decoding of ``data[:end]``, by the short path where it applies."""
    out = _cobs_decode_short(data, end)
    if out is None:
        return bytearray(_cobs_decode_blocks(data[:end]))
    del out[end:]  # a bytearray drops its tail, and its head, without copying the rest
    del out[0]
    return out


def _cobs_decode_short(data: bytes, end: int) -> bytearray | None:
    """``data`` with the code bytes of the COBS encoding ``data[:end]`` zeroed (the decoding is
    then ``[1:end]`` of it, the leading code and anything after ``end`` to be dropped by the
    caller), or None when the encoding is not a short one or is malformed.

    Every frame the gateway sees has been cut at its delimiters, so holds no 0x00, and is
    short: such a frame decodes to ``data[1:end]`` with each later code byte zeroed, provided
    no block but the last is a full (0xFF) one, which takes more than 255 bytes. One step per
    block instead of a slice, a scan and two appends; the copy takes ``data`` whole (a trailing
    delimiter too), as that is cheaper than slicing it first."""
    if not 0 < end <= 255 or data.find(0, 0, end) >= 0:
        return None  # a full block followed by another, or malformed: the general decoder knows those
    out = bytearray(data)
    i = data[0]
    while i < end:
        out[i] = 0
        i += data[i]
    return out if i == end else None


def _cobs_decode_blocks(data: bytes) -> bytes:
    """The general decoder (long runs, and the errors of a malformed encoding)."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameRejected("frames_corrupt", f"zero code byte at offset {i}")
        end = i + code
        if end > n:
            raise FrameRejected("frames_corrupt", f"code {code} at offset {i} runs past the frame end ({n})")
        block = data[i + 1:end]
        if 0 in block:
            raise FrameRejected("frames_corrupt", "zero byte inside a COBS block")
        out += block
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def frame(body: bytes | bytearray) -> bytes:
    """Wrap a message body into wire bytes: CRC (little-endian), COBS, delimiter."""
    raw = bytes(body) + crc16(body).to_bytes(2, "little")
    if len(raw) > MAX_RAW:
        raise ProtocolError(f"frame body of {len(body)} bytes exceeds the protocol limit of {MAX_RAW - 2}; "
                            "send fewer samples per frame")
    return cobs_encode(raw) + b"\x00"


def unframe(encoded: bytes | bytearray | memoryview) -> bytes:
    """The body of one delimited frame (without its 0x00), CRC checked and removed."""
    data = bytes(encoded)
    return bytes(frame_body(data, len(data)))


def frame_body(data: bytes, end: int) -> bytearray:
    """:func:`unframe` of ``data[:end]`` as a bytearray the caller owns: the gateway's per-frame
    path, which neither slices the frame off its delimiter nor copies the body out again."""
    raw = _cobs_decode(data, end)
    if len(raw) < 3:
        raise FrameRejected("frames_corrupt", f"frame of {len(raw)} bytes is shorter than a CRC and a body")
    crc = raw[-2] | raw[-1] << 8
    del raw[-2:]
    if binascii.crc_hqx(raw, CRC_INIT) != crc:
        raise FrameRejected("frames_corrupt", f"CRC {crc:#06x} does not match {crc16(raw):#06x}")
    return raw
