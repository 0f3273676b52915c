"""Live packets: capture from a network interface (Linux AF_PACKET) or follow a growing pcap file.

Both sources yield :class:`~fediot.features.pcap.PacketTable` batches decoded by the same code as
offline captures: each batch of frames is framed as a classic nanosecond pcap in memory and parsed by
:func:`~fediot.features.pcap.parse_capture`, so a batch scored live and the same frames saved and read
back give identical tables (:attr:`LiveCapture.save_to` writes exactly those frames).

:class:`LiveCapture` uses an ``AF_PACKET`` raw socket (Python's :mod:`socket`, no binding to install;
Linux only, needs ``CAP_NET_RAW``): promiscuous, kernel nanosecond timestamps (``SO_TIMESTAMPNS``), an
optional BPF filter compiled by ``tcpdump -ddd`` and attached to the socket before it is bound (no
unfiltered frame slips in), and the kernel's drop counter (``PACKET_STATISTICS``) read on every batch.
"""

from __future__ import annotations

import ctypes
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from fediot.errors import CaptureError, ConfigError, DataError
from fediot.features.pcap import PacketTable, parse_capture

__all__ = ["FollowReader", "LiveCapture", "compile_bpf", "pcap_header"]

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
_PACKET_STATISTICS = 6
_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
_SO_RCVBUFFORCE = 33
_PACKET_OUTGOING = 4
_NS_MAGIC_LE = 0xA1B23C4D
_US_MAGIC_LE = 0xA1B2C3D4
_MAX_FRAME = 262144
_RECORD = struct.Struct("<IIII")
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")


