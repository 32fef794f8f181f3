"""The subscribing side of MQTT 3.1.1 and 5 as bytes (the MQTT source's codec); no I/O.

A subscriber needs SUBSCRIBE and SUBACK, the PUBLISH packets a broker delivers and a PUBACK for
each QoS 1 one (CONNECT, CONNACK, PINGREQ and DISCONNECT are :mod:`edge_runtime.mqtt_wire`'s).
:class:`MessageReader` cuts the delivered messages out of a recv's bytes in one pass, with the
topic left as bytes (the source names each distinct topic once) and the payload as ``bytes``;
:func:`pubacks` answers a whole read in one byte string. Bounded as the publishing side is: a
packet over ``max_packet`` is refused from its header, before it is buffered.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, NamedTuple

from edge_runtime.errors import ConfigError
from edge_runtime.mqtt_wire import (DISCONNECT, MAX_REMAINING, ONE_BYTE, PINGRESP, PUBLISH, SUBACK, U16,
                                    MqttProtocolError, StreamCutter, parse_properties, remaining_length, utf8_field)

SUBSCRIBE_FIRST = 0x82  # SUBSCRIBE's fixed flags are 0010
# First bytes a broker may send a subscriber that never publishes nor unsubscribes: PUBLISH at
# QoS 0 or 1 (any DUP and RETAIN), SUBACK, PINGRESP and (MQTT 5) DISCONNECT. A PUBACK, PUBREC,
# PUBREL or PUBCOMP would answer nothing we sent, a QoS 2 PUBLISH needs a subscription we never
# make, and the CONNACK was read before (``mqtt_link.dial``).
_TO_SUBSCRIBER_V3 = bytes(int(f >> 4 == PUBLISH and (f >> 1 & 3) < 2 or f in (SUBACK << 4, PINGRESP << 4))
                          for f in range(256))
_TO_SUBSCRIBER_V5 = bytes(ok or f == DISCONNECT << 4 for f, ok in enumerate(_TO_SUBSCRIBER_V3))


def check_filter(pattern: str) -> None:
    """A topic filter as SUBSCRIBE carries it: ``+`` a whole level, ``#`` only as the whole last one."""
    levels = pattern.split("/")
    bad = [lv for lv in levels if ("+" in lv or "#" in lv) and len(lv) > 1]
    if not pattern or bad or "#" in levels[:-1] or "\x00" in pattern:
        raise ConfigError(f"topic filter {pattern!r}: + and # stand for whole levels, # only as the last one "
                          "(e.g. imu/+/raw or imu/#)")


def subscribe(pattern: str, qos: int, packet_id: int, *, v5: bool) -> bytes:
    """A SUBSCRIBE for one topic filter at ``qos``; MQTT 5 options other than the QoS are the
    defaults (retained messages sent, local messages too) and there are no properties."""
    check_filter(pattern)
    if qos not in (0, 1, 2) or not 1 <= packet_id <= 65535:
        raise ValueError(f"a SUBSCRIBE is QoS 0-2 with a packet id 1..65535; got {qos}, {packet_id}")
    body = U16.pack(packet_id) + (b"\x00" if v5 else b"") + utf8_field(pattern, "topic filter") + ONE_BYTE[qos]
    return ONE_BYTE[SUBSCRIBE_FIRST] + remaining_length(len(body)) + body


def parse_suback(body: bytes, v5: bool) -> tuple[int, list[int]]:
    """-> (packet id, one code per filter): the QoS granted (0-2), or a refusal (>= 0x80)."""
    if len(body) < 3:
        raise MqttProtocolError(f"malformed SUBACK: {body[:16].hex()}")
    pos = parse_properties(body, 2)[1] if v5 else 2
    codes = list(body[pos:])
    if not codes or any(2 < c < 0x80 for c in codes) or (not v5 and any(c > 2 and c != 0x80 for c in codes)):
        raise MqttProtocolError(f"malformed SUBACK: {body[:16].hex()}")
    return U16.unpack_from(body)[0], codes


def pubacks(packet_ids: list[int]) -> bytes:
    """A PUBACK (reason Success: the same four bytes in MQTT 3.1.1 and 5) for each id, in one
    ``struct`` call: each is the big-endian integer 0x4002_0000 + id."""
    return _pubacks(len(packet_ids)).pack(*[0x40020000 | pid for pid in packet_ids])


@functools.lru_cache(maxsize=256)
def _pubacks(count: int) -> struct.Struct:
    return struct.Struct(f">{count}I")


