"""Streaming AfterImage extraction: feed packets in batches, state carried across calls and files.

:class:`StreamingExtractor` keeps Kitsune's stream tables between calls: a batch of packets (a
:class:`~fediot.features.pcap.PacketTable`, e.g. one capture, a chunk of one, or packets from a live
interface) goes in, its feature rows come out, and the next batch continues the same streams. Stream ids
come from incremental hash tables, not from a pass over the whole capture, so feeding a capture in any
chunks gives bit-identical rows to feeding it whole (the batch path, :func:`compute_features_fast`, is
this extractor fed once).

Memory and eviction
-------------------
Each of the six stream tables (``MI_dir``, ``H``, ``HH``, ``HH_jit``, ``HpHp`` and ``HH_jit_gaps``, the
remembered last times of purged jitter streams) holds at most ``max_streams`` streams; tables start at
1,024 rows and double as needed. Two rules drop streams:

1. **Idle purge** (part of the feature definition, also in the reference implementation and in
   unbounded runs): before every packet whose stream position is a positive multiple of
   ``config.purge_every``, every stream whose weight at the slowest lambda, decayed to that packet's time,
   is below ``config.purge_weight`` is dropped (a pair: when both directions are). A purged jitter stream
   leaves its last time in ``HH_jit_gaps``, so its next packet still reports the gap.
2. **Eviction at the cap** (only when ``max_streams`` is reached): when a packet opens a new stream in a
   table that already holds ``max_streams`` streams, the ``max(1, max_streams // 16)`` least recently seen
   streams of that table are dropped first (the smallest last-packet time; a pair: the later of its two
   directions; ties: the stream created first). An evicted jitter stream's last time moves to
   ``HH_jit_gaps``; evicting from ``HH_jit_gaps`` forgets the oldest gaps.

Only eviction makes the output differ from the unbounded extractor, and only for a stream that is seen
again after it was evicted: it restarts as a new stream (weight ``1`` instead of its decayed weight plus
``1``, mean and variance of the new packets only, covariance from 0; a jitter stream whose gap was also
forgotten reports 0 instead of the gap). A stream is evicted only when at least ``max_streams -
max_streams // 16`` other streams of its table were seen after its last packet. While no table reaches the
cap, :attr:`StreamingExtractor.evictions` stays 0 for every table and the rows are bit-identical to the
unbounded extractor. Eviction order depends only on the packets fed, never on how they were chunked.

Memory: with the five N-BaIoT lambdas, a table row plus its share of the hash table costs 256 (``MI_dir``),
232 (``H``), 760 (``HH``), 328 (``HH_jit``), 808 (``HpHp``) and 208 (``HH_jit_gaps``) bytes, 2,592 bytes
for one stream in every table. The state is at most 2,592 * ``max_streams`` bytes; below the cap, tables
double when full, so they hold at most twice the bytes of the streams tracked. The default cap (131,072
streams per table) bounds it at 340 MB; :attr:`StreamingExtractor.memory_bytes` reports the figure now.

Adding a feature set: a new group of statistics is a new stream table (a key width in
:data:`fediot.features.keys.KEY_WORDS`, a row width) and a block of the per-packet loop in
:mod:`fediot.features.afterimage_fast`; the growth, eviction, purge and counter logic here works per table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fediot.errors import ConfigError, DataError
from fediot.features.afterimage_fast import (
    TABLE_HH,
    TABLE_HP,
    TABLE_JIT,
    TABLE_JIT_GAPS,
    TABLE_NAMES,
    find_idle,
    pair_row_width,
    process_packets,
    rehash,
    release_rows,
    remember_gaps,
    stream_row_width,
)
from fediot.features.columns import AfterImageConfig
from fediot.features.keys import KEY_WORDS
from fediot.features.pcap import PacketTable

__all__ = ["DEFAULT_MAX_STREAMS", "StreamingExtractor", "compute_features_fast"]

DEFAULT_MAX_STREAMS = 1 << 17
"""Default cap on the streams of each table of a :class:`StreamingExtractor` (131,072)."""

_INITIAL_ROWS = 1024
_LN2 = math.log(2.0)
_DONE, _PURGE = -1, -2


@dataclass(slots=True)
class _Table:
    """One stream table: the arrays of ``afterimage_fast``'s tuple layout, plus counters."""

    name: str
    pair: bool
    hkeys: NDArray[np.uint64]
    hrow: NDArray[np.int64]
    state: NDArray[np.float64]
    rkey: NDArray[np.uint64]
    rseq: NDArray[np.int64]
    free: NDArray[np.int64]
    meta: NDArray[np.int64]
    evicted: int = 0
    purged: int = 0

    @classmethod
    def new(cls, name: str, rows: int, row_width: int, *, pair: bool = False) -> _Table:
        words = KEY_WORDS[name]
        slots = _slots_for(rows)
        return cls(
            name=name,
            pair=pair,
            hkeys=np.zeros((slots, words), np.uint64),
            hrow=np.full(slots, -1, np.int64),
            state=np.zeros((rows, row_width), np.float64),
            rkey=np.zeros((rows, words), np.uint64),
            rseq=np.full(rows, -1, np.int64),
            free=np.zeros(rows, np.int64),
            meta=np.zeros(3, np.int64),
        )

    def arrays(
        self,
    ) -> tuple[
        NDArray[np.uint64], NDArray[np.int64], NDArray[np.float64], NDArray[np.uint64],
        NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
    ]:  # fmt: skip
        return self.hkeys, self.hrow, self.state, self.rkey, self.rseq, self.free, self.meta

    @property
    def rows(self) -> int:
        return int(self.state.shape[0])

    @property
    def used(self) -> int:
        return int(self.meta[0])

    @property
    def live(self) -> int:
        return int(self.meta[2])

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays())

    def grow(self, rows: int) -> None:
        """Enlarge to ``rows`` rows (more than now), keeping every row index; rebuild the hash table."""
        used = self.used
        state = np.zeros((rows, self.state.shape[1]), np.float64)
        state[:used] = self.state[:used]
        rkey = np.zeros((rows, self.rkey.shape[1]), np.uint64)
        rkey[:used] = self.rkey[:used]
        rseq = np.full(rows, -1, np.int64)
        rseq[:used] = self.rseq[:used]
        free = np.zeros(rows, np.int64)
        free[: self.meta[1]] = self.free[: self.meta[1]]
        self.state, self.rkey, self.rseq, self.free = state, rkey, rseq, free
        slots = _slots_for(rows)
        if slots != self.hrow.shape[0]:
            self.hkeys = np.zeros((slots, self.hkeys.shape[1]), np.uint64)
            self.hrow = np.full(slots, -1, np.int64)
            rehash(self.hkeys, self.hrow, self.rkey, self.rseq, used)

    def last_seen(self, rows: NDArray[np.intp]) -> NDArray[np.float64]:
        """Time of the last packet of each stream in ``rows`` (a pair: the later of its two directions)."""
        last: NDArray[np.float64] = self.state[rows, 0]
        if self.pair:
            last = np.maximum(last, self.state[rows, _pair_block(self.state.shape[1])])
        return last


