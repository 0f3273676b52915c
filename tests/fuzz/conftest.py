"""Seeds and mutators of the reader fuzz tests: real shipped captures and tables, structure-aware damage.

The mutators take a ``draw(lo, hi)`` function returning an int in ``[lo, hi]``, so the same code runs under
Hypothesis (``tests/fuzz``, a bounded number of cases in CI) and under a seeded NumPy generator
(``benchmarks/fuzz_readers.py``, 10,000 cases), which loads this file by path.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fediot.data.paths import shipped_file

Draw = Callable[[int, int], int]

FLOODS = ("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz", "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz")
SENTINEL_MEMBERS = (
    "captures_IoT-Sentinel/D-LinkSiren/Setup-A-1-STA.pcap",
    "captures_IoT-Sentinel/HueBridge/Setup-A-1-STA.pcap",
    "captures_IoT-Sentinel/Aria/Setup-A-1-STA.pcap",
    "captures_IoT-Sentinel/EdimaxCam1/Setup-A-1-STA.pcap",
)
SEED_BYTES = 48 * 1024  # each seed keeps the whole records of its capture's first 48 KiB
_U32_VALUES = (
    0, 1, 3, 4, 8, 11, 12, 13, 16, 19, 20, 24, 27, 28, 31, 32, 33, 0x7FFF, 0xFFFF, 0x10000, 1 << 18,
    (1 << 18) + 1, 1 << 24, (1 << 24) + 4, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF,
)  # fmt: skip


@dataclass(frozen=True, slots=True, repr=False)
class Seed:
    """One real capture (or its pcapng conversion) to mutate: bytes, record/block spans, byte order."""

    name: str
    origin: str  # the pcap seed it was converted from (its own name for a pcap)
    data: bytes
    units: tuple[tuple[int, int], ...]
    big_endian: bool
    pcapng: bool

    def __repr__(self) -> str:
        return f"Seed({self.name!r})"


def _pcap_records(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each whole record of a little-endian microsecond pcap."""
    out = []
    off = 24
    while off + 16 <= len(data):
        (caplen,) = struct.unpack_from("<I", data, off + 8)
        if off + 16 + caplen > len(data):
            break
        out.append((off, off + 16 + caplen))
        off += 16 + caplen
    return out


def head_of_pcap(data: bytes, limit: int = SEED_BYTES) -> bytes:
    """The file header and the whole records within the first ``limit`` bytes of a pcap."""
    end = 24
    for _, stop in _pcap_records(data):
        if stop > limit:
            break
        end = stop
    return data[:end]


def pcap_to_pcapng(data: bytes, *, big_endian: bool = False, tsresol: int = 6, interfaces: int = 1) -> bytes:
    """Convert a little-endian microsecond pcap to pcapng (our writer: either byte order, any resolution).

    Records go round-robin over ``interfaces`` identical interface blocks (all of the pcap's link type);
    the timestamp resolution is ``10**-tsresol`` s (written as the ``if_tsresol`` option unless it is 6).
    """
    e = ">" if big_endian else "<"
    (linktype,) = struct.unpack_from("<I", data, 20)

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    opts = b""
    if tsresol != 6:
        opts = struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + b"\x00" * 3 + struct.pack(e + "HH", 0, 0)
    for _ in range(interfaces):
        out.append(block(1, struct.pack(e + "HHI", linktype, 0, 65535) + opts))
    for i, (start, stop) in enumerate(_pcap_records(data)):
        sec, usec, caplen, wire = struct.unpack_from("<IIII", data, start)
        ticks = (sec * 1_000_000 + usec) * 10**tsresol // 1_000_000
        frame = data[start + 16 : stop]
        body = struct.pack(e + "IIIII", i % interfaces, ticks >> 32, ticks & 0xFFFFFFFF, caplen, wire) + frame
        out.append(block(6, body))
    return b"".join(out)