class Publish(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 at QoS 0
    retain: bool
    dup: bool
    properties: dict[int, Any]  # MQTT 5; empty in 3.1.1


def parse_publish(first: int, body: bytes, v5: bool) -> Publish:
    """One PUBLISH a broker delivers, in full (the reader's fast path gives topic and payload only).
    QoS 2 and topic aliases are refused: we subscribe at QoS 0 or 1 and allow no aliases."""
    got = MessageReader(v5=v5, max_packet=MAX_REMAINING).feed(ONE_BYTE[first] + remaining_length(len(body)) + body)
    if len(got.messages) != 1 or got.packets:
        raise MqttProtocolError(f"not a PUBLISH: 0x{first:02x}")
    topic, payload = got.messages[0]
    qos = first >> 1 & 3
    properties: dict[int, Any] = {}
    if v5:
        properties = parse_properties(body, 2 + len(topic) + (2 if qos else 0))[0]
    return Publish(topic_name(topic), payload, qos, got.acks[0] if qos else 0, bool(first & 1), bool(first & 8),
                   properties)


def topic_name(raw: bytes) -> str:
    """A delivered topic's bytes as text; a subscriber names each distinct topic once."""
    try:
        topic = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MqttProtocolError(f"a PUBLISH topic that is not UTF-8: {raw[:40]!r}") from None
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise MqttProtocolError(f"a PUBLISH topic with wildcards or NUL: {topic[:40]!r}")
    return topic


class Inbound(NamedTuple):
    messages: list[tuple[bytes, bytes]]  # (topic as UTF-8 bytes, payload) of every PUBLISH, in order
    acks: list[int]  # packet ids of the QoS 1 messages among them: PUBACK each once handed on
    packets: list[tuple[int, bytes]]  # anything else: (first byte, body)


class MessageReader(StreamCutter):
    """Cuts a subscriber's byte stream into delivered messages and other packets; keeps at most
    one incomplete packet, refuses one longer than ``max_packet`` before buffering it."""

    def feed(self, data: bytes) -> Inbound:
        buf = self._buf + data if self._buf else data
        n, pos, v5, limit = len(buf), 0, self.v5, self.max_packet
        ok = _TO_SUBSCRIBER_V5 if v5 else _TO_SUBSCRIBER_V3
        messages: list[tuple[bytes, bytes]] = []
        acks: list[int] = []
        packets: list[tuple[int, bytes]] = []
        append = messages.append
        try:
            while pos < n:
                first = buf[pos]
                if not ok[first]:
                    raise MqttProtocolError(f"byte 0x{first:02x} starts no packet an MQTT {'5' if v5 else '3.1.1'} "
                                            "broker sends to a QoS 0/1 subscriber")
                if pos + 1 >= n:
                    break
                length, i = buf[pos + 1], pos + 2
                if length > 127:
                    length, i = _long_length(buf, pos + 1)
                    if i < 0:
                        break
                if length > limit:
                    raise MqttProtocolError(f"a {length}-byte packet exceeds the {limit} bytes we accept")
                end = i + length
                if end > n:
                    break
                if first < 0x40:  # PUBLISH (the table lets only QoS 0 and 1 through)
                    # Read as if well formed (a short packet reads into the next one, or past the
                    # buffer: IndexError), then check that it was.
                    start = i + 2
                    at = topic_end = start + (buf[i] << 8 | buf[i + 1])
                    if first & 2:
                        packet_id = buf[at] << 8 | buf[at + 1]
                        acks.append(packet_id)
                        at += 2
                    if v5:
                        at = _skip_properties(buf, at, end) if buf[at] else at + 1
                    if at > end or topic_end == start or first & 2 and not packet_id:
                        raise _malformed(buf, pos, end)
                    append((buf[start:topic_end], buf[at:end]))
                else:
                    packets.append((first, buf[i:end]))
                pos = end
        except IndexError:
            raise _malformed(buf, pos, n) from None
        self._buf = buf[pos:] if pos < n else b""
        return Inbound(messages, acks, packets)


def _malformed(buf: bytes, pos: int, end: int) -> MqttProtocolError:
    return MqttProtocolError(f"malformed PUBLISH: {buf[pos:min(end, pos + 24)].hex()}")


def _long_length(buf: bytes, at: int) -> tuple[int, int]:
    """The remaining length at ``at`` -> (length, index after it); (0, -1) when it is incomplete."""
    length, shift = 0, 0
    for i in range(at, min(at + 4, len(buf))):
        length |= (buf[i] & 127) << shift
        if buf[i] < 128:
            return length, i + 1
        shift += 7
    if len(buf) - at >= 4:
        raise MqttProtocolError("remaining length longer than four bytes")
    return 0, -1


def _skip_properties(buf: bytes, at: int, end: int) -> int:
    """Past a delivered PUBLISH's MQTT 5 properties (parsed, so malformed ones are caught)."""
    props, after = parse_properties(buf[at:end], 0)
    if 0x23 in props:
        raise MqttProtocolError("a topic alias from the broker, which we never allowed (no Topic Alias Maximum)")
    return at + after
