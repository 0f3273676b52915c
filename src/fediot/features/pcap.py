"""Read pcap/pcapng captures (optionally gzipped) into columnar packet tables, in bounded memory."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fediot.errors import CaptureError, ConfigError, DataError

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "LINKTYPE_ETHERNET",
    "MAX_DECOMPRESSED_BYTES",
    "PROTO_ARP",
    "PROTO_ICMP",
    "PROTO_OTHER",
    "PROTO_TCP",
    "PROTO_UDP",
    "SKIP_REASONS",
    "SUPPORTED_LINKTYPES",
    "CaptureReader",
    "PacketTable",
    "ReadSummary",
    "parse_capture",
    "read_pcap",
]

LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_LINKTYPE_LINUX_SLL = 113
_LINKTYPE_IPV4 = 228
_LINKTYPE_IPV6 = 229
_LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES: dict[int, str] = {
    LINKTYPE_ETHERNET: "Ethernet",
    _LINKTYPE_RAW: "raw IP (no MAC addresses: both MACs are 0)",
    _LINKTYPE_LINUX_SLL: "Linux cooked v1 (source MAC from the header, destination MAC 0)",
    _LINKTYPE_IPV4: "raw IPv4 (MACs 0)",
    _LINKTYPE_IPV6: "raw IPv6 (MACs 0)",
    _LINKTYPE_LINUX_SLL2: "Linux cooked v2 (source MAC from the header, destination MAC 0)",
}

PROTO_OTHER = 0
"""Neither TCP, UDP, IPv4 ICMP nor ARP (IGMP, ICMPv6, later IP fragments, non-IP layer 2, ...)."""
PROTO_TCP = 1
PROTO_UDP = 2
PROTO_ICMP = 3
"""IPv4 ICMP only (Kitsune's convention: ICMPv6 counts as "other")."""
PROTO_ARP = 4
"""Ethernet/IPv4 ARP; ``src_ip``/``dst_ip`` hold the ARP sender/target protocol addresses."""

# status codes of the numba decoder -> reason names (0 = decoded)
SKIP_REASONS: tuple[str, ...] = (
    "ok",
    "short_link_header",
    "short_ip_header",
    "bad_ip_header",
    "short_l4_header",
    "short_arp",
    "caplen_exceeds_wire_length",
    "implausible_wire_length",
)
"""Why a packet record is skipped (``ReadSummary.skipped`` keys), besides ``truncated_record`` and
``truncated_gzip``; ``implausible_wire_length``: an original length above 256 KiB (a corrupt record header
field that would otherwise feed the size statistics)."""
_MAX_CAPLEN = 1 << 18  # 256 KiB: larger than any real snaplen; more means a corrupt record header
_MAX_BLOCK_LEN = 1 << 24  # 16 MiB: a pcapng block (options, name resolution, secrets) above this is corrupt

MAX_DECOMPRESSED_BYTES = 2 << 30
"""Default cap (2 GiB) on the decompressed size of a gzipped capture; more is refused with a
:class:`~fediot.errors.CaptureError` (``max_decompressed_bytes=`` of the readers raises it). The largest
shipped capture decompresses to 3.0 MB; 2 GiB is ~30 million minimum-size packets, whose packet table
(74 bytes a packet) already needs ~2.2 GiB."""

DEFAULT_BATCH_BYTES = 16 << 20
"""Capture bytes framed and decoded per batch (16 MiB): see :class:`CaptureReader` for the memory bound."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's gzip container mode: checks the CRC-32 and the length
_GZIP_INPUT_CHUNK = 1 << 20
_SHB_TYPE = 0x0A0D0D0A
_BYTE_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class PacketTable:
    """Columnar parsed packets: one row per packet, no Python object per packet.

    Addresses are integers: a MAC is the 48-bit big-endian value in a ``uint64``; an IP address is two
    ``uint64`` words (high, low) of the 128-bit value (IPv4: high word 0, low word the 32-bit address).
    Builders may rewrite any column (e.g. MACs, IPs, timestamps of attack packets) and pass the table to
    :func:`fediot.features.extract_features`.

    Parameters
    ----------
    timestamp : ndarray of shape (n_packets,), float64
        Capture time in seconds since the epoch.
    length : ndarray of shape (n_packets,), int64
        Frame length on the wire (bytes), the size Kitsune feeds its statistics.
    src_mac, dst_mac : ndarray of shape (n_packets,), uint64
        Link-layer addresses (0 where the link type has none).
    src_ip, dst_ip : ndarray of shape (n_packets, 2), uint64
        Network-layer addresses (ARP: sender/target protocol addresses; 0 when ``ip_version`` is 0).
    ip_version : ndarray of shape (n_packets,), uint8
        4, 6, or 0 for packets without an IP/ARP address (they are keyed by MAC, as in Kitsune).
    protocol : ndarray of shape (n_packets,), uint8
        One of ``PROTO_OTHER``, ``PROTO_TCP``, ``PROTO_UDP``, ``PROTO_ICMP``, ``PROTO_ARP``.
    src_port, dst_port : ndarray of shape (n_packets,), int32
        TCP/UDP ports; -1 for other protocols.
    """

    timestamp: NDArray[np.float64]
    length: NDArray[np.int64]
    src_mac: NDArray[np.uint64]
    dst_mac: NDArray[np.uint64]
    src_ip: NDArray[np.uint64]
    dst_ip: NDArray[np.uint64]
    ip_version: NDArray[np.uint8]
    protocol: NDArray[np.uint8]
    src_port: NDArray[np.int32]
    dst_port: NDArray[np.int32]

    def __post_init__(self) -> None:
        n = self.timestamp.shape[0]
        for name, dtype, ndim in _COLUMNS:
            col = getattr(self, name)
            if not isinstance(col, np.ndarray) or col.dtype != dtype:
                raise DataError(f"PacketTable.{name} must be a numpy array of dtype {np.dtype(dtype)}")
            expected = (n,) if ndim == 1 else (n, 2)
            if col.shape != expected:
                raise DataError(f"PacketTable.{name} has shape {col.shape}, expected {expected}")

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @classmethod
    def empty(cls) -> PacketTable:
        """Return a table with no packets."""
        return cls(**{name: np.zeros((0,) if nd == 1 else (0, 2), dtype=dt) for name, dt, nd in _COLUMNS})

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> PacketTable:
        """Return the rows selected by an integer index or boolean mask, of shape (n_selected,)."""
        return PacketTable(
            **{name: np.ascontiguousarray(getattr(self, name)[index]) for name, _, _ in _COLUMNS}
        )

    @staticmethod
    def concat(tables: Sequence[PacketTable]) -> PacketTable:
        """Concatenate tables row-wise, in the given order."""
        if not tables:
            return PacketTable.empty()
        return PacketTable(
            **{name: np.concatenate([getattr(t, name) for t in tables]) for name, _, _ in _COLUMNS}
        )

    def time_order(self) -> NDArray[np.intp]:
        """Return the stable permutation, of shape (n_packets,), that sorts packets by timestamp."""
        return np.argsort(self.timestamp, kind="stable")


_COLUMNS: tuple[tuple[str, type[np.generic], int], ...] = (
    ("timestamp", np.float64, 1),
    ("length", np.int64, 1),
    ("src_mac", np.uint64, 1),
    ("dst_mac", np.uint64, 1),
    ("src_ip", np.uint64, 2),
    ("dst_ip", np.uint64, 2),
    ("ip_version", np.uint8, 1),
    ("protocol", np.uint8, 1),
    ("src_port", np.int32, 1),
    ("dst_port", np.int32, 1),
)


@dataclass(frozen=True, slots=True)
class ReadSummary:
    """What reading one capture produced.

    Parameters
    ----------
    path : str
        The file read.
    format : str
        ``"pcap"`` or ``"pcapng"``.
    linktype : int
        Link-layer header type (1 = Ethernet).
    num_records : int
        Packet records found in the file (a truncated final record included).
    num_packets : int
        Packets decoded into the table (``num_records`` minus the skipped ones).
    skipped : dict of str to int
        What is not in the table, by reason: a reason of :data:`SKIP_REASONS` per malformed packet,
        ``"truncated_record"`` for a final record cut short, ``"truncated_gzip"`` for a gzip stream that
        ends early (the capture is read up to where it ends).
    """

    path: str
    format: str
    linktype: int
    num_records: int
    num_packets: int
    skipped: dict[str, int] = field(default_factory=dict)


class _ByteStream:
    """The bytes of a capture, gunzipped on the fly when they start with the gzip magic, with a size cap.

    ``read(n)`` returns ``n`` bytes, or fewer only at the end of the stream; memory use is ``n`` plus one
    compressed input chunk.
    """

    def __init__(self, raw: BinaryIO, name: str, max_decompressed_bytes: int) -> None:
        self._raw = raw
        self._name = name
        self._cap = max_decompressed_bytes
        self.position = 0
        """Bytes of the (decompressed) stream delivered so far."""
        self.truncated_gzip = False
        """True once a gzip stream ended before its end-of-stream marker."""
        first = self._read_raw(2)
        self.gzipped = first == _GZIP_MAGIC
        self._pending = first  # raw bytes read ahead (plain input) or compressed input not yet fed
        self._inflate = zlib.decompressobj(wbits=_GZIP_WBITS) if self.gzipped else None
        self._eof = False

    def _read_raw(self, n: int) -> bytes:
        try:
            return self._raw.read(n)
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror or exc})", path=self._name) from None

    def read(self, n: int) -> bytes:
        """Return the next ``n`` bytes (fewer only at the end of the stream).

        Raises
        ------
        CaptureError
            If the gzip stream is corrupt, or decompresses to more than the cap.
        """
        if self._inflate is None:
            head, self._pending = self._pending[:n], self._pending[n:]
            data = head + self._read_raw(n - len(head)) if len(head) < n else head
            self.position += len(data)
            return data
        parts: list[bytes] = []
        got = 0
        while got < n and not self._eof:
            chunk = self._inflate_some(min(n - got, self._cap - self.position + 1))
            if chunk:
                parts.append(chunk)
                got += len(chunk)
                self.position += len(chunk)
                if self.position > self._cap:
                    raise CaptureError(
                        f"the gzip stream decompresses to more than {self._cap} bytes, the cap "
                        "(max_decompressed_bytes, default fediot.features.pcap.MAX_DECOMPRESSED_BYTES = "
                        f"{MAX_DECOMPRESSED_BYTES}): a decompression bomb, or a capture to split or to "
                        "read with a higher cap",
                        path=self._name,
                        offset=self._cap,
                    )
        return b"".join(parts)

    def _inflate_some(self, limit: int) -> bytes:
        """Decompress up to ``limit`` bytes (possibly none: call again until ``_eof``)."""
        assert self._inflate is not None
        if self._inflate.eof:  # a member ended: skip zero padding, then another member or the end
            rest = self._inflate.unused_data.lstrip(b"\x00")
            while not rest:
                more = self._read_raw(_GZIP_INPUT_CHUNK)
                if not more:
                    self._eof = True
                    return b""
                rest = more.lstrip(b"\x00")
            self._inflate = zlib.decompressobj(wbits=_GZIP_WBITS)
            self._pending = rest
        data = self._inflate.unconsumed_tail or self._pending or self._read_raw(_GZIP_INPUT_CHUNK)
        self._pending = b""
        try:
            out = self._inflate.decompress(data, limit)  # with no input: output zlib still holds
            if not data and not out and not self._inflate.eof:
                self.truncated_gzip = True
                self._eof = True
            return out
        except zlib.error as exc:
            raise CaptureError(
                f"corrupt gzip stream ({exc}) after {self.position} decompressed bytes",
                path=self._name,
                offset=self.position,
            ) from None


class CaptureReader:
    """Read a pcap/pcapng capture (gzipped or not) as a sequence of packet batches, in bounded memory.

    Iterate over the reader to get :class:`PacketTable` batches in file order (empty batches are not
    yielded); after the loop, :attr:`summary` holds the counts of the whole capture. A reader can be
    iterated once.

    Memory, whatever the file size: at most about ``2 * batch_bytes`` of capture bytes (plus one pcapng
    block, at most 16 MiB) and the columns of one batch, at most ``74 * batch_bytes / 16`` bytes (a
    record is at least 16 bytes, a packet row 74 bytes) with their temporaries; a gzip stream adds one
    1 MiB compressed chunk. For the default 16 MiB batches the worst case (zero-length records) measured
    ~170 MiB (``benchmarks/fuzz_readers.py``). A gzip stream decompressing to more than
    ``max_decompressed_bytes`` is refused. The batches a caller keeps are its own memory.

    Parameters
    ----------
    source : str, Path or bytes
        A capture file, or its content.
    name : str, optional
        Name in messages and in the summary (default: the path, or ``"<bytes>"``).
    batch_bytes : int
        Capture bytes framed and decoded per batch (default :data:`DEFAULT_BATCH_BYTES`).
    max_decompressed_bytes : int
        Cap on the decompressed size of a gzipped capture (default :data:`MAX_DECOMPRESSED_BYTES`).

    Raises
    ------
    ConfigError
        If ``batch_bytes`` or ``max_decompressed_bytes`` is not positive.

    Examples
    --------
    >>> from fediot.data.paths import shipped_file
    >>> reader = CaptureReader(shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz"))
    >>> sum(len(batch) for batch in reader) == reader.summary.num_packets
    True
    """

    def __init__(
        self,
        source: str | Path | bytes,
        *,
        name: str | None = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
    ) -> None:
        if isinstance(batch_bytes, bool) or not isinstance(batch_bytes, int) or batch_bytes < 1:
            raise ConfigError(f"batch_bytes must be a positive integer, got {batch_bytes!r}")
        if (
            isinstance(max_decompressed_bytes, bool)
            or not isinstance(max_decompressed_bytes, int)
            or max_decompressed_bytes < 1
        ):
            raise ConfigError(
                f"max_decompressed_bytes must be a positive integer, got {max_decompressed_bytes!r}"
            )
        self._source = source
        if name is None:
            name = "<bytes>" if isinstance(source, bytes) else str(source)
        self.name = name
        self._batch_bytes = max(batch_bytes, 32)
        self._cap = max_decompressed_bytes
        self._format = ""
        self._linktype = LINKTYPE_ETHERNET
        self._num_records = 0
        self._num_packets = 0
        self._skipped: dict[str, int] = {}
        self._started = False

    @property
    def summary(self) -> ReadSummary:
        """Counts of what was read so far (of the whole capture once the iteration has ended)."""
        return ReadSummary(
            path=self.name, format=self._format, linktype=self._linktype, num_records=self._num_records,
            num_packets=self._num_packets, skipped=dict(self._skipped),
        )  # fmt: skip

    def __iter__(self) -> Iterator[PacketTable]:
        if self._started:
            raise DataError("a CaptureReader can be iterated only once", path=self.name)
        self._started = True
        return self._batches()

    def _open(self) -> BinaryIO:
        if isinstance(self._source, bytes):
            return io.BytesIO(self._source)
        path = Path(self._source)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise DataError("file not found", path=self.name) from None
        except OSError as exc:
            raise DataError(f"cannot open ({exc.strerror or exc})", path=self.name) from None

    def _batches(self) -> Iterator[PacketTable]:
        with self._open() as raw:
            stream = _ByteStream(raw, self.name, self._cap)
            head = stream.read(self._batch_bytes)
            if not head:
                what = "truncated gzip stream holding no bytes" if stream.truncated_gzip else "empty file"
                raise CaptureError(f"{what}: not a pcap/pcapng capture", path=self.name)
            magic = head[:4]
            if magic in _PCAP_MAGICS:
                yield from self._read_pcap(stream, head)
            elif magic == _PCAPNG_MAGIC:
                yield from self._read_pcapng(stream, head)
            else:
                raise CaptureError(
                    f"not a pcap or pcapng capture (magic 0x{magic.hex()}; expected a1b2c3d4, a1b23c4d, "
                    "0a0d0d0a or a gzip of one)",
                    path=self.name,
                    offset=0,
                )
            if stream.truncated_gzip:
                self._count("truncated_gzip")

    def _count(self, reason: str, num: int = 1) -> None:
        self._skipped[reason] = self._skipped.get(reason, 0) + num

    def _fail(self, message: str, offset: int, stream: _ByteStream) -> NoReturn:
        if stream.truncated_gzip:
            message += " (the gzip stream ends early)"
        raise CaptureError(message, path=self.name, offset=offset)

    def _check_linktype(self, linktype: int, offset: int, stream: _ByteStream) -> None:
        if linktype not in SUPPORTED_LINKTYPES:
            self._fail(
                f"unsupported link type {linktype} (supported: "
                + ", ".join(f"{k} {v}" for k, v in SUPPORTED_LINKTYPES.items())
                + ")",
                offset,
                stream,
            )

    def _decode(
        self,
        buf: NDArray[np.uint8],
        offsets: NDArray[np.int64],
        caplens: NDArray[np.int64],
        ts: NDArray[np.float64],
        wire: NDArray[np.int64],
        linktype: int,
    ) -> PacketTable:
        """Decode the headers of one batch of framed records; count the skipped ones."""
        n = ts.shape[0]
        cols = _alloc_columns(n)
        status = np.zeros(n, dtype=np.uint8)
        _decode_headers(
            buf, offsets, caplens, wire, linktype, status,
            cols["src_mac"], cols["dst_mac"], cols["src_ip"], cols["dst_ip"],
            cols["ip_version"], cols["protocol"], cols["src_port"], cols["dst_port"],
        )  # fmt: skip
        cols["timestamp"] = ts
        cols["length"] = wire
        counts = np.bincount(status, minlength=len(SKIP_REASONS))
        for code in range(1, len(SKIP_REASONS)):
            if counts[code]:
                self._count(SKIP_REASONS[code], int(counts[code]))
        table = PacketTable(**cols)
        if counts[0] != n:
            table = table.take(status == 0)
        self._num_records += n
        self._num_packets += len(table)
        return table

    def _read_pcap(self, stream: _ByteStream, buf: bytes) -> Iterator[PacketTable]:
        """Classic pcap: the 24-byte file header, then records framed by numba over each batch's bytes."""
        self._format = "pcap"
        while len(buf) < 24:
            more = stream.read(self._batch_bytes)
            if not more:
                self._fail(f"truncated pcap file header: expected 24 bytes, found {len(buf)}", 0, stream)
            buf += more
        endian, divisor = _PCAP_MAGICS[buf[:4]]
        big = endian == ">"
        self._linktype = struct.unpack_from(endian + "I", buf, 20)[0] & 0x0FFFFFFF  # upper bits: FCS
        self._check_linktype(self._linktype, 20, stream)
        base = 0  # stream offset of buf[0]
        start = 24
        while True:
            arr = np.frombuffer(buf, dtype=np.uint8)
            n, stop, bad_offset, bad_len = _count_pcap_records(arr, big, start)
            if bad_offset >= 0:
                self._fail(
                    f"corrupt record header (record {self._num_records + n + 1}): captured length "
                    f"{int(bad_len)} exceeds {_MAX_CAPLEN} bytes; the rest of the file cannot be read",
                    base + bad_offset,
                    stream,
                )
            if n:
                ts = np.empty(n, np.float64)
                wire = np.empty(n, np.int64)
                offsets = np.empty(n, np.int64)
                caplens = np.empty(n, np.int64)
                _fill_pcap_records(arr, big, divisor, start, ts, wire, offsets, caplens)
                table = self._decode(arr, offsets, caplens, ts, wire, self._linktype)
                if len(table):
                    yield table
            nxt = self._refill(stream, buf, stop)
            if nxt is None:
                return
            base, buf, start = base + stop, nxt, 0

    def _refill(
        self, stream: _ByteStream, buf: bytes, used: int, on_tail: Callable[[], None] | None = None
    ) -> bytes | None:
        """Return ``buf``'s unread tail plus the next read, or None at the end of the stream.

        At the end, unread bytes are a truncated final record: counted (``on_tail`` may refuse it first).
        """
        more = stream.read(self._batch_bytes)
        if more:
            return buf[used:] + more
        if used < len(buf):
            if on_tail is not None:
                on_tail()
            self._count("truncated_record")
            self._num_records += 1
        return None

    def _read_pcapng(self, stream: _ByteStream, buf: bytes) -> Iterator[PacketTable]:
        """pcapng: walk the blocks (one struct call per block); decode each batch's packets with numba."""
        self._format = "pcapng"
        section = _Section()
        base = 0  # stream offset of buf[0]
        off = 0  # offset in buf of the next block
        while True:
            batch = _Batch()
            size = len(buf)
            while size - off >= 12:
                blen = self._frame_block(buf, off, base, section, stream)
                if blen > size - off:
                    break  # the block continues in the next read
                self._read_block(buf, off, blen, base, section, batch, stream)
                off += blen
            if batch.ts:
                table = self._decode(
                    np.frombuffer(buf, dtype=np.uint8), np.asarray(batch.offsets, np.int64),
                    np.asarray(batch.caplens, np.int64), np.asarray(batch.ts, np.float64),
                    np.asarray(batch.wire, np.int64), self._linktype,
                )  # fmt: skip
                if len(table):
                    yield table
            if section.num_blocks == 0:  # a final fragment with no section header before it is an error
                message = f"truncated pcapng section header: {size - off} bytes, expected at least 28"
                nxt = self._refill(stream, buf, off, partial(self._fail, message, base + off, stream))
            else:
                nxt = self._refill(stream, buf, off)
            if nxt is None:
                return
            base, buf, off = base + off, nxt, 0

    def _frame_block(self, buf: bytes, off: int, base: int, section: _Section, stream: _ByteStream) -> int:
        """Return the length of the block at ``off`` (at least 12 bytes of it are in ``buf``), checked."""
        (btype,) = struct.unpack_from("<I", buf, off)  # the section magic reads the same in both orders
        if btype == _SHB_TYPE:
            bom = buf[off + 8 : off + 12]
            if section.end is None:
                if bom not in _BYTE_ORDERS:
                    self._fail(
                        f"pcapng section header: byte-order magic 0x{bom.hex()}, expected 1a2b3c4d "
                        "(either byte order)",
                        base + off + 8,
                        stream,
                    )
                section.start(bom)
            elif bom != section.bom:
                self._fail("pcapng section changes byte order (unsupported)", base + off + 8, stream)
        btype, blen = section.header.unpack_from(buf, off)
        if blen < 12 or blen % 4 or blen > _MAX_BLOCK_LEN:
            self._fail(
                f"corrupt pcapng block (type 0x{btype:x}): block length {blen}, expected a multiple of 4 "
                f"from 12 to {_MAX_BLOCK_LEN}; the rest of the file cannot be read",
                base + off,
                stream,
            )
        if btype == _SHB_TYPE and blen < 28:
            self._fail(f"pcapng section header block length {blen}, expected at least 28", base + off, stream)
        return int(blen)

    def _read_block(
        self, buf: bytes, off: int, blen: int, base: int, section: _Section, batch: _Batch,
        stream: _ByteStream,
    ) -> None:  # fmt: skip
        """Interpret one complete block; append a packet block's record to ``batch``."""
        section.num_blocks += 1
        u32 = section.u32
        btype = u32.unpack_from(buf, off)[0]
        (trailer,) = u32.unpack_from(buf, off + blen - 4)
        if trailer != blen:
            self._fail(
                f"corrupt pcapng block (type 0x{btype:x}): trailing block length {trailer} differs from the "
                f"leading {blen}",
                base + off + blen - 4,
                stream,
            )
        if btype == _SHB_TYPE:  # a new section: interface numbering restarts
            section.interfaces = []
        elif btype == 1:  # interface description block
            if blen < 20:
                self._fail(
                    f"interface description block length {blen}, expected at least 20", base + off, stream
                )
            linktype = section.u16.unpack_from(buf, off + 8)[0]
            self._check_linktype(linktype, base + off + 8, stream)
            if section.linktypes and linktype not in section.linktypes:
                self._fail(
                    f"pcapng file mixes link types {sorted({*section.linktypes, linktype})} (unsupported)",
                    base + off + 8,
                    stream,
                )
            section.linktypes.add(linktype)
            self._linktype = linktype
            divisor, tsoffset = self._idb_options(buf, off + 16, off + blen - 4, base, section, stream)
            section.interfaces.append((divisor, tsoffset))
        elif btype in (6, 2):  # enhanced packet block / obsolete packet block
            kind = "enhanced packet block" if btype == 6 else "packet block"
            if blen < 32:
                self._fail(f"{kind} length {blen}, expected at least 32", base + off, stream)
            iface, ts_hi, ts_lo, caplen, pkt_len = section.epb.unpack_from(buf, off + 8)
            if btype == 2:
                iface &= 0xFFFF
            if iface >= len(section.interfaces):
                self._fail(
                    f"{kind} names interface {iface}; the section describes {len(section.interfaces)}",
                    base + off,
                    stream,
                )
            divisor, tsoff = section.interfaces[iface]
            if caplen > blen - 32:
                self._fail(
                    f"corrupt {kind}: captured length {caplen} exceeds its {blen - 32} data bytes",
                    base + off + 20,
                    stream,
                )
            batch.ts.append(tsoff + ((ts_hi << 32) | ts_lo) / divisor)
            batch.wire.append(pkt_len)
            batch.offsets.append(off + 28)
            batch.caplens.append(caplen)
        elif btype == 3:  # simple packet block: no timestamp
            self._fail("pcapng simple packet blocks have no timestamps (unsupported)", base + off, stream)

    def _idb_options(
        self, buf: bytes, start: int, stop: int, base: int, section: _Section, stream: _ByteStream
    ) -> tuple[float, float]:
        """Return (timestamp divisor, timestamp offset in s) from an interface block's options."""
        divisor = 1e6
        tsoffset = 0.0
        p = start
        while p + 4 <= stop:
            code, length = section.option.unpack_from(buf, p)
            if code == 0:  # opt_endofopt
                break
            value = p + 4
            if value + length > stop:
                self._fail(
                    f"interface description block option {code}: length {length} runs past the block end",
                    base + p,
                    stream,
                )
            if code == 9 and length >= 1:  # if_tsresol
                val = buf[value]
                divisor = float(2 ** (val & 0x7F)) if val & 0x80 else float(10 ** (val & 0x7F))
            elif code == 14 and length == 8:  # if_tsoffset
                tsoffset = float(section.i64.unpack_from(buf, value)[0])
            p = value + ((length + 3) & ~3)
        return divisor, tsoffset


class _Section:
    """Byte order, interfaces and link types of the pcapng section being read."""

    def __init__(self) -> None:
        self.end: str | None = None
        self.bom = b""
        self.interfaces: list[tuple[float, float]] = []  # timestamp divisor, timestamp offset (s)
        self.linktypes: set[int] = set()  # of every interface in the file
        self.num_blocks = 0  # complete blocks read
        self.start(b"\x4d\x3c\x2b\x1a")
        self.end = None

    def start(self, bom: bytes) -> None:
        """Set the byte order from the first section header's byte-order magic."""
        end = _BYTE_ORDERS[bom]
        self.end = end
        self.bom = bom
        self.header = struct.Struct(end + "II")
        self.u32 = struct.Struct(end + "I")
        self.u16 = struct.Struct(end + "H")
        self.epb = struct.Struct(end + "IIIII")
        self.option = struct.Struct(end + "HH")
        self.i64 = struct.Struct(end + "q")


class _Batch:
    """Records of one pcapng batch: timestamps, wire lengths, data offsets in the buffer, captured lengths."""

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.wire: list[int] = []
        self.offsets: list[int] = []
        self.caplens: list[int] = []


def read_pcap(
    path: str | Path,
    *,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> tuple[PacketTable, ReadSummary]:
    """Read a pcap or pcapng file, gzipped or not (detected by magic number), into a packet table.

    The file is read in batches (see :class:`CaptureReader`): besides the returned table, memory holds
    about two batches of capture bytes. Packets keep the file's order. A final record cut short, a gzip
    stream that ends early and malformed packets are counted in ``summary.skipped``, never fatal.

    Parameters
    ----------
    path : str or Path
        The capture file.
    max_decompressed_bytes : int
        Cap on the decompressed size of a gzipped capture (default :data:`MAX_DECOMPRESSED_BYTES`, 2 GiB).
    batch_bytes : int
        Capture bytes decoded per batch (default :data:`DEFAULT_BATCH_BYTES`); the result does not depend
        on it.

    Returns
    -------
    table : PacketTable
        One row per decoded packet, shape (n_packets,) per column.
    summary : ReadSummary
        Record counts and skipped records by reason.

    Raises
    ------
    DataError
        If the file is missing or unreadable.
    CaptureError
        (a :class:`DataError`, naming the file and the byte offset) If the file is empty, not a capture
        (wrong magic), a corrupt gzip or one decompressing past the cap, has an unsupported or mixed link
        type, or a damaged record header or block (the rest of the file cannot be framed).
    """
    return _read_all(
        CaptureReader(
            Path(path), name=str(path), batch_bytes=batch_bytes, max_decompressed_bytes=max_decompressed_bytes
        )
    )


def parse_capture(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> tuple[PacketTable, ReadSummary]:
    """Parse the bytes of a pcap/pcapng capture (optionally gzipped); see :func:`read_pcap`.

    Parameters
    ----------
    data : bytes
        The file content.
    name : str
        Used in error messages and the summary.
    max_decompressed_bytes : int
        Cap on the decompressed size of gzipped content.

    Returns
    -------
    table : PacketTable
        One row per decoded packet.
    summary : ReadSummary
        Record counts and skipped records by reason.
    """
    return _read_all(CaptureReader(bytes(data), name=name, max_decompressed_bytes=max_decompressed_bytes))


def _read_all(reader: CaptureReader) -> tuple[PacketTable, ReadSummary]:
    tables = list(reader)
    table = tables[0] if len(tables) == 1 else PacketTable.concat(tables)
    return table, reader.summary


def _alloc_columns(n: int) -> dict[str, Any]:
    return {
        "src_mac": np.zeros(n, np.uint64),
        "dst_mac": np.zeros(n, np.uint64),
        "src_ip": np.zeros((n, 2), np.uint64),
        "dst_ip": np.zeros((n, 2), np.uint64),
        "ip_version": np.zeros(n, np.uint8),
        "protocol": np.zeros(n, np.uint8),
        "src_port": np.full(n, -1, np.int32),
        "dst_port": np.full(n, -1, np.int32),
    }


@njit(cache=True)
def _u32(buf: Any, off: int, big: bool) -> int:  # pragma: no cover - compiled
    if big:
        return (
            (int(buf[off]) << 24) | (int(buf[off + 1]) << 16) | (int(buf[off + 2]) << 8) | int(buf[off + 3])
        )
    return (int(buf[off + 3]) << 24) | (int(buf[off + 2]) << 16) | (int(buf[off + 1]) << 8) | int(buf[off])


@njit(cache=True)
def _count_pcap_records(buf: Any, big: bool, start: int) -> tuple[int, int, int, int]:  # pragma: no cover
    """Count complete records from ``start``: (count, end of the last, bad offset or -1, bad length)."""
    size = buf.shape[0]
    off = start
    n = 0
    while off + 16 <= size:
        caplen = _u32(buf, off + 8, big)
        if caplen > _MAX_CAPLEN:
            return n, off, off, caplen
        if off + 16 + caplen > size:
            break
        off += 16 + caplen
        n += 1
    return n, off, -1, 0


@njit(cache=True)
def _fill_pcap_records(
    buf: Any, big: bool, divisor: float, start: int, ts: Any, wire: Any, offsets: Any, caplens: Any
) -> None:  # pragma: no cover - compiled
    off = start
    for i in range(ts.shape[0]):
        ts[i] = _u32(buf, off, big) + _u32(buf, off + 4, big) / divisor
        caplen = _u32(buf, off + 8, big)
        wire[i] = _u32(buf, off + 12, big)
        offsets[i] = off + 16
        caplens[i] = caplen
        off += 16 + caplen


@njit(cache=True)
def _be16(buf: Any, off: int) -> int:  # pragma: no cover - compiled
    return (int(buf[off]) << 8) | int(buf[off + 1])


@njit(cache=True)
def _be_uint(buf: Any, off: int, nbytes: int) -> np.uint64:  # pragma: no cover - compiled
    v = np.uint64(0)
    for k in range(nbytes):
        v = (v << np.uint64(8)) | np.uint64(buf[off + k])
    return v


@njit(cache=True)
def _decode_headers(
    buf: Any, offsets: Any, caplens: Any, wire: Any, linktype: int, status: Any,
    src_mac: Any, dst_mac: Any, src_ip: Any, dst_ip: Any,
    ip_version: Any, protocol: Any, src_port: Any, dst_port: Any,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    for i in range(offsets.shape[0]):
        o = offsets[i]
        c = caplens[i]
        end = o + c
        if c > wire[i]:
            status[i] = 6
            continue
        if wire[i] > _MAX_CAPLEN:
            status[i] = 7
            continue
        # ---- link layer -> (p, ethertype)
        if linktype == 1:
            if c < 14:
                status[i] = 1
                continue
            dst_mac[i] = _be_uint(buf, o, 6)
            src_mac[i] = _be_uint(buf, o + 6, 6)
            etype = _be16(buf, o + 12)
            p = o + 14
            while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and p + 4 <= end:
                etype = _be16(buf, p + 2)
                p += 4
        elif linktype == 113:
            if c < 16:
                status[i] = 1
                continue
            if _be16(buf, o + 4) == 6:
                src_mac[i] = _be_uint(buf, o + 6, 6)
            etype = _be16(buf, o + 14)
            p = o + 16
        elif linktype == 276:
            if c < 20:
                status[i] = 1
                continue
            if buf[o + 11] == 6:
                src_mac[i] = _be_uint(buf, o + 12, 6)
            etype = _be16(buf, o)
            p = o + 20
        else:  # raw IP (101, 228, 229)
            if c < 1:
                status[i] = 1
                continue
            etype = 0x0800 if (buf[o] >> 4) == 4 else (0x86DD if (buf[o] >> 4) == 6 else 0)
            p = o
        # ---- network layer
        l4 = -1
        proto = 0
        if etype == 0x0800:
            if p + 20 > end:
                status[i] = 2
                continue
            ihl = (buf[p] & 0x0F) * 4
            if (buf[p] >> 4) != 4 or ihl < 20:
                status[i] = 3
                continue
            if p + ihl > end:
                status[i] = 2
                continue
            ip_version[i] = 4
            src_ip[i, 1] = _be_uint(buf, p + 12, 4)
            dst_ip[i, 1] = _be_uint(buf, p + 16, 4)
            proto = int(buf[p + 9])
            if (_be16(buf, p + 6) & 0x1FFF) == 0:  # first (or only) fragment carries the L4 header
                l4 = p + ihl
            if proto == 1 and l4 >= 0:
                protocol[i] = 3
                l4 = -1
        elif etype == 0x86DD:
            if p + 40 > end:
                status[i] = 2
                continue
            if (buf[p] >> 4) != 6:
                status[i] = 3
                continue
            ip_version[i] = 6
            src_ip[i, 0] = _be_uint(buf, p + 8, 8)
            src_ip[i, 1] = _be_uint(buf, p + 16, 8)
            dst_ip[i, 0] = _be_uint(buf, p + 24, 8)
            dst_ip[i, 1] = _be_uint(buf, p + 32, 8)
            proto = int(buf[p + 6])
            q = p + 40
            for _ in range(8):  # hop-by-hop, routing, destination options, fragment
                if proto == 0 or proto == 43 or proto == 60:
                    if q + 2 > end:
                        break
                    proto = int(buf[q])
                    q += (int(buf[q + 1]) + 1) * 8
                elif proto == 44:
                    if q + 8 > end:
                        break
                    if (_be16(buf, q + 2) >> 3) != 0:  # not the first fragment
                        q = -1
                        break
                    proto = int(buf[q])
                    q += 8
                else:
                    break
            l4 = q
        elif etype == 0x0806:
            if p + 28 > end:
                status[i] = 5
                continue
            if _be16(buf, p) == 1 and _be16(buf, p + 2) == 0x0800 and buf[p + 4] == 6 and buf[p + 5] == 4:
                ip_version[i] = 4
                protocol[i] = 4
                src_ip[i, 1] = _be_uint(buf, p + 14, 4)
                dst_ip[i, 1] = _be_uint(buf, p + 24, 4)
            continue
        else:
            continue  # other layer-2 protocol: keyed by MAC addresses
        if (proto == 6 or proto == 17) and l4 >= 0:
            if l4 + 4 > end:
                status[i] = 4
                continue
            protocol[i] = 1 if proto == 6 else 2
            src_port[i] = _be16(buf, l4)
            dst_port[i] = _be16(buf, l4 + 2)