def pcap_header(linktype: int = 1, *, nanoseconds: bool = True, snaplen: int = _MAX_FRAME) -> bytes:
    """Return a little-endian classic pcap file header (24 bytes)."""
    magic = _NS_MAGIC_LE if nanoseconds else _US_MAGIC_LE
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def compile_bpf(expression: str, interface: str) -> list[tuple[int, int, int, int]]:
    """Compile a tcpdump filter expression for ``interface`` into classic BPF instructions.

    Uses ``tcpdump -ddd`` (libpcap's compiler), which must be installed.

    Returns
    -------
    list of (code, jt, jf, k)

    Raises
    ------
    ConfigError
        If tcpdump is missing or rejects the expression (its message is included).
    """
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise ConfigError("--bpf needs tcpdump to compile the filter (apt-get install tcpdump)")
    proc = subprocess.run(
        [tcpdump, "-ddd", "-i", interface, expression], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        message = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise ConfigError(f"--bpf {expression!r}: {message}")
    lines = proc.stdout.split("\n")
    try:
        count = int(lines[0])
        program = [tuple(int(v) for v in line.split()) for line in lines[1 : 1 + count]]
    except (ValueError, IndexError):
        raise ConfigError(f"--bpf {expression!r}: unexpected tcpdump output") from None
    if len(program) != count or any(len(ins) != 4 for ins in program):
        raise ConfigError(f"--bpf {expression!r}: unexpected tcpdump output")
    return [(a, b, c, d) for a, b, c, d in program]


class _Summing:
    """Skip counters summed over batches."""

    def __init__(self) -> None:
        self.skipped: dict[str, int] = {}
        self.num_records = 0

    def add(self, skipped: dict[str, int], records: int) -> None:
        for k, v in skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v
        self.num_records += records


class _CountedSource:
    """The counters both packet sources report: records handed on and records skipped, by reason."""

    _counts: _Summing

    @property
    def num_records(self) -> int:
        """Records (frames) decoded and handed on."""
        return self._counts.num_records

    @property
    def skipped(self) -> dict[str, int]:
        """Records (frames) not decoded, by reason."""
        return dict(self._counts.skipped)


class LiveCapture(_CountedSource):
    """Capture Ethernet frames from ``interface`` and yield them as packet batches.

    Parameters
    ----------
    interface : str
        Network interface name.
    bpf : str, optional
        tcpdump filter expression (compiled by ``tcpdump -ddd``).
    batch_packets : int
        A batch is handed on when it holds this many frames ...
    flush_seconds : float
        ... or when its first frame has waited this long (bounds packet-to-alert latency).
    save_to : str or Path, optional
        Also write every captured frame to this pcap (nanosecond timestamps), as scored.
    include_outgoing : bool
        Also capture frames this host sends on the interface.

    Attributes
    ----------
    kernel_drops : int
        Frames the kernel dropped because the socket buffer was full (``PACKET_STATISTICS``).
    num_records, skipped
        Frames captured, and frames not decoded by reason (as in ``ReadSummary.skipped``).
    """

    def __init__(
        self,
        interface: str,
        *,
        bpf: str | None = None,
        batch_packets: int = 4096,
        flush_seconds: float = 0.005,
        save_to: str | Path | None = None,
        include_outgoing: bool = False,
    ) -> None:
        if not sys.platform.startswith("linux"):
            raise ConfigError("--interface capture uses AF_PACKET sockets: Linux only")
        if batch_packets < 1 or flush_seconds <= 0:
            raise ConfigError("batch_packets must be >= 1 and flush_seconds > 0")
        self.interface = interface
        self.batch_packets = batch_packets
        self.flush_seconds = flush_seconds
        self.include_outgoing = include_outgoing
        self.kernel_drops = 0
        self.kernel_packets = 0
        self._counts = _Summing()
        try:
            ifindex = socket.if_nametoindex(interface)
        except OSError:
            raise ConfigError(f"--interface {interface!r}: no such network interface") from None
        program = compile_bpf(bpf, interface) if bpf else None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise ConfigError(
                f"--interface {interface}: capturing needs CAP_NET_RAW (run as root or grant the capability)"
            ) from None
        self._sock = sock
        try:
            if program is not None:
                self._filter = (ctypes.c_uint64 * len(program))(
                    *[struct.unpack("<Q", struct.pack("<HBBI", *ins))[0] for ins in program]
                )
                fprog = struct.pack("HL", len(program), ctypes.addressof(self._filter))
                sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 << 20)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
            sock.bind((interface, _ETH_P_ALL))
            mreq = struct.pack("iHH8s", ifindex, _PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise DataError(f"cannot capture on {interface}: {exc.strerror or exc}") from None
        self._save: BinaryIO | None = None
        if save_to is not None:
            self._save = Path(save_to).open("wb")  # noqa: SIM115 - open for the capture's lifetime
            self._save.write(pcap_header())

    def _read_stats(self) -> None:
        raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("II", raw)  # reading resets the kernel's counters
        self.kernel_packets += packets
        self.kernel_drops += drops

    def batches(
        self, stop: Callable[[], bool], *, idle_timeout: float | None = None
    ) -> Iterator[PacketTable]:
        """Yield batches until ``stop()`` is true or no frame arrived for ``idle_timeout`` seconds.

        Parameters
        ----------
        stop : callable
            Polled at least every ``flush_seconds`` (e.g. a flag a signal handler sets).
        idle_timeout : float, optional
            End after this long without a frame (default: never).
        """
        cmsg_space = socket.CMSG_SPACE(16)
        records: list[bytes] = []
        first_wait = 0.0
        last_frame = time.monotonic()
        sock = self._sock
        while True:
            now = time.monotonic()
            if records and (len(records) >= self.batch_packets or now - first_wait >= self.flush_seconds):
                yield self._emit(records)
                records = []
            if stop():
                break
            if idle_timeout is not None and now - last_frame >= idle_timeout:
                break
            wait = self.flush_seconds if not records else max(0.0, self.flush_seconds - (now - first_wait))
            ready, _, _ = select.select([sock], [], [], wait)
            if not ready:
                continue
            while len(records) < self.batch_packets:
                try:
                    data, anc, _flags, addr = sock.recvmsg(_MAX_FRAME, cmsg_space)
                except BlockingIOError:
                    break
                if addr[2] == _PACKET_OUTGOING and not self.include_outgoing:
                    continue
                sec, nsec = _timestamp(anc)
                if not records:
                    first_wait = time.monotonic()
                records.append(_RECORD.pack(sec, nsec, len(data), len(data)) + data)
                last_frame = time.monotonic()
        if records:
            yield self._emit(records)
        self._read_stats()

    def _emit(self, records: list[bytes]) -> PacketTable:
        body = b"".join(records)
        if self._save is not None:
            self._save.write(body)
        table, summary = parse_capture(pcap_header() + body, name=f"<{self.interface}>")
        self._counts.add(summary.skipped, summary.num_records)
        self._read_stats()
        return table

    def close(self) -> None:
        """Close the socket and the saved pcap."""
        self._sock.close()
        if self._save is not None:
            self._save.close()
            self._save = None

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timestamp(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return int(sec), int(nsec)
    now = time.time_ns()
    return now // 1_000_000_000, now % 1_000_000_000


class FollowReader(_CountedSource):
    """Read a classic pcap file that another program is still writing (``tcpdump -w FILE -U``).

    Complete records are handed on as they appear; a partial record waits for its remaining bytes.

    Parameters
    ----------
    path : str or Path
        The growing capture (classic pcap, not gzipped, not pcapng).
    poll_seconds : float
        How often to look for new bytes.
    """

    def __init__(self, path: str | Path, *, poll_seconds: float = 0.05) -> None:
        self.path = Path(path)
        self.poll_seconds = poll_seconds
        self._counts = _Summing()
        try:
            self._file = self.path.open("rb")
        except FileNotFoundError:
            raise DataError("file not found", path=self.path) from None
        except OSError as exc:
            raise DataError(f"cannot open ({exc.strerror or exc})", path=self.path) from None

    kernel_drops = 0

    def batches(
        self, stop: Callable[[], bool], *, idle_timeout: float | None = None
    ) -> Iterator[PacketTable]:
        """Yield batches of new records until ``stop()`` or ``idle_timeout`` seconds without growth."""
        header = b""
        buf = b""
        last_growth = time.monotonic()
        big = False
        while not stop():
            chunk = self._file.read(16 << 20)
            now = time.monotonic()
            if chunk:
                last_growth = now
                buf += chunk
            if not header and len(buf) >= 24:
                header, buf = buf[:24], buf[24:]
                magic = header[:4]
                if magic in (b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"):
                    raise CaptureError(
                        "--follow reads classic pcap only (not pcapng or gzip)", path=self.path
                    )
                if magic not in _PCAP_MAGICS:
                    raise CaptureError(
                        f"not a pcap capture (magic 0x{magic.hex()})", path=self.path, offset=0
                    )
                big = magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
            if header:
                end = _complete_records(buf, big)
                if end:
                    body, buf = buf[:end], buf[end:]
                    table, summary = parse_capture(header + body, name=str(self.path))
                    self._counts.add(summary.skipped, summary.num_records)
                    yield table
                    continue
            if idle_timeout is not None and now - last_growth >= idle_timeout:
                break
            time.sleep(self.poll_seconds)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> FollowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _complete_records(buf: bytes, big: bool) -> int:
    """Return the length of the longest prefix of ``buf`` made of complete pcap records."""
    fmt = ">I" if big else "<I"
    off = 0
    size = len(buf)
    while off + 16 <= size:
        caplen = struct.unpack_from(fmt, buf, off + 8)[0]
        if caplen > _MAX_FRAME:
            raise CaptureError(f"corrupt record header: captured length {caplen} exceeds {_MAX_FRAME}")
        if off + 16 + caplen > size:
            break
        off += 16 + caplen
    return off
