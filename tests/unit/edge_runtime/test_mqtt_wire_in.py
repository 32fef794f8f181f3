"""The subscribing side of the MQTT codec: SUBSCRIBE/SUBACK against the bytes of the MQTT 3.1.1
and 5 specifications, and the message reader against what ``mqtt_wire.publish`` writes, cut
anywhere, and against what no broker would send."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime import mqtt_wire, mqtt_wire_in as w
from edge_runtime.errors import ConfigError
from edge_runtime.mqtt_wire import MqttProtocolError

H = bytes.fromhex


@pytest.mark.parametrize(("v5", "qos", "expected"), [
    (False, 1, "820e 0001 0009696d752f2b2f726177 01"),
    (True, 1, "820f 0001 00 0009696d752f2b2f726177 01"),
    (True, 0, "820f 002a 00 0009696d752f2b2f726177 00"),
])
def test_a_subscribe_is_byte_exact(v5: bool, qos: int, expected: str) -> None:
    assert w.subscribe("imu/+/raw", qos, 1 if qos else 42, v5=v5) == H(expected)


@pytest.mark.parametrize("bad", ["", "imu/a+/raw", "imu/#/raw", "imu/x#", "a\x00b"])
def test_a_topic_filter_with_misplaced_wildcards_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="whole levels"):
        w.subscribe(bad, 1, 1, v5=True)
    for good in ("imu/+/raw", "imu/#", "#", "+/+", "imu/w1/raw"):
        w.check_filter(good)


@pytest.mark.parametrize(("v5", "body", "expected"), [
    (False, "0001 01", (1, [1])),
    (False, "0001 80", (1, [0x80])),
    (True, "0001 00 00", (1, [0])),
    (True, "0001 00 87", (1, [0x87])),
    (True, "0007 06 1f0003626164 01", (7, [1])),  # with a reason string
])
def test_subacks_give_the_granted_qos_or_the_refusal(v5: bool, body: str, expected: tuple[int, list[int]]) -> None:
    assert w.parse_suback(H(body), v5) == expected


@pytest.mark.parametrize(("v5", "body"), [(False, "0001"), (False, "0001 87"), (True, "0001 00 05"), (True, "0001 00")])
def test_a_malformed_suback_is_a_protocol_error(v5: bool, body: str) -> None:
    with pytest.raises(MqttProtocolError):
        w.parse_suback(H(body), v5)


def test_pubacks_for_a_read_go_out_as_one_byte_string() -> None:
    assert w.pubacks([1, 0x1234, 65535]) == H("40020001 40021234 4002ffff")
    assert w.pubacks([]) == b""


def test_a_subscribers_connect_tells_an_mqtt_5_broker_its_maximum_packet_size() -> None:
    v5 = mqtt_wire.connect(client_id="c", protocol="5", keepalive_s=60, maximum_packet_size=1 << 20)
    assert v5 == H("1013 00044d515454 05 02 003c 05 2700100000 000163")
    assert mqtt_wire.connect(client_id="c", protocol="3.1.1", keepalive_s=60, maximum_packet_size=1 << 20) == \
        mqtt_wire.connect(client_id="c", protocol="3.1.1", keepalive_s=60)  # 3.1.1 cannot say it
    with pytest.raises(ConfigError):
        mqtt_wire.connect(client_id="c", maximum_packet_size=0)


@pytest.mark.parametrize("v5", [True, False])
@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("size", [0, 1, 100, 20000])
def test_a_delivered_publish_reads_back_as_written(v5: bool, qos: int, size: int) -> None:
    payload = bytes(i % 256 for i in range(size))
    packet = mqtt_wire.publish("imu/wearer-7/raw", payload, qos, 513 if qos else 0, retain=True, dup=bool(qos), v5=v5)
    got = w.parse_publish(packet[0], _body(packet), v5)
    assert got == w.Publish("imu/wearer-7/raw", payload, qos, 513 if qos else 0, True, bool(qos), {})
    assert type(got.payload) is bytes
    assert w.MessageReader(v5=v5).feed(packet) == w.Inbound([(b"imu/wearer-7/raw", payload)], [513] if qos else [], [])


def _body(packet: bytes) -> bytes:
    """A packet without its fixed header (1 byte, then 1-4 of remaining length)."""
    return packet[1 + next(i for i in range(1, 5) if packet[i] < 128):]


def test_mqtt_5_properties_of_a_delivered_publish_are_read_and_skipped() -> None:
    props = H("0101 020000003c 26000161000162 0b05")  # payload format, expiry, user property, subscription id
    body = H("0003612f62 0009") + bytes([len(props)]) + props + b"payload"
    got = w.parse_publish(0x32, body, v5=True)
    assert (got.topic, got.payload, got.packet_id) == ("a/b", b"payload", 9)
    assert got.properties == {0x01: 1, 0x02: 60, 0x26: [("a", "b")], 0x0B: 5}
    inbound = w.MessageReader(v5=True).feed(b"\x32" + mqtt_wire.remaining_length(len(body)) + body)
    assert inbound == w.Inbound([(b"a/b", b"payload")], [9], [])


def _stream(v5: bool) -> tuple[bytes, list[tuple[bytes, bytes]], list[int]]:
    parts, messages, acks = [mqtt_wire.PINGRESP_PACKET], [], []
    for i in range(12):
        qos = i % 2
        topic, payload = f"imu/d{i % 3}/raw", bytes([i]) * (i * 23)
        parts.append(mqtt_wire.publish(topic, payload, qos, i + 1 if qos else 0, retain=i == 4, v5=v5))
        messages.append((topic.encode(), payload))
        acks += [i + 1] if qos else []
    parts.insert(3, H("9004 0001 00 01") if v5 else H("9003 0001 01"))
    return b"".join(parts), messages, acks


def _read(reader: w.MessageReader, chunks: list[bytes]) -> w.Inbound:
    out = w.Inbound([], [], [])
    for chunk in chunks:
        got = reader.feed(chunk)
        out.messages.extend(got.messages)
        out.acks.extend(got.acks)
        out.packets.extend(got.packets)
    return out


@pytest.mark.parametrize("v5", [True, False])
def test_the_reader_gives_the_same_messages_wherever_the_stream_is_cut(v5: bool) -> None:
    stream, messages, acks = _stream(v5)
    suback = (0x90, H("0001 00 01") if v5 else H("0001 01"))
    whole = _read(w.MessageReader(v5=v5), [stream])
    assert whole == w.Inbound(messages, acks, [(0xD0, b""), suback])
    for cut in range(1, len(stream)):
        reader = w.MessageReader(v5=v5)
        assert _read(reader, [stream[:cut], stream[cut:]]) == whole, cut
        assert reader.buffered == 0
    reader = w.MessageReader(v5=v5)
    assert _read(reader, [stream[i:i + 1] for i in range(len(stream))]) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=30), st.booleans())
def test_the_reader_never_holds_more_than_one_incomplete_packet(cuts: list[int], v5: bool) -> None:
    stream, messages, acks = _stream(v5)
    reader, chunks, pos, i = w.MessageReader(v5=v5, max_packet=400), [], 0, 0
    while pos < len(stream):
        chunks.append(stream[pos:pos + cuts[i % len(cuts)]])
        pos, i = pos + cuts[i % len(cuts)], i + 1
    got = w.Inbound([], [], [])
    for chunk in chunks:
        part = reader.feed(chunk)
        got.messages.extend(part.messages)
        got.acks.extend(part.acks)
        assert reader.buffered <= 400 + 5
    assert (got.messages, got.acks) == (messages, acks)


@pytest.mark.parametrize(("v5", "garbage", "why"), [
    (True, "00", "starts no packet"),
    (True, "3405 0001 61 0001", "starts no packet"),  # QoS 2: we never subscribe at QoS 2
    (True, "3605 0001 61 0001", "starts no packet"),  # QoS 3 does not exist
    (True, "4002 0001", "starts no packet"),  # a PUBACK answers nothing a subscriber sent
    (True, "2003 000000", "starts no packet"),  # a second CONNACK
    (False, "e000", "starts no packet"),  # DISCONNECT from a 3.1.1 broker
    (True, "3004 0000 00 61", "malformed PUBLISH"),  # an empty topic (no alias allowed)
    (True, "3206 0001 61 0000 00", "malformed PUBLISH"),  # packet id 0
    (False, "3003 0005 61", "malformed PUBLISH"),  # the topic overruns the packet
    (True, "3004 0001 61 05", "properties"),  # properties overrun the packet
    (True, "3007 0001 61 03 230001", "topic alias"),
])
def test_what_no_broker_sends_a_subscriber_is_a_protocol_error(v5: bool, garbage: str, why: str) -> None:
    with pytest.raises(MqttProtocolError, match=why):
        w.MessageReader(v5=v5).feed(H(garbage))


def test_an_oversized_message_is_refused_from_its_header_alone() -> None:
    with pytest.raises(MqttProtocolError, match="exceeds the 1000 bytes"):
        w.MessageReader(v5=True, max_packet=1000).feed(b"\x30" + mqtt_wire.remaining_length(1001) + b"\x00\x01a")
    reader = w.MessageReader(v5=True, max_packet=1000)
    assert reader.feed(b"\x30" + mqtt_wire.remaining_length(1000)).messages == [] and reader.buffered == 3
    with pytest.raises(MqttProtocolError, match="longer than four bytes"):
        w.MessageReader(v5=True).feed(H("30ffffffff01"))


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"imu/+/raw", b"imu/#"])
def test_a_delivered_topic_must_be_utf8_without_wildcards(raw: bytes) -> None:
    with pytest.raises(MqttProtocolError):
        w.topic_name(raw)
    assert w.topic_name("imu/wéarer/raw".encode()) == "imu/wéarer/raw"
