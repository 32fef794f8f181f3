"""The MQTT codec against the bytes the MQTT 3.1.1 and 5 specifications give, and the packet
reader against chopped, mixed and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime import mqtt_wire as w
from edge_runtime.errors import ConfigError, EdgeRuntimeError
from edge_runtime.mqtt_wire import MqttProtocolError

H = bytes.fromhex


@pytest.mark.parametrize(("n", "encoded"), [
    (0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
    (2097152, "80808001"), (268435455, "ffffff7f"),
])
def test_remaining_lengths_are_the_specs_variable_byte_integers(n: int, encoded: str) -> None:
    assert w.remaining_length(n) == H(encoded)
    reader = w.PacketReader(v5=True, max_packet=w.MAX_REMAINING)
    assert reader.feed(b"\xd0" + H(encoded)).packets == ([(0xD0, b"")] if n == 0 else [])
    assert reader.buffered == 1 + len(encoded) // 2 if n else reader.buffered == 0


def test_a_remaining_length_beyond_four_bytes_is_refused() -> None:
    with pytest.raises(ValueError):
        w.remaining_length(268435456)
    with pytest.raises(MqttProtocolError, match="longer than four bytes"):
        w.PacketReader(v5=True).feed(H("d0ffffffff01"))


@pytest.mark.parametrize(("protocol", "expected"), [
    ("3.1.1", "100d 00044d515454 04 02 003c 000163"),
    ("5", "100e 00044d515454 05 02 003c 00 000163"),
])
def test_a_minimal_connect_is_byte_exact(protocol: str, expected: str) -> None:
    assert w.connect(client_id="c", protocol=protocol, keepalive_s=60) == H(expected)


def test_a_connect_carries_credentials_and_a_retained_qos_1_will() -> None:
    will = w.Will(topic="s/t", payload=b"off", qos=1, retain=True)
    v3 = w.connect(client_id="c", protocol="3.1.1", keepalive_s=30, username="u", password="pw", will=will)
    body = "00044d515454 04 ee 001e 000163 0003732f74 00036f6666 000175 00027077"
    assert v3 == b"\x10" + bytes([len(H(body))]) + H(body)
    v5 = w.connect(client_id="c", protocol="5", keepalive_s=30, username="u", password="pw", will=will)
    body5 = "00044d515454 05 ee 001e 00 000163 00 0003732f74 00036f6666 000175 00027077"  # + will properties
    assert v5 == b"\x10" + bytes([len(H(body5))]) + H(body5)


def test_connect_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ConfigError, match="user name"):
        w.connect(client_id="c", protocol="3.1.1", password="pw")
    with pytest.raises(ConfigError, match="NUL"):
        w.connect(client_id="a\x00b")
    with pytest.raises(ConfigError, match="protocol must be one of 5, 3.1.1"):
        w.connect(client_id="c", protocol="3.1")
    with pytest.raises(ConfigError, match="wildcards"):
        w.topic_field("imu/+/x")


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"qos": 0, "v5": False}, "3007 0003612f62 6869"),
    ({"qos": 1, "packet_id": 10, "v5": False}, "3209 0003612f62 000a 6869"),
    ({"qos": 0, "v5": True}, "3008 0003612f62 00 6869"),
    ({"qos": 1, "packet_id": 10, "v5": True}, "320a 0003612f62 000a 00 6869"),
    ({"qos": 1, "packet_id": 65535, "retain": True, "dup": True, "v5": True}, "3b0a 0003612f62 ffff 00 6869"),
])
def test_publish_packets_are_byte_exact(kwargs: dict, expected: str) -> None:
    assert w.publish("a/b", b"hi", **kwargs) == H(expected)


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("v5", [True, False])
def test_the_fast_header_maker_writes_what_publish_header_writes(qos: int, v5: bool) -> None:
    topic = w.topic_field("imu/anon/s-0123456789abcdef")
    make = w.header_maker(qos, v5)
    for size in (0, 1, 90, 91, 92, 93, 2484, 16350, 16351, 16352, 16353, 70000, 2_200_000):
        assert make(topic, size, 513) == w.publish_header(topic, size, qos, 513 if qos else 0, v5=v5), size


def test_a_publish_needs_a_packet_id_at_qos_1_and_is_qos_0_or_1() -> None:
    for bad in ({"qos": 1, "packet_id": 0}, {"qos": 2, "packet_id": 1}, {"qos": 1, "packet_id": 65536}):
        with pytest.raises(ValueError):
            w.publish("a", b"", **bad)


@pytest.mark.parametrize(("v5", "body", "expected"), [
    (False, "000a", (10, 0)),
    (True, "000a", (10, 0)),
    (True, "000a10", (10, 0x10)),  # no matching subscribers: still a success
    (True, "000a8700", (10, 0x87)),
    (True, "000a87 06 1f0003626164", (10, 0x87)),  # with a reason string
])
def test_pubacks_give_their_packet_id_and_reason(v5: bool, body: str, expected: tuple[int, int]) -> None:
    assert w.parse_puback(H(body), v5) == expected


def test_a_malformed_puback_is_a_protocol_error() -> None:
    for v5, body in ((False, "000a00"), (True, "00"), (True, "000a87 05 1f0003")):
        with pytest.raises(MqttProtocolError):
            w.parse_puback(H(body), v5)


def test_connacks_of_3_1_1_say_accepted_or_why_not() -> None:
    ok = w.parse_connack(H("0000"), v5=False)
    assert ok.accepted and ok.receive_maximum == 65535 and not ok.session_present
    refused = w.parse_connack(H("0005"), v5=False)
    assert not refused.accepted and refused.reason == "Not authorized"
    assert w.parse_connack(H("0004"), v5=False).reason == "Bad user name or password"


def test_an_mqtt_5_connack_gives_the_brokers_limits() -> None:
    mosquitto = w.parse_connack(H("00000622000a210014"), v5=True)  # what mosquitto 2.0 answers
    assert mosquitto.accepted and mosquitto.receive_maximum == 20 and mosquitto.maximum_packet_size is None
    props = "13003c 12000361626b 2700001000 2400 2501 260001610001 62"
    body = "0100" + bytes([len(H(props))]).hex() + props
    ack = w.parse_connack(H(body), v5=True)
    assert (ack.session_present, ack.server_keep_alive, ack.assigned_client_id, ack.maximum_packet_size,
            ack.maximum_qos, ack.receive_maximum) == (True, 60, "abk", 4096, 0, 65535)
    refused = w.parse_connack(H("008600"), v5=True)
    assert not refused.accepted and refused.reason == "Bad user name or password"
    with pytest.raises(MqttProtocolError):
        w.parse_connack(H("0000032100 00"), v5=True)  # Receive Maximum 0
    with pytest.raises(MqttProtocolError, match="unknown MQTT 5 property"):
        w.parse_connack(H("0000027f00"), v5=True)


def test_ping_and_disconnect() -> None:
    assert w.PINGREQ_PACKET == H("c000")
    assert w.disconnect(v5=False) == w.disconnect(v5=True) == H("e000")
    assert w.disconnect(v5=True, reason=4) == H("e0020400")
    assert w.parse_disconnect(b"") == (0, None)
    assert w.parse_disconnect(H("8e")) == (0x8E, None)
    assert w.parse_disconnect(H("93 06 1f0003626164")) == (0x93, "bad")
    assert w.reason_name(0x8E) == "Session taken over" and "0x7e" in w.reason_name(0x7E)


def test_runs_of_pubacks_are_read_in_bulk_and_in_order() -> None:
    reader = w.PacketReader(v5=True)
    stream = b"".join(H("4002") + i.to_bytes(2, "big") for i in range(1, 101))
    stream += b"".join(H("4003") + i.to_bytes(2, "big") + (b"\x87" if i == 105 else b"\x10") for i in range(101, 111))
    stream += H("d000") + H("40020111") + H("4004 0112 8700")
    got = reader.feed(stream)
    assert got.acked == list(range(1, 111)) + [0x111, 0x112]
    assert got.refused == [(105, 0x87), (0x112, 0x87)]
    assert got.packets == [(0xD0, b"")] and reader.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["ack2", "ack3", "ack3bad", "ack4", "ping", "disconnect"]), max_size=40),
       st.lists(st.integers(1, 12), min_size=1, max_size=20), st.integers(1, 65535))
def test_the_reader_gives_the_same_packets_however_the_stream_is_cut(kinds: list[str], cuts: list[int],
                                                                     pid: int) -> None:
    encoded = {"ack2": "4002{p}", "ack3": "4003{p}10", "ack3bad": "4003{p}97", "ack4": "4004{p}8000",
               "ping": "d000", "disconnect": "e0028e00"}
    stream = b"".join(H(encoded[k].format(p=f"{pid:04x}")) for k in kinds)
    reader = w.PacketReader(v5=True, max_packet=64)
    acked, refused, packets, pos, i = [], [], [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got = reader.feed(stream[pos:pos + step])
        acked += got.acked
        refused += got.refused
        packets += got.packets
        pos, i = pos + step, i + 1
        assert reader.buffered < 8  # never more than one incomplete packet
    assert acked == [pid for k in kinds if k.startswith("ack")]
    assert refused == [(pid, 0x97 if k == "ack3bad" else 0x80) for k in kinds if k in ("ack3bad", "ack4")]
    assert packets == [(0xD0, b"") if k == "ping" else (0xE0, H("8e00")) for k in kinds
                       if k in ("ping", "disconnect")]


@pytest.mark.parametrize(("v5", "garbage"), [
    (True, "00"), (True, "48 02 0001"), (True, "6002 0001"), (False, "e000"), (False, "f000"), (True, "1000"),
    (False, "4003 000110"),
])
def test_garbage_from_the_broker_is_a_protocol_error(v5: bool, garbage: str) -> None:
    with pytest.raises(MqttProtocolError) as info:
        w.PacketReader(v5=v5).feed(H(garbage))
    assert isinstance(info.value, EdgeRuntimeError)


def test_an_oversized_packet_is_refused_before_its_body_arrives() -> None:
    reader = w.PacketReader(v5=True, max_packet=1000)
    with pytest.raises(MqttProtocolError, match="exceeds the 1000 bytes"):
        reader.feed(b"\x30" + w.remaining_length(1001))
    assert w.PacketReader(v5=True, max_packet=1000).feed(b"\x30" + w.remaining_length(1000)).packets == []