def _pair_block(row_width: int) -> int:
    """Offset of a pair row's second direction: row_width = 2 * (1 + 6L) + 1 + 2L, block = 1 + 6L."""
    num_lambdas = (row_width - 3) // 14
    return 1 + 6 * num_lambdas


def _slots_for(rows: int) -> int:
    """Hash slots for ``rows`` rows: the smallest power of two >= 2 * rows (load factor <= 1/2)."""
    return 1 << max(1, (2 * rows - 1).bit_length())


class StreamingExtractor:
    """Kitsune's AfterImage statistics (the 115 N-BaIoT columns), fed packets batch by batch.

    State (the stream tables with their decayed statistics) carries from one :meth:`feed` to the next and
    across files: feeding a capture in any chunks gives the same rows, bit for bit, as feeding it whole.
    See the module docstring for the memory cap and the exact eviction rule.

    Parameters
    ----------
    config : AfterImageConfig, optional
        Lambdas and idle purging (default: N-BaIoT's five lambdas, 115 columns).
    max_streams : int or None
        Cap on the streams tracked by each stream table (>= 16); ``None`` for no cap (memory then grows
        with the streams active within the idle horizon, as in the batch extractor).

    Examples
    --------
    >>> from fediot.data.paths import shipped_file
    >>> from fediot.features import read_pcap
    >>> packets, _ = read_pcap(shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz"))
    >>> extractor = StreamingExtractor()
    >>> first = extractor.feed(packets.take(np.arange(1000)))
    >>> rest = extractor.feed(packets.take(np.arange(1000, len(packets))))
    >>> whole = StreamingExtractor().feed(packets)
    >>> bool(np.array_equal(np.vstack([first, rest]), whole)), extractor.num_packets, whole.shape
    (True, 9617, (9617, 115))
    """

    def __init__(
        self, config: AfterImageConfig | None = None, *, max_streams: int | None = DEFAULT_MAX_STREAMS
    ):
        if max_streams is not None and (type(max_streams) is not int or max_streams < 16):
            raise ConfigError(f"max_streams must be an integer >= 16 or None, got {max_streams!r}")
        self.config = config or AfterImageConfig()
        self.max_streams = max_streams
        lambdas = np.asarray(self.config.lambdas, dtype=np.float64)
        self._rates = lambdas * _LN2  # decay factor exp(-rate * dt) == 2 ** (-lambda * dt)
        self._kmin = int(np.argmin(lambdas))
        nl = len(self.config.lambdas)
        rows = _INITIAL_ROWS if max_streams is None else min(_INITIAL_ROWS, max_streams)
        self._tables = [
            _Table.new(name, rows, pair_row_width(nl) if pair else stream_row_width(nl), pair=pair)
            for name, pair in zip(TABLE_NAMES, (False, False, True, False, True, False), strict=True)
        ]
        self._tables[TABLE_JIT_GAPS] = _Table.new("HH_jit_gaps", rows, 1)
        self._num_packets = 0
        self._purged_at = -1

    # ------------------------------------------------------------------------------------------ public
    @property
    def num_features(self) -> int:
        """Columns of each feature row (``23 * len(config.lambdas)``, 115 by default)."""
        return self.config.num_features

    @property
    def num_packets(self) -> int:
        """Packets fed so far; the next packet fed is packet ``num_packets`` of the stream."""
        return self._num_packets

    @property
    def evictions(self) -> dict[str, int]:
        """Streams dropped at the cap so far, per table (all 0 while no table reached ``max_streams``)."""
        return {t.name: t.evicted for t in self._tables}

    @property
    def purged(self) -> dict[str, int]:
        """Idle streams dropped by the scheduled purge so far, per table (part of the feature definition)."""
        return {t.name: t.purged for t in self._tables}

    @property
    def num_streams(self) -> dict[str, int]:
        """Streams tracked now, per table."""
        return {t.name: t.live for t in self._tables}

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the stream tables now."""
        return sum(t.nbytes for t in self._tables)

    def feed(self, packets: PacketTable) -> NDArray[np.float64]:
        """Process packets in their row order, continuing every stream; return their feature rows.

        Parameters
        ----------
        packets : PacketTable
            The next n_packets packets of the stream (any number, 0 included). The rows of this table are
            the per-packet metadata of the returned features (timestamp, MACs, IPs, protocol, ports).

        Returns
        -------
        ndarray of shape (n_packets, num_features), float64
            Row ``i`` is the features of ``packets`` row ``i``, in ``feature_names(config.lambdas)`` order.

        Raises
        ------
        DataError
            If ``packets`` is not a PacketTable.
        """
        if not isinstance(packets, PacketTable):
            raise DataError(f"StreamingExtractor.feed expects a PacketTable, got {type(packets).__name__}")
        n = len(packets)
        out = np.empty((n, self.num_features), dtype=np.float64)
        if n == 0:
            return out
        cols = (
            np.ascontiguousarray(packets.timestamp), np.ascontiguousarray(packets.length),
            np.ascontiguousarray(packets.src_mac), np.ascontiguousarray(packets.dst_mac),
            np.ascontiguousarray(packets.src_ip), np.ascontiguousarray(packets.dst_ip),
            np.ascontiguousarray(packets.ip_version), np.ascontiguousarray(packets.protocol),
            np.ascontiguousarray(packets.src_port), np.ascontiguousarray(packets.dst_port),
        )  # fmt: skip
        i = 0
        while True:
            mi, host, hh, jit, hp, gaps = (t.arrays() for t in self._tables)
            i, reason = process_packets(
                *cols, i, self._num_packets, self.config.purge_every, self._purged_at, self._rates,
                mi, host, hh, jit, hp, gaps, out,
            )  # fmt: skip
            if reason == _DONE:
                break
            if reason == _PURGE:
                self._purge(float(cols[0][i]))
                self._purged_at = self._num_packets + i
            else:
                self._make_room(reason)
        self._num_packets += n
        return out

    # ----------------------------------------------------------------------------------------- private
    def _purge(self, now: float) -> None:
        """Drop idle streams (the rule of ``AfterImageConfig``), in the reference's table order."""
        lam = float(self._rates[self._kmin])
        thr = self.config.purge_weight
        for index in (0, 1, TABLE_JIT, TABLE_HH, TABLE_HP):
            table = self._tables[index]
            rows = np.empty(table.used, np.int64)
            side_block = _pair_block(table.state.shape[1]) if table.pair else 0
            count = find_idle(
                table.state, table.rseq, table.used, now, self._kmin, lam, thr, side_block, rows
            )
            if count == 0:
                continue
            rows = rows[:count]
            if index == TABLE_JIT:
                self._remember_gaps(table, rows)
            release_rows(table.arrays(), rows)
            table.purged += count

    def _remember_gaps(self, jit: _Table, rows: NDArray[np.int64]) -> None:
        """Keep the last times of jitter streams that stop being tracked in ``HH_jit_gaps``."""
        gaps = self._tables[TABLE_JIT_GAPS]
        keys = np.ascontiguousarray(jit.rkey[rows])
        times = np.ascontiguousarray(jit.state[rows, 0])
        done = 0
        while done < len(rows):
            done = remember_gaps(gaps.arrays(), keys, times, self._num_packets, done)
            if done < len(rows):
                self._make_room(TABLE_JIT_GAPS)

    def _make_room(self, index: int) -> None:
        """Give table ``index`` a free row: double it, or at the cap evict its least recently seen streams."""
        table = self._tables[index]
        cap = self.max_streams
        if cap is None or table.rows < cap:
            table.grow(2 * table.rows if cap is None else min(2 * table.rows, cap))
            return
        live = np.flatnonzero(table.rseq[: table.used] >= 0)
        victims = live[np.lexsort((table.rseq[live], table.last_seen(live)))[: max(1, cap // 16)]]
        victims = victims.astype(np.int64)
        if index == TABLE_JIT:
            self._remember_gaps(table, victims)
        release_rows(table.arrays(), victims)
        table.evicted += len(victims)


def compute_features_fast(
    packets: PacketTable, config: AfterImageConfig | None = None
) -> NDArray[np.float64]:
    """:func:`fediot.features.afterimage_ref.compute_features_ref` with the compiled kernel, no stream cap.

    Same arguments and ``(n_packets, 23 * n_lambdas)`` float64 result, equal to the oracle's on the same
    packets (bit for bit on the shipped captures).
    """
    return StreamingExtractor(config, max_streams=None).feed(packets)
