"""Complete wire frames for every message type (pure; the Python twin of ``c/imu_frame.c``).

Each function returns bytes ready for a UART or an MQTT payload: body, CRC-16, COBS and the
0x00 delimiter. The shared vectors in ``vectors/protocol_v1.json`` pin these bytes for the C
encoder and for this module alike.
"""

from __future__ import annotations

import numpy as np

from firmware_bridge.errors import ProtocolError
from firmware_bridge.framing import frame
from firmware_bridge.protocol import (
    FORMAT_FLOAT32, FORMAT_INT16, Heartbeat, Hello, Message, Samples, pack,
)
from firmware_bridge.scaling import ChipPreset, counts_dtype


def encode(message: Message) -> bytes:
    """Frame any message: ``COBS(body || crc16_le) || 0x00``."""
    return frame(pack(message))


def hello_for(preset: ChipPreset, *, device_id: int, boot_id: int, rate_hz: float,
              firmware: tuple[int, int, int] = (0, 1, 0), hello_period_ms: int = 2000) -> Hello:
    """The HELLO a device with ``preset``'s chip sends."""
    rate_mhz = round(rate_hz * 1000)
    return Hello(device_id=device_id, boot_id=boot_id, firmware=firmware, chip=preset.chip_id,
                 big_endian=preset.big_endian, rate_mhz=rate_mhz, acc_scale=preset.acc_scale,
                 gyro_scale=preset.gyro_scale, hello_period_ms=hello_period_ms, channels=preset.channels)


def encode_hello(hello: Hello) -> bytes:
    return encode(hello)


def encode_heartbeat(*, device_id: int, boot_id: int, seq: int, t_us: int,
                     tx_dropped: int = 0, status: int = 0) -> bytes:
    return encode(Heartbeat(device_id=device_id, boot_id=boot_id, seq=seq, t_us=t_us,
                            tx_dropped=tx_dropped, status=status))


def int16_payload(counts: np.ndarray, big_endian: bool) -> bytes:
    """Raw counts [n, channels] as the chip's bytes (its byte order, samples interleaved)."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or not np.issubdtype(counts.dtype, np.integer):
        raise ProtocolError(f"int16 counts must be an integer array [n, channels], got {counts.dtype} {counts.shape}")
    if counts.size and (counts.min() < -32768 or counts.max() > 32767):
        raise ProtocolError("int16 counts out of range; clip them to [-32768, 32767] first")
    return counts.astype(counts_dtype(big_endian)).tobytes()


def float32_payload(values: np.ndarray) -> bytes:
    """Values [n, channels] in g and deg/s as little-endian IEEE-754 float32."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ProtocolError(f"float32 values must be [n, channels], got shape {values.shape}")
    return values.astype("<f4").tobytes()


def encode_samples_int16(*, device_id: int, boot_id: int, seq: int, t_us: int,
                         counts: np.ndarray, big_endian: bool) -> bytes:
    """A SAMPLES frame of raw int16 counts [n, channels] in the byte order the HELLO declares."""
    payload = int16_payload(counts, big_endian)
    return encode(Samples(device_id=device_id, boot_id=boot_id, seq=seq, t_us=t_us,
                          fmt=FORMAT_INT16, count=int(np.shape(counts)[0]), payload=payload))


def encode_samples_float32(*, device_id: int, boot_id: int, seq: int, t_us: int, values: np.ndarray) -> bytes:
    """A SAMPLES frame of float32 values [n, channels] (acc in g, gyro in deg/s)."""
    payload = float32_payload(values)
    return encode(Samples(device_id=device_id, boot_id=boot_id, seq=seq, t_us=t_us,
                          fmt=FORMAT_FLOAT32, count=int(np.shape(values)[0]), payload=payload))
