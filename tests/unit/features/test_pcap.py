"""Reading pcap/pcapng captures: fields per protocol, gzip, pcapng, malformed input."""

from __future__ import annotations

import csv
import gzip
import io
import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.errors import DataError
from fediot.features import parse_capture, read_pcap
from fediot.features.pcap import PROTO_ARP, PROTO_ICMP, PROTO_OTHER, PROTO_TCP, PROTO_UDP

MAC_A = b"\x02\x00\x00\x00\x00\x0a"
MAC_B = b"\x02\x00\x00\x00\x00\x0b"
IP_A = bytes([192, 168, 1, 10])
IP_B = bytes([192, 168, 1, 20])


def _eth(etype: int, payload: bytes, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=etype, data=payload))


def _tcp() -> bytes:
    ip = dpkt.ip.IP(src=IP_A, dst=IP_B, p=dpkt.ip.IP_PROTO_TCP, data=dpkt.tcp.TCP(sport=40000, dport=443))
    ip.len = len(bytes(ip))
    return _eth(dpkt.ethernet.ETH_TYPE_IP, bytes(ip))


def _frames() -> list[bytes]:
    udp6 = dpkt.ip6.IP6(
        src=bytes(range(16)), dst=bytes(range(16, 32)), nxt=dpkt.ip.IP_PROTO_UDP, hlim=64,
        data=dpkt.udp.UDP(sport=5353, dport=53, data=b"x"),
    )  # fmt: skip
    udp6.plen = len(bytes(udp6.data))
    icmp = dpkt.ip.IP(src=IP_B, dst=IP_A, p=dpkt.ip.IP_PROTO_ICMP, data=dpkt.icmp.ICMP(type=8, data=b"ping"))
    arp = dpkt.arp.ARP(sha=MAC_A, spa=IP_A, tha=b"\x00" * 6, tpa=IP_B, op=dpkt.arp.ARP_OP_REQUEST)
    lldp = b"\x02\x07\x04" + MAC_A + b"\x00\x00" + b"\x00" * 20
    return [
        _tcp(),
        _eth(dpkt.ethernet.ETH_TYPE_IP6, bytes(udp6)),
        _eth(dpkt.ethernet.ETH_TYPE_IP, bytes(icmp)),
        _eth(dpkt.ethernet.ETH_TYPE_ARP, bytes(arp), dst=b"\xff" * 6),
        _eth(0x88CC, lldp),
    ]


def _pcap_bytes(frames: list[bytes], linktype: int = dpkt.pcap.DLT_EN10MB) -> bytes:
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf, linktype=linktype)
    for i, frame in enumerate(frames):
        writer.writepkt(frame, ts=1_600_000_000 + i * 0.25)
    return buf.getvalue()


def test_decodes_tcp_ipv6_icmp_arp_and_non_ip_frames() -> None:
    # Prepare
    data = _pcap_bytes(_frames())

    # Execute
    table, summary = parse_capture(data)

    # Assert
    assert summary.num_packets == 5
    assert summary.skipped == {}
    assert summary.linktype == 1
    assert list(table.protocol) == [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ARP, PROTO_OTHER]
    assert list(table.ip_version) == [4, 6, 4, 4, 0]
    assert (table.src_port[0], table.dst_port[0]) == (40000, 443)
    assert (table.src_port[1], table.dst_port[1]) == (5353, 53)
    assert table.src_port[2] == -1
    assert table.src_port[3] == -1
    assert table.src_ip[0, 1] == 0xC0A8010A
    assert table.dst_ip[0, 1] == 0xC0A80114
    assert table.src_ip[1, 0] == int.from_bytes(bytes(range(8)), "big")
    assert table.dst_ip[1, 1] == int.from_bytes(bytes(range(24, 32)), "big")
    assert table.src_ip[3, 1] == 0xC0A8010A
    assert table.dst_ip[3, 1] == 0xC0A80114
    assert table.src_mac[0] == 0x02000000000A
    assert table.dst_mac[3] == 0xFFFFFFFFFFFF
    np.testing.assert_allclose(table.timestamp, 1_600_000_000 + 0.25 * np.arange(5))
    assert list(table.length) == [len(f) for f in _frames()]