def pcapng_blocks(data: bytes, big_endian: bool) -> list[tuple[int, int]]:
    """(start, end) of each block of a well-formed pcapng."""
    out = []
    off = 0
    while off + 12 <= len(data):
        (blen,) = struct.unpack_from(">I" if big_endian else "<I", data, off + 4)
        out.append((off, off + blen))
        off += blen
    return out


def load_seeds() -> list[Seed]:
    """The fuzz seeds: 2 floods and 4 IoT Sentinel captures (heads), each as pcap and 3 pcapng variants."""
    pcaps = {
        rel.split("/")[-1]: head_of_pcap(gzip.decompress(shipped_file(rel).read_bytes())) for rel in FLOODS
    }
    with tarfile.open(shipped_file("iot_sentinel/captures_IoT-Sentinel.tar.gz"), "r:gz") as tar:
        for member in SENTINEL_MEMBERS:
            fh = tar.extractfile(member)
            assert fh is not None
            pcaps[member.split("/", 1)[1].replace("/", "_")] = head_of_pcap(fh.read())
    seeds = []
    for name, pcap in sorted(pcaps.items()):
        seeds.append(Seed(name, name, pcap, tuple(_pcap_records(pcap)), False, False))
        for big, res, ifaces in ((False, 6, 1), (True, 9, 1), (False, 3, 2)):
            ng = pcap_to_pcapng(pcap, big_endian=big, tsresol=res, interfaces=ifaces)
            tag = f"{'be' if big else 'le'}-ts{res}-if{ifaces}"
            seeds.append(Seed(f"{name}.{tag}.pcapng", name, ng, tuple(pcapng_blocks(ng, big)), big, True))
    return seeds


def _boundary(units: tuple[tuple[int, int], ...], draw: Draw) -> int:
    if not units:
        return 0
    start, stop = units[draw(0, len(units) - 1)]
    return start if draw(0, 1) else stop


def _idb(seed: Seed, draw: Draw) -> bytes:
    """A (usually malformed) extra interface description block in the seed's byte order."""
    e = ">" if seed.big_endian else "<"
    linktype = (1, 0, 101, 127, 276, 0xFFFF)[draw(0, 5)]
    opts = struct.pack(e + "HH", (9, 14, 2, 0)[draw(0, 3)], draw(0, 40)) + bytes(draw(0, 12))
    body = (struct.pack(e + "HHI", linktype, 0, 65535) + opts)[: draw(0, 16 + len(opts))]
    body += b"\x00" * (-len(body) % 4)
    blen = len(body) + 12 if draw(0, 2) else (8, 12, 16, 20, 24, 0xFFFF)[draw(0, 5)]
    return struct.pack(e + "II", 1, blen) + body + struct.pack(e + "I", len(body) + 12)


