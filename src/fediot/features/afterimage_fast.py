"""Compiled AfterImage kernels: per-packet stream keys, incremental hash tables, damped statistics (numba).

The kernels here hold no state of their own: every stream table is a tuple of numpy arrays owned by
:class:`fediot.features.stream.StreamingExtractor`, which calls :func:`process_packets` on each batch of
packets and handles what the kernel cannot do in place (grow a table, evict streams at the cap, purge idle
streams). The numbers are those of ``afterimage_ref`` (same floating-point operations, same order).

Stream table layout (one per stream group, see ``TABLE_NAMES``), the tuple
``(hkeys, hrow, state, rkey, rseq, free, meta)``:

* ``hkeys`` (H, W) uint64 and ``hrow`` (H,) int64: an open-addressing hash table (linear probing,
  backward-shift deletion, no tombstones) from a stream's W-word key to its state row (-1 = empty slot).
  ``H`` is a power of two and at least twice the number of rows, so probes stay short.
* ``state`` (P, R) float64: one row of decayed statistics per tracked stream (row layouts below);
  ``rkey`` (P, W) uint64 its key, ``rseq`` (P,) int64 the index of the packet that created it
  (-1 = free row; breaks ties when streams are evicted), ``free`` (P,) int64 a stack of free rows.
* ``meta`` (3,) int64: rows ever used, free rows on the stack, live streams.

Stream keys are built per packet from the :class:`~fediot.features.pcap.PacketTable` columns as uint64
words, with Kitsune's conventions (see :mod:`fediot.features.keys`); a pair key lists its two endpoints in
ascending word order, and ``side`` says which way the packet goes.

Compile cost: every function is ``@njit(cache=True)``, so numba compiles once per installation and later
processes load the machine code from ``__pycache__/*.nbi|*.nbc`` beside this file (or from
``NUMBA_CACHE_DIR`` when that folder is read-only). The cache is keyed by this file's modification time,
which is why all kernels live in this one module: numba does not notice edits to callees in other files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from fediot.features.keys import (
    KEY_WORDS,
    KIND_IPV4,
    KIND_IPV6,
    KIND_MAC,
    PORT_CODE_ICMP,
    PORT_CODE_NONE,
    PORT_CODE_OFFSET,
    SIDE_REVERSE,
    SIDE_SELF,
)
from fediot.features.pcap import PROTO_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP

__all__ = [
    "TABLE_HH",
    "TABLE_HOST",
    "TABLE_HP",
    "TABLE_JIT",
    "TABLE_JIT_GAPS",
    "TABLE_MI",
    "TABLE_NAMES",
    "find_idle",
    "pair_row_width",
    "process_packets",
    "rehash",
    "release_rows",
    "remember_gaps",
    "stream_row_width",
]

TABLE_MI, TABLE_HOST, TABLE_HH, TABLE_JIT, TABLE_HP, TABLE_JIT_GAPS = range(6)
TABLE_NAMES: tuple[str, ...] = ("MI_dir", "H", "HH", "HH_jit", "HpHp", "HH_jit_gaps")
"""Stream tables in kernel order; ``HH_jit_gaps`` remembers the last time of purged jitter streams."""

_DONE = -1  # process_packets' reason codes: done, purge due, or the index of a table that needs a row
_PURGE = -2
_U0 = np.uint64(0)
_MAC = np.uint64(KIND_MAC)
_IPV4 = np.uint64(KIND_IPV4)
_IPV6 = np.uint64(KIND_IPV6)
_PC_NONE = np.uint64(PORT_CODE_NONE)
_PC_ICMP = np.uint64(PORT_CODE_ICMP)
_W_MI, _W_HOST, _W_HH, _W_JIT, _W_HP = (KEY_WORDS[name] for name in TABLE_NAMES[:5])


def stream_row_width(num_lambdas: int) -> int:
    """Floats per 1-D stream row: ``[last, w[L], sum[L], ss[L]]``."""
    return 1 + 3 * num_lambdas


def pair_row_width(num_lambdas: int) -> int:
    """Floats per pair row: two sides, then the covariance term.

    Each side is ``[last, w[L], sum[L], ss[L], last_res[L], last_mean[L], last_var[L]]``; then
    ``[last3, cf3[L], w3[L]]``.
    """
    return 2 * (1 + 6 * num_lambdas) + 1 + 2 * num_lambdas


# ---------------------------------------------------------------------------------------------------------
# Hash tables


@njit(cache=True, inline="always")
def _hash(key: Any, width: int) -> np.uint64:  # pragma: no cover - compiled
    h = np.uint64(0x9E3779B97F4A7C15)
    for k in range(width):
        h = (h ^ key[k]) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h


@njit(cache=True, inline="always")
def _find(hkeys: Any, hrow: Any, key: Any) -> Any:  # pragma: no cover - compiled
    """Return the slot holding ``key``, or the empty slot where it would go."""
    mask = hrow.shape[0] - 1
    width = hkeys.shape[1]
    i = np.int64(_hash(key, width) & np.uint64(mask))
    while True:
        if hrow[i] < 0:
            return i
        same = True
        for k in range(width):
            if hkeys[i, k] != key[k]:
                same = False
                break
        if same:
            return i
        i = (i + 1) & mask


@njit(cache=True)
def _delete(hkeys: Any, hrow: Any, i: int) -> None:  # pragma: no cover - compiled
    """Empty slot ``i``, shifting later entries of its probe run back (linear probing, no tombstones)."""
    mask = hrow.shape[0] - 1
    width = hkeys.shape[1]
    j = i
    while True:
        j = (j + 1) & mask
        if hrow[j] < 0:
            break
        home = np.int64(_hash(hkeys[j], width) & np.uint64(mask))
        stays = i < home <= j if i <= j else home > i or home <= j
        if stays:
            continue
        for k in range(width):
            hkeys[i, k] = hkeys[j, k]
        hrow[i] = hrow[j]
        i = j
    hrow[i] = -1


@njit(cache=True, inline="always")
def _has_room(table: Any) -> bool:  # pragma: no cover - compiled
    meta = table[6]
    return bool(meta[1] > 0 or meta[0] < table[2].shape[0])


@njit(cache=True, inline="always")
def _insert(table: Any, slot: int, key: Any, seq: int) -> Any:  # pragma: no cover - compiled
    """Give ``key`` (absent; ``slot`` is the empty slot ``_find`` returned) a row; the caller checked room."""
    hkeys, hrow, _, rkey, rseq, free, meta = table
    if meta[1] > 0:
        meta[1] -= 1
        s = free[meta[1]]
    else:
        s = meta[0]
        meta[0] += 1
    meta[2] += 1
    for k in range(hkeys.shape[1]):
        hkeys[slot, k] = key[k]
        rkey[s, k] = key[k]
    hrow[slot] = s
    rseq[s] = seq
    return s


@njit(cache=True, inline="always")
def _free_row(table: Any, slot: int) -> None:  # pragma: no cover - compiled
    hkeys, hrow, _, _, rseq, free, meta = table
    s = hrow[slot]
    _delete(hkeys, hrow, slot)
    rseq[s] = -1
    free[meta[1]] = s
    meta[1] += 1
    meta[2] -= 1


@njit(cache=True)
def rehash(hkeys: Any, hrow: Any, rkey: Any, rseq: Any, used: int) -> None:  # pragma: no cover - compiled
    """Insert the key of every live row (``rseq >= 0``) into an empty hash table."""
    for s in range(used):
        if rseq[s] >= 0:
            slot = _find(hkeys, hrow, rkey[s])
            for k in range(hkeys.shape[1]):
                hkeys[slot, k] = rkey[s, k]
            hrow[slot] = s


@njit(cache=True)
def release_rows(table: Any, rows: Any) -> None:  # pragma: no cover - compiled
    """Stop tracking the streams in ``rows`` (live rows): remove their keys, free their rows."""
    hkeys, hrow, _, rkey, _, _, _ = table
    for r in range(rows.shape[0]):
        _free_row(table, _find(hkeys, hrow, rkey[rows[r]]))


@njit(cache=True)
def remember_gaps(gaps: Any, keys: Any, times: Any, seq: int, begin: int) -> int:  # pragma: no cover
    """Store ``times[r]`` under ``keys[r]`` for r >= ``begin`` until the table is full; return the next r."""
    hkeys, hrow, state = gaps[0], gaps[1], gaps[2]
    for r in range(begin, keys.shape[0]):
        slot = _find(hkeys, hrow, keys[r])
        if hrow[slot] >= 0:
            state[hrow[slot], 0] = times[r]
            continue
        if not _has_room(gaps):
            return r
        state[_insert(gaps, slot, keys[r], seq), 0] = times[r]
    return int(keys.shape[0])


@njit(cache=True, inline="always")
def _idle(
    state: Any, s: int, base: int, now: float, kmin: int, lam: float, thr: float
) -> bool:  # pragma: no cover
    return bool(state[s, base + 1 + kmin] * math.exp(-lam * (now - state[s, base])) < thr)


@njit(cache=True)
def find_idle(
    state: Any, rseq: Any, used: int, now: float, kmin: int, lam: float, thr: float, side_block: int, out: Any
) -> int:  # pragma: no cover - compiled
    """Write the idle live rows to ``out`` in row order; return how many.

    Idle: the weight at the slowest lambda, decayed to ``now``, is below ``thr`` (pairs: on both sides;
    ``side_block`` is the offset of a pair row's second side, 0 for 1-D rows).
    """
    n = 0
    for s in range(used):
        if rseq[s] < 0:
            continue
        stale = _idle(state, s, 0, now, kmin, lam, thr)
        if stale and side_block > 0:
            stale = _idle(state, s, side_block, now, kmin, lam, thr)
        if stale:
            out[n] = s
            n += 1
    return n


# ---------------------------------------------------------------------------------------------------------
# Damped statistics (row layouts: see stream_row_width / pair_row_width)


@njit(cache=True, inline="always")
def _init_stream(state: Any, s: int, base: int, t: float, nl: int) -> None:  # pragma: no cover - compiled
    state[s, base] = t
    for k in range(nl):
        state[s, base + 1 + k] = 1e-20
        state[s, base + 1 + nl + k] = 0.0
        state[s, base + 1 + 2 * nl + k] = 0.0


@njit(cache=True, inline="always")
def _factors(dt: float, rates: Any, cache: Any, dst: Any) -> None:  # pragma: no cover - compiled
    """Put ``exp(-rate * dt)`` for every rate in ``dst``; ``cache`` keeps the last dt and its factors."""
    nl = rates.shape[0]
    if dt != cache[0]:
        cache[0] = dt
        for k in range(nl):
            cache[1 + k] = math.exp(-rates[k] * dt)
    for k in range(nl):
        dst[k] = cache[1 + k]


@njit(cache=True, inline="always")
def _stream_update(
    state: Any, s: int, v: float, t: float, rates: Any, cache: Any, f_own: Any, out: Any, i: int, col: int
) -> None:  # pragma: no cover - compiled
    """Decay a 1-D stream to ``t``, insert ``v``, write (weight, mean, variance) per lambda at ``col``."""
    nl = rates.shape[0]
    dt = t - state[s, 0]
    decay = dt > 0
    if decay:
        _factors(dt, rates, cache, f_own)
        state[s, 0] = t
    for k in range(nl):
        w = state[s, 1 + k]
        total = state[s, 1 + nl + k]
        squares = state[s, 1 + 2 * nl + k]
        if decay:
            total *= f_own[k]
            squares *= f_own[k]
            w *= f_own[k]
        total += v
        squares += v * v
        w += 1.0
        state[s, 1 + k] = w
        state[s, 1 + nl + k] = total
        state[s, 1 + 2 * nl + k] = squares
        mean = total / w
        out[i, col + 3 * k] = w
        out[i, col + 3 * k + 1] = mean
        out[i, col + 3 * k + 2] = abs(squares / w - mean * mean)


@njit(cache=True, inline="always")
def _pair_update(
    state: Any, p: int, is_new: bool, side: int, v: float, t: float, rates: Any, cache: Any,
    f_own: Any, f_other: Any, f_cov: Any, out: Any, i: int, col: int,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    """One packet on a pair: insert on its direction, run Kitsune's update_cov (1x new, 2x existing pair)."""
    nl = rates.shape[0]
    block = 1 + 6 * nl
    pb = 2 * block
    if is_new:
        for b in range(2):
            _init_stream(state, p, b * block, t, nl)
            for k in range(3 * nl):
                state[p, b * block + 1 + 3 * nl + k] = 0.0  # last_res, last_mean, last_var
        state[p, pb] = t
        for k in range(nl):
            state[p, pb + 1 + k] = 0.0
            state[p, pb + 1 + nl + k] = 1e-20
    if side == SIDE_SELF:
        own = 0
        other = 0
        updates = 0
    else:
        own = side * block
        other = (1 - side) * block
        updates = 1 if is_new else 2
    dt = t - state[p, own]
    decay_own = dt > 0
    if decay_own:
        _factors(dt, rates, cache, f_own)
        state[p, own] = t
    decay_other = False
    decay_cov = False
    if updates > 0:
        dt = t - state[p, other]
        decay_other = dt > 0
        if decay_other:
            _factors(dt, rates, cache, f_other)
            state[p, other] = t
        dt = t - state[p, pb]
        decay_cov = dt > 0
        if decay_cov:
            _factors(dt, rates, cache, f_cov)
            state[p, pb] = t
    for k in range(nl):
        w = state[p, own + 1 + k]
        total = state[p, own + 1 + nl + k]
        squares = state[p, own + 1 + 2 * nl + k]
        if decay_own:
            total *= f_own[k]
            squares *= f_own[k]
            w *= f_own[k]
        total += v
        squares += v * v
        w += 1.0
        state[p, own + 1 + k] = w
        state[p, own + 1 + nl + k] = total
        state[p, own + 1 + 2 * nl + k] = squares
        mean_i = total / w
        var_i = abs(squares / w - mean_i * mean_i)
        if updates > 0:
            if decay_other:
                state[p, other + 1 + nl + k] *= f_other[k]
                state[p, other + 1 + 2 * nl + k] *= f_other[k]
                state[p, other + 1 + k] *= f_other[k]
            cf3 = state[p, pb + 1 + k]
            w3 = state[p, pb + 1 + nl + k]
            if decay_cov:
                cf3 *= f_cov[k]
                w3 *= f_cov[k]
            res = v - mean_i
            partner = state[p, other + 1 + 3 * nl + k]
            for _ in range(updates):
                cf3 += res * partner
                w3 += 1.0
            state[p, pb + 1 + k] = cf3
            state[p, pb + 1 + nl + k] = w3
            state[p, own + 1 + 3 * nl + k] = res
        state[p, own + 1 + 4 * nl + k] = mean_i
        state[p, own + 1 + 5 * nl + k] = var_i
        mean_j = state[p, other + 1 + 4 * nl + k]
        var_j = state[p, other + 1 + 5 * nl + k]
        std_i = np.sqrt(var_i)
        std_j = np.sqrt(var_j)
        cov = state[p, pb + 1 + k] / state[p, pb + 1 + nl + k]
        ss = std_i * std_j
        c = col + 7 * k
        out[i, c] = w
        out[i, c + 1] = mean_i
        out[i, c + 2] = std_i
        out[i, c + 3] = np.sqrt(mean_i * mean_i + mean_j * mean_j)
        out[i, c + 4] = np.sqrt(var_i * var_i + var_j * var_j)
        out[i, c + 5] = cov
        out[i, c + 6] = cov / ss if ss != 0 else 0.0


# ---------------------------------------------------------------------------------------------------------
# Per-packet keys


@njit(cache=True, inline="always")
def _compare(a: Any, b: Any, width: int) -> int:  # pragma: no cover - compiled
    for k in range(width):
        if a[k] != b[k]:
            return -1 if a[k] < b[k] else 1
    return 0


@njit(cache=True, inline="always")
def _pair_key(src: Any, dst: Any, width: int, key: Any) -> int:  # pragma: no cover - compiled
    """Write ``min(src, dst) + max(src, dst)`` to ``key``; return the packet's side of the pair."""
    c = _compare(src, dst, width)
    lo, hi = (src, dst) if c <= 0 else (dst, src)
    for k in range(width):
        key[k] = lo[k]
        key[width + k] = hi[k]
    if c == 0:
        return SIDE_SELF
    return SIDE_REVERSE if c > 0 else 0


@njit(cache=True, inline="always")
def _net_end(
    ends: Any, e: int, kind: Any, no_ip: bool, mac: Any, ip_hi: Any, ip_lo: Any
) -> None:  # pragma: no cover - compiled
    """Network endpoint ``(kind, ip_hi, ip_lo)``; packets without IP use ``(MAC, 0, mac)``."""
    ends[e, 0] = kind
    ends[e, 1] = _U0 if no_ip else ip_hi
    ends[e, 2] = mac if no_ip else ip_lo


@njit(cache=True, inline="always")
def _sock_end(ends: Any, e: int, by_mac: bool, mac: Any, code: Any) -> None:  # pragma: no cover - compiled
    """Socket endpoint: the network endpoint ``e - 2`` plus a port code, or ``(MAC, 0, mac, none)``."""
    if by_mac:
        ends[e, 0] = _MAC
        ends[e, 1] = _U0
        ends[e, 2] = mac
    else:
        ends[e, 0] = ends[e - 2, 0]
        ends[e, 1] = ends[e - 2, 1]
        ends[e, 2] = ends[e - 2, 2]
    ends[e, 3] = code


@njit(cache=True, inline="always")
def _packet_keys(
    i: int, src_mac: Any, dst_mac: Any, src_ip: Any, dst_ip: Any, ip_version: Any, protocol: Any,
    src_port: Any, dst_port: Any, ends: Any, keys: Any,
) -> tuple[int, int]:  # pragma: no cover - compiled  # fmt: skip
    """Fill ``keys`` rows (MI, H, HH, HH_jit, HpHp) for packet ``i``; return the (HH, HpHp) sides.

    ``ends`` is scratch of shape (4, 4): the source/destination network endpoints, then socket endpoints.
    """
    version = ip_version[i]
    no_ip = version == 0
    kind = _MAC if no_ip else (_IPV6 if version == 6 else _IPV4)
    _net_end(ends, 0, kind, no_ip, src_mac[i], src_ip[i, 0], src_ip[i, 1])
    _net_end(ends, 1, kind, no_ip, dst_mac[i], dst_ip[i, 0], dst_ip[i, 1])
    proto = protocol[i]
    by_mac = no_ip or proto == PROTO_ARP
    if by_mac:
        code_src = code_dst = _PC_NONE
    elif proto in (PROTO_TCP, PROTO_UDP):
        code_src = np.uint64(np.int64(src_port[i]) + PORT_CODE_OFFSET)
        code_dst = np.uint64(np.int64(dst_port[i]) + PORT_CODE_OFFSET)
    elif proto == PROTO_ICMP:
        code_src = code_dst = _PC_ICMP
    else:
        code_src = code_dst = _PC_NONE
    _sock_end(ends, 2, by_mac, src_mac[i], code_src)
    _sock_end(ends, 3, by_mac, dst_mac[i], code_dst)
    keys[0, 0] = src_mac[i]
    for k in range(3):
        keys[0, 1 + k] = ends[0, k]
        keys[1, k] = ends[0, k]
    hh_side = _pair_key(ends[0], ends[1], 3, keys[2])
    for k in range(6):
        keys[3, k] = keys[2, k]
    keys[3, 6] = np.uint64(1) if hh_side == SIDE_REVERSE else _U0
    hp_side = _pair_key(ends[2], ends[3], 4, keys[4])
    return hh_side, hp_side


# ---------------------------------------------------------------------------------------------------------
# The packet loop


@njit(cache=True)
def process_packets(
    ts: Any, length: Any, src_mac: Any, dst_mac: Any, src_ip: Any, dst_ip: Any, ip_version: Any,
    protocol: Any, src_port: Any, dst_port: Any, begin: int, seq0: int, purge_every: int, purged_at: int,
    rates: Any, mi: Any, host: Any, hh: Any, jit: Any, hp: Any, gaps: Any, out: Any,
) -> tuple[int, int]:  # pragma: no cover - compiled  # fmt: skip
    """Compute the feature rows of packets ``begin`` ... into ``out`` until done or the caller must act.

    Packet ``i`` of this batch is packet ``seq0 + i`` of the stream. Returns ``(i, reason)``: ``reason``
    -1 when every packet is done, -2 when the idle purge is due before packet ``i`` (global index a
    positive multiple of ``purge_every`` other than ``purged_at``), or the ``TABLE_*`` index of a table
    that has no free row for a new stream of packet ``i``. Packet ``i`` is then untouched: the caller
    purges, grows or evicts, and calls again with ``begin = i``.
    """
    nl = rates.shape[0]
    cache = np.full(nl + 1, -1.0)  # last dt and its decay factors (dt > 0 always, so -1 never matches)
    f_own = np.empty(nl)
    f_other = np.empty(nl)
    f_cov = np.empty(nl)
    ends = np.empty((4, 4), dtype=np.uint64)
    keys = np.empty((5, 8), dtype=np.uint64)
    tables = (mi, host, hh, jit, hp)
    slots = np.empty(5, dtype=np.int64)
    for i in range(begin, ts.shape[0]):
        seq = seq0 + i
        if purge_every > 0 and seq > 0 and seq % purge_every == 0 and seq != purged_at:
            return i, _PURGE
        hh_side, hp_side = _packet_keys(
            i, src_mac, dst_mac, src_ip, dst_ip, ip_version, protocol, src_port, dst_port, ends, keys
        )
        # find every stream first (table k = TABLE_* index k): packet i is processed whole or not at all
        for k in range(5):
            table = tables[k]
            slots[k] = _find(table[0], table[1], keys[k])
            if table[1][slots[k]] < 0 and not _has_room(table):
                return i, k
        s_mi, s_h, s_hh, s_j, s_hp = slots[0], slots[1], slots[2], slots[3], slots[4]

        t = ts[i]
        v = float(length[i])
        # MI_dir
        r = mi[1][s_mi]
        if r < 0:
            r = _insert(mi, s_mi, keys[0], seq)
            _init_stream(mi[2], r, 0, t, nl)
        _stream_update(mi[2], r, v, t, rates, cache, f_own, out, i, 0)
        # H
        r = host[1][s_h]
        if r < 0:
            r = _insert(host, s_h, keys[1], seq)
            _init_stream(host[2], r, 0, t, nl)
        _stream_update(host[2], r, v, t, rates, cache, f_own, out, i, 3 * nl)
        # HH
        r = hh[1][s_hh]
        new = r < 0
        if new:
            r = _insert(hh, s_hh, keys[2], seq)
        _pair_update(hh[2], r, new, hh_side, v, t, rates, cache, f_own, f_other, f_cov, out, i, 6 * nl)
        # HH_jit: the directed channel's inter-arrival time; a purged stream's last time is remembered
        r = jit[1][s_j]
        if r < 0:
            r = _insert(jit, s_j, keys[3], seq)
            start = t
            g = _find(gaps[0], gaps[1], keys[3])
            if gaps[1][g] >= 0:
                start = gaps[2][gaps[1][g], 0]
                _free_row(gaps, g)
            _init_stream(jit[2], r, 0, start, nl)
        dt = t - jit[2][r, 0]
        _stream_update(jit[2], r, dt if dt > 0 else 0.0, t, rates, cache, f_own, out, i, 13 * nl)
        # HpHp
        r = hp[1][s_hp]
        new = r < 0
        if new:
            r = _insert(hp, s_hp, keys[4], seq)
        _pair_update(hp[2], r, new, hp_side, v, t, rates, cache, f_own, f_other, f_cov, out, i, 16 * nl)
    return ts.shape[0], _DONE