def test_wire_length_is_used_not_the_captured_length() -> None:
    # Prepare: one record truncated by a 54-byte snaplen; the frame was 1514 bytes on the wire
    frame = _tcp()[:54]
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 54, 1)
    record = struct.pack("<IIII", 1_600_000_000, 500_000, len(frame), 1514) + frame

    # Execute
    table, _ = parse_capture(header + record)

    # Assert
    assert table.length[0] == 1514
    assert table.timestamp[0] == pytest.approx(1_600_000_000.5)
    assert table.dst_port[0] == 443


def test_gzip_and_pcapng_give_the_same_table_as_pcap() -> None:
    # Prepare
    frames = _frames()
    ng = io.BytesIO()
    writer = dpkt.pcapng.Writer(ng)
    for i, frame in enumerate(frames):
        writer.writepkt(frame, ts=1_600_000_000 + i * 0.25)

    # Execute
    plain, _ = parse_capture(_pcap_bytes(frames))
    gz, _ = parse_capture(gzip.compress(_pcap_bytes(frames)))
    png, summary = parse_capture(ng.getvalue())

    # Assert
    assert summary.format == "pcapng"
    for other in (gz, png):
        for name in ("length", "src_mac", "src_ip", "dst_ip", "protocol", "src_port", "dst_port"):
            np.testing.assert_array_equal(getattr(other, name), getattr(plain, name))
        np.testing.assert_allclose(other.timestamp, plain.timestamp, rtol=0, atol=1e-6)


def test_truncated_last_record_and_short_frames_are_counted_not_fatal() -> None:
    # Prepare: a 10-byte frame (no Ethernet header) and a final record cut in the middle
    data = _pcap_bytes([_tcp(), b"\x00" * 10, _tcp(), _tcp()])[:-7]

    # Execute
    table, summary = parse_capture(data, name="cut.pcap")

    # Assert
    assert len(table) == 2
    assert summary.skipped == {"truncated_record": 1, "short_link_header": 1}
    assert summary.num_records == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"hello, this is not a capture", "not a pcap", id="wrong-magic"),
        pytest.param(gzip.compress(b"x" * 100)[:20], "gzip", id="truncated-gzip"),
    ],
)
def test_unreadable_files_raise_data_error(data: bytes, message: str) -> None:
    # Execute / Assert
    with pytest.raises(DataError, match=message):
        parse_capture(data, name="bad.pcap")


def test_bogus_record_length_raises_data_error_with_offset(tmp_path: Path) -> None:
    # Prepare: the second record claims a 16 MiB packet
    data = bytearray(_pcap_bytes([_tcp(), _tcp(), _tcp()]))
    second = 24 + 16 + len(_tcp())
    data[second + 8 : second + 12] = struct.pack("<I", 1 << 24)
    path = tmp_path / "bogus.pcap"
    path.write_bytes(bytes(data))

    # Execute / Assert
    with pytest.raises(DataError, match=rf"bogus\.pcap.*offset {second}.*record 2"):
        read_pcap(path)


def test_unsupported_link_type_names_the_file_and_linktype(tmp_path: Path) -> None:
    # Prepare: 802.11 radiotap captures are not decoded
    path = tmp_path / "wifi.pcap"
    path.write_bytes(_pcap_bytes([b"\x00" * 40], linktype=127))

    # Execute / Assert
    with pytest.raises(DataError, match=r"wifi\.pcap.*link type 127"):
        read_pcap(path)


def test_raw_ip_captures_decode_with_zero_macs() -> None:
    # Prepare
    ip_frame = _tcp()[14:]

    # Execute
    table, summary = parse_capture(_pcap_bytes([ip_frame], linktype=101))

    # Assert
    assert summary.linktype == 101
    assert table.src_mac[0] == 0
    assert table.dst_port[0] == 443
    assert table.ip_version[0] == 4


def test_shipped_captures_match_their_manifest(fast_pcaps: list[Path]) -> None:
    # Prepare
    manifest_path = shipped_file("iot_sentinel/MANIFEST.csv")
    with manifest_path.open() as fh:
        manifest = {(r["device"], r["file"]): r for r in csv.DictReader(fh)}

    # Execute
    results = {(p.parent.name, p.name): read_pcap(p) for p in fast_pcaps}

    # Assert: every record decodes; packet and IPv4 counts equal the manifest's
    for key, (table, summary) in results.items():
        row = manifest[key]
        assert summary.skipped == {}
        assert len(table) == int(row["packets"])
        ipv4 = int(((table.ip_version == 4) & (table.protocol != PROTO_ARP)).sum())
        assert ipv4 == int(row["ipv4_packets"])
