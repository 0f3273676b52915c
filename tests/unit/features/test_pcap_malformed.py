"""Malformed captures: each damage is either counted (truncation, bad packets) or one CaptureError naming
the file, the byte offset and what was expected; the crash corpus of the old reader is kept here."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.errors import CaptureError, ConfigError, DataError
from fediot.features.pcap import MAX_DECOMPRESSED_BYTES, CaptureReader, PacketTable, parse_capture, read_pcap

SYN = "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz"


def _block(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)


def _shb(e: str = "<") -> bytes:
    return _block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)


def _idb(linktype: int = 1, opts: bytes = b"", e: str = "<") -> bytes:
    return _block(1, struct.pack(e + "HHI", linktype, 0, 65535) + opts, e)


def _epb(frame: bytes, ts: int = 1_600_000_000_000_000, iface: int = 0, e: str = "<") -> bytes:
    return _block(
        6, struct.pack(e + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame, e
    )


@pytest.fixture(scope="module")
def syn_pcap() -> bytes:
    """The first 200 records of the shipped spoofed SYN flood (real packets), as plain pcap bytes."""
    data = gzip.decompress(shipped_file(SYN).read_bytes())
    off = 24
    for _ in range(200):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    return data[:off]


@pytest.fixture(scope="module")
def frames(syn_pcap: bytes) -> list[bytes]:
    """The frames of :func:`syn_pcap`."""
    out, off = [], 24
    while off < len(syn_pcap):
        caplen = struct.unpack_from("<I", syn_pcap, off + 8)[0]
        out.append(syn_pcap[off + 16 : off + 16 + caplen])
        off += 16 + caplen
    return out


def _pcapng(frames: list[bytes], e: str = "<") -> bytes:
    return (
        _shb(e) + _idb(e=e) + b"".join(_epb(f, 1_600_000_000_000_000 + i, e=e) for i, f in enumerate(frames))
    )


# ---- the crash corpus of the previous reader (struct.error / dpkt.UnpackError / dpkt.NeedData) ----------


def test_short_packet_block_at_the_end_is_an_error_naming_its_offset(frames: list[bytes]) -> None:
    # Prepare: a well-framed 16-byte enhanced packet block (too short for its fields) ends the file
    good = _pcapng(frames[:3])
    data = good + struct.pack("<II", 6, 16) + b"\x00" * 4 + struct.pack("<I", 16)

    # Execute / Assert
    with pytest.raises(
        CaptureError,
        match=rf"^x\.pcapng, byte offset {len(good)}: enhanced packet block length 16, "
        r"expected at least 32",
    ):
        parse_capture(data, name="x.pcapng")


@pytest.mark.parametrize(
    ("idb", "expected"),
    [
        pytest.param(
            _block(1, b"\x01\x00"),
            "interface description block length 16, expected at least 20",
            id="short-idb",
        ),
        pytest.param(
            _idb(opts=struct.pack("<HH", 9, 40) + b"\x06\x00\x00\x00"),
            "option 9: length 40 runs past the block end",
            id="option-past-end",
        ),
        pytest.param(_idb(linktype=127), "unsupported link type 127", id="unsupported-linktype"),
        pytest.param(_idb(linktype=101), r"mixes link types \[1, 101\]", id="mixed-linktypes"),
        pytest.param(
            _idb()[:-4] + struct.pack("<I", 24),
            "trailing block length 24 differs from the leading 20",
            id="trailer-mismatch",
        ),
    ],
)
def test_malformed_second_interface_block_is_an_error_naming_its_offset(
    frames: list[bytes], idb: bytes, expected: str
) -> None:
    # Prepare
    head = _shb() + _idb() + _epb(frames[0])
    data = head + idb + _epb(frames[1])

    # Execute / Assert
    with pytest.raises(CaptureError, match=r"^two\.pcapng, byte offset \d+: .*" + expected) as info:
        parse_capture(data, name="two.pcapng")
    assert len(head) <= info.value.offset < len(head) + len(idb)


# ---- truncation is counted, the good packets are kept ----------------------------------------------------


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 20, 40])
def test_truncated_final_pcapng_block_keeps_the_packets_before_it(frames: list[bytes], cut: int) -> None:
    # Prepare
    data = _pcapng(frames[:10])

    # Execute
    table, summary = parse_capture(data[:-cut])

    # Assert
    assert len(table) == 9
    assert summary.skipped == {"truncated_record": 1}
    assert summary.num_records == 10


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"\xd4\xc3\xb2\xa1\x02\x00",
            "byte offset 0: truncated pcap file header: expected 24 bytes, found 6",
            id="pcap-header",
        ),
        pytest.param(
            _shb()[:20],
            "byte offset 0: truncated pcapng section header: 20 bytes, expected at least 28",
            id="pcapng-header",
        ),
        pytest.param(
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x11\x22\x33\x44" + bytes(16),
            "byte offset 8: pcapng section header: byte-order magic 0x11223344",
            id="bad-bom",
        ),
        pytest.param(b"GIF89a" + bytes(40), "byte offset 0: not a pcap or pcapng capture", id="bad-magic"),
        pytest.param(
            _shb() + struct.pack("<II", 6, 0xFFFFFFFF) + bytes(8),
            r"byte offset 28: corrupt pcapng block \(type 0x6\): block length 4294967295, expected a "
            "multiple of 4",
            id="absurd-block-length",
        ),
        pytest.param(
            _shb() + struct.pack("<II", 6, 13) + bytes(8),
            "byte offset 28: corrupt pcapng block \\(type 0x6\\): block length 13, expected a multiple of 4",
            id="unaligned-block-length",
        ),
        pytest.param(
            _shb() + _idb() + _block(3, bytes(8)),
            "byte offset 48: pcapng simple packet blocks have no timestamps",
            id="simple-packet-block",
        ),
        pytest.param(
            _shb() + _idb() + _epb(b"\x00" * 20, iface=3),
            "byte offset 48: enhanced packet block names interface 3; the section describes 1",
            id="unknown-interface",
        ),
        pytest.param(
            _shb() + _idb() + _block(6, struct.pack("<IIIII", 0, 0, 0, 500, 500) + bytes(20)),
            "byte offset 68: corrupt enhanced packet block: captured length 500 exceeds its 20 data bytes",
            id="caplen-past-block",
        ),
        pytest.param(
            _shb() + _shb(">"), "byte offset 36: pcapng section changes byte order", id="byte-order-change"
        ),
    ],
)
def test_damaged_structures_raise_one_capture_error(data: bytes, expected: str) -> None:
    # Execute / Assert
    with pytest.raises(CaptureError, match=r"^bad\.cap, " + expected):
        parse_capture(data, name="bad.cap")


def test_absurd_pcap_record_lengths(syn_pcap: bytes) -> None:
    # Prepare: record 3's captured length is 4 GiB; record 2's wire length is 4 GiB (its header fits)
    data = bytearray(syn_pcap)
    second = 24 + 16 + struct.unpack_from("<I", data, 24 + 8)[0]
    third = second + 16 + struct.unpack_from("<I", data, second + 8)[0]
    wire_only = bytearray(data)
    wire_only[second + 12 : second + 16] = struct.pack("<I", 0xFFFFFFFF)
    data[third + 8 : third + 12] = struct.pack("<I", 0xFFFFFFFF)

    # Execute
    table, summary = parse_capture(bytes(wire_only))

    # Assert: an implausible wire length skips that packet; an impossible captured length stops the file
    assert summary.skipped == {"implausible_wire_length": 1}
    assert len(table) == 199
    with pytest.raises(
        CaptureError,
        match=rf"byte offset {third}: corrupt record header \(record 3\): captured "
        r"length 4294967295 exceeds 262144 bytes",
    ):
        parse_capture(bytes(data), name="c.pcap")


def test_malformed_packets_in_a_valid_capture_are_counted_not_fatal(frames: list[bytes]) -> None:
    # Prepare: a frame cut inside its IPv4 header, one with IHL 3, one with caplen > wire length
    bad_ihl = bytearray(frames[1])
    bad_ihl[14] = 0x43
    caplen_over_wire = _block(6, struct.pack("<IIIII", 0, 0, 0, len(frames[2]), 10) + frames[2])
    data = (
        _shb()
        + _idb()
        + _epb(frames[0])
        + _epb(frames[0][:20])
        + _epb(bytes(bad_ihl))
        + caplen_over_wire
        + _epb(frames[3])
    )

    # Execute
    table, summary = parse_capture(data)

    # Assert
    assert len(table) == 2
    assert summary.skipped == {"short_ip_header": 1, "bad_ip_header": 1, "caplen_exceeds_wire_length": 1}
    assert summary.num_records == 5


# ---- gzip: a cap on the decompressed size, corrupt streams, truncated streams ----------------------------


def test_gzip_past_the_cap_is_refused_in_bounded_memory(syn_pcap: bytes) -> None:
    # Prepare: 64 MiB of zero-length records behind a real pcap header, in a ~64 KiB gzip
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    gz = (
        comp.compress(syn_pcap[:24])
        + b"".join(comp.compress(bytes(1 << 20)) for _ in range(64))
        + comp.flush()
    )

    # Execute / Assert
    with pytest.raises(
        CaptureError,
        match=r"^bomb\.pcap\.gz, byte offset 8388608: the gzip stream decompresses to "
        r"more than 8388608 bytes, the cap \(max_decompressed_bytes",
    ):
        parse_capture(gz, name="bomb.pcap.gz", max_decompressed_bytes=8 << 20)
    assert MAX_DECOMPRESSED_BYTES == 2 << 30
    assert len(gz) < 100_000


def test_truncated_gzip_keeps_the_packets_it_holds(syn_pcap: bytes) -> None:
    # Prepare
    gz = gzip.compress(syn_pcap)
    full, _ = parse_capture(syn_pcap)

    # Execute
    table, summary = parse_capture(gz[: len(gz) // 2])

    # Assert: a prefix of the packets, the cut counted (stream and final record)
    assert 0 < len(table) < len(full)
    np.testing.assert_array_equal(table.timestamp, full.timestamp[: len(table)])
    assert summary.skipped == {"truncated_record": 1, "truncated_gzip": 1}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(lambda gz: gz[:-8] + bytes(8), "incorrect data check", id="crc"),
        pytest.param(lambda gz: gz + b"garbage!", "incorrect header check", id="trailing-garbage"),
        pytest.param(lambda gz: gz[:10] + b"\xff" * 16 + gz[26:], "invalid", id="deflate-data"),
    ],
)
def test_corrupt_gzip_raises_a_capture_error(syn_pcap: bytes, mutate: object, expected: str) -> None:
    # Prepare
    assert callable(mutate)
    data = mutate(gzip.compress(syn_pcap))

    # Execute / Assert
    with pytest.raises(
        CaptureError, match=rf"^g\.pcap\.gz, byte offset \d+: corrupt gzip stream \(.*{expected}"
    ):
        parse_capture(data, name="g.pcap.gz")


def test_multi_member_and_zero_padded_gzip_read_as_one_stream(syn_pcap: bytes) -> None:
    # Prepare
    half = 24 + 16 + struct.unpack_from("<I", syn_pcap, 32)[0]
    members = gzip.compress(syn_pcap[:half]) + gzip.compress(syn_pcap[half:]) + bytes(64)

    # Execute
    plain, _ = parse_capture(syn_pcap)
    table, summary = parse_capture(members)

    # Assert
    assert summary.skipped == {}
    np.testing.assert_array_equal(table.timestamp, plain.timestamp)


# ---- batching: same result whatever the batch size, on a whole shipped capture ---------------------------


@pytest.mark.parametrize("batch_bytes", [1, 1000, 65536])
def test_batch_size_does_not_change_the_result(batch_bytes: int, frames: list[bytes]) -> None:
    # Prepare
    path = shipped_file(SYN)
    ng = _pcapng(frames, e=">")

    # Execute
    whole, summary = read_pcap(path)
    batched, batched_summary = read_pcap(path, batch_bytes=batch_bytes)
    ng_whole, _ = parse_capture(ng)
    reader = CaptureReader(ng, batch_bytes=batch_bytes)
    ng_batches = list(reader)

    # Assert
    assert batched_summary == summary
    for name in ("timestamp", "length", "src_mac", "dst_mac", "src_ip", "dst_ip", "protocol", "src_port"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(whole, name))
        np.testing.assert_array_equal(getattr(PacketTable.concat(ng_batches), name), getattr(ng_whole, name))
    assert len(ng_batches) > (1 if batch_bytes < 65536 else 0)


def test_reader_arguments_and_files_are_checked(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="batch_bytes must be a positive integer"):
        CaptureReader(b"", batch_bytes=0)
    with pytest.raises(ConfigError, match="max_decompressed_bytes must be a positive integer"):
        CaptureReader(b"", max_decompressed_bytes=-1)
    with pytest.raises(DataError, match=r"missing\.pcap: file not found"):
        read_pcap(tmp_path / "missing.pcap")
    with pytest.raises(DataError, match="cannot open"):
        read_pcap(tmp_path)
    reader = CaptureReader(shipped_file(SYN))
    list(reader)
    with pytest.raises(DataError, match="iterated only once"):
        list(reader)