def mutate_capture(seed: Seed, draw: Draw) -> bytes:
    """Apply 1-3 random structure-aware mutations to a capture seed; maybe gzip it (and damage the gzip)."""
    buf = bytearray(seed.data)
    units = seed.units
    e = ">" if seed.big_endian else "<"
    for _ in range(draw(1, 3)):
        op = draw(0, 9)
        n = len(buf)
        if op == 0 and n:  # flip 1-8 bits
            for _ in range(draw(1, 8)):
                buf[draw(0, n - 1)] ^= 1 << draw(0, 7)
        elif op == 1:  # truncate anywhere
            del buf[draw(0, n) :]
        elif op == 2:  # truncate near a record/block boundary
            del buf[max(0, min(n, _boundary(units, draw) + draw(-16, 16))) :]
        elif op == 3 and units:  # corrupt a length field (pcap caplen/wirelen; pcapng block/trailer/caplen)
            start, stop = units[draw(0, len(units) - 1)]
            fields = (4, stop - start - 4, 20, 24) if seed.pcapng else (8, 12)
            pos = start + fields[draw(0, len(fields) - 1)]
            if pos + 4 <= n:
                value = _U32_VALUES[draw(0, len(_U32_VALUES) - 1)]
                buf[pos : pos + 4] = struct.pack(e + "I", value)
        elif op == 4:  # insert garbage at a boundary or anywhere
            pos = _boundary(units, draw) if draw(0, 1) else draw(0, n)
            buf[pos:pos] = bytes(draw(0, 255) for _ in range(draw(1, 64)))
        elif op == 5 and n:  # delete a span
            pos = draw(0, n - 1)
            del buf[pos : pos + draw(1, 64)]
        elif op == 6 and units:  # duplicate a record/block at another boundary
            start, stop = units[draw(0, len(units) - 1)]
            chunk = bytes(buf[start:stop])
            pos = min(_boundary(units, draw), len(buf))
            buf[pos:pos] = chunk
        elif op == 7 and n:  # overwrite header bytes of the file or of a record/block
            base = units[draw(0, len(units) - 1)][0] if units and draw(0, 2) else 0
            for _ in range(draw(1, 4)):
                pos = base + draw(0, 31)
                if pos < len(buf):
                    buf[pos] = (0x00, 0xFF, 0x7F, 0x80, draw(0, 255))[draw(0, 4)]
        elif op == 8 and len(units) >= 2:  # swap two records/blocks
            a, b = sorted((units[draw(0, len(units) - 1)], units[draw(0, len(units) - 1)]))
            if a[1] <= b[0] and b[1] <= len(buf):
                buf[a[0] : b[1]] = buf[b[0] : b[1]] + buf[a[1] : b[0]] + buf[a[0] : a[1]]
        elif op == 9:  # pcapng: insert an extra (often malformed) interface block; pcap: change the link type
            if seed.pcapng:
                pos = min(_boundary(units, draw), len(buf))
                buf[pos:pos] = _idb(seed, draw)
            elif n >= 24:
                buf[20:24] = struct.pack("<I", (0, 1, 101, 113, 127, 228, 229, 276, 0x10000001)[draw(0, 8)])
        if len(buf) != len(seed.data):
            units = ()  # offsets are stale after a resize
    out = bytes(buf)
    wrap = draw(0, 5)
    if wrap >= 4:  # gzip it; maybe damage the compressed stream
        out = gzip.compress(out, compresslevel=1, mtime=0)
        if wrap == 5 and out:
            cut = draw(0, 2)
            if cut == 0:
                out = out[: draw(0, len(out))]
            elif cut == 1:
                pos = draw(0, len(out) - 1)
                out = out[:pos] + bytes([out[pos] ^ (1 << draw(0, 7))]) + out[pos + 1 :]
            else:
                out += bytes(draw(0, 255) for _ in range(draw(1, 16)))
    return out


@pytest.fixture(scope="session")
def capture_seeds() -> list[Seed]:
    """Fuzz seeds: real shipped captures (heads) as pcap and as pcapng in three variants."""
    return load_seeds()


@pytest.fixture(scope="session")
def mutate() -> Callable[[Seed, Draw], bytes]:
    """The :func:`mutate_capture` mutator."""
    return mutate_capture


@pytest.fixture(scope="session")
def to_pcapng() -> Callable[..., bytes]:
    """The :func:`pcap_to_pcapng` converter."""
    return pcap_to_pcapng


@pytest.fixture(scope="session")
def make_gzip_bomb() -> Callable[[bytes, int], bytes]:
    """The :func:`gzip_bomb` builder."""
    return gzip_bomb


def gzip_bomb(header: bytes, total: int) -> bytes:
    """A small gzip of ``header`` followed by zero bytes up to ``total`` decompressed bytes."""
    out = io.BytesIO()
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out.write(comp.compress(header))
    chunk = bytes(1 << 20)
    left = total - len(header)
    while left > 0:
        out.write(comp.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    out.write(comp.flush())
    return out.getvalue()
