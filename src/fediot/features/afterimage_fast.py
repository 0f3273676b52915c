"""Numba AfterImage: the same statistics as ``afterimage_ref`` over columnar integer stream ids.

Each stream group is a pool of preallocated state rows (one float64 row per live stream, grown by doubling)
and a key -> row index. Every ``purge_every`` packets, idle streams (see ``AfterImageConfig``) free their
rows, so statistics memory is bounded by the streams active within the idle horizon (~33 min by default)
plus the streams touched in one purge interval, not by the capture length. What stays per distinct key is
the 8-byte row index (and, for jitter keys, an 8-byte last-seen time), no more than the input's own
per-packet key columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fediot.features.columns import AfterImageConfig
from fediot.features.keys import SIDE_SELF, StreamKeys

__all__ = ["compute_features_fast"]

_INITIAL_ROWS = 1024
_LN2 = math.log(2.0)


def compute_features_fast(keys: StreamKeys, config: AfterImageConfig | None = None) -> NDArray[np.float64]:
    """Compute the AfterImage features with the compiled kernel (the first call compiles or loads the cache).

    Parameters
    ----------
    keys : StreamKeys
        Integer stream ids of n_packets packets, in processing order (see ``encode_streams``).
    config : AfterImageConfig, optional
        Lambdas and purging; the default gives the 115 N-BaIoT columns.

    Returns
    -------
    ndarray of shape (n_packets, 23 * n_lambdas), float64
        One row per packet in ``feature_names(config.lambdas)`` order; equal to ``compute_features_ref`` on
        the same packets up to floating-point rounding.
    """
    config = config or AfterImageConfig()
    lambdas = np.asarray(config.lambdas, dtype=np.float64)
    rates = lambdas * _LN2  # decay factor exp(-rate * dt) == 2 ** (-lambda * dt)
    out = np.empty((len(keys), config.num_features), dtype=np.float64)
    _run(
        keys.timestamp, keys.size, keys.mi, keys.host, keys.hh_pair, keys.hh_side, keys.hp_pair, keys.hp_side,
        keys.num_mi, keys.num_host, keys.num_hh, keys.num_hp,
        rates, int(np.argmin(lambdas)), config.purge_every, config.purge_weight, out,
    )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------------
# Row layouts (L rates). 1-D stream row: [last, w[L], sum[L], ss[L]]. Pair row: two sides of
# [last, w[L], sum[L], ss[L], last_res[L], last_mean[L], last_var[L]], then [last3, cf3[L], w3[L]].


@njit(cache=True)
def _grow(state: Any, key_of: Any, used: int) -> tuple[Any, Any, Any]:  # pragma: no cover - compiled
    """Return (state, key_of, free) with twice the rows; the first ``used`` rows are kept."""
    cap = 2 * state.shape[0]
    grown = np.empty((cap, state.shape[1]), dtype=np.float64)
    grown[:used] = state[:used]
    keys = np.full(cap, -1, dtype=np.int64)
    keys[:used] = key_of[:used]
    return grown, keys, np.empty(cap, dtype=np.int64)


@njit(cache=True, inline="always")
def _acquire(
    key: int, slot_of: Any, key_of: Any, free: Any, nfree: int, used: int
) -> tuple[int, bool, int, int]:  # pragma: no cover - compiled
    """Return (row, is_new, nfree, used) for ``key``; the caller has grown the pool if it was full."""
    s = slot_of[key]
    if s >= 0:
        return s, False, nfree, used
    if nfree > 0:
        nfree -= 1
        s = free[nfree]
    else:
        s = used
        used += 1
    slot_of[key] = s
    key_of[s] = key
    return s, True, nfree, used


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


@njit(cache=True, inline="always")
def _idle(
    state: Any, s: int, base: int, now: float, kmin: int, lam: float, thr: float
) -> bool:  # pragma: no cover
    return bool(state[s, base + 1 + kmin] * math.exp(-lam * (now - state[s, base])) < thr)


@njit(cache=True)
def _purge(
    state: Any, slot_of: Any, key_of: Any, free: Any, nfree: int, used: int, now: float,
    kmin: int, lam: float, thr: float, side_block: int, last_seen: Any, remember: bool,
) -> int:  # pragma: no cover - compiled  # fmt: skip
    """Free the rows of idle streams (pairs: both sides idle; ``side_block`` 0 for 1-D rows)."""
    for s in range(used):
        key = key_of[s]
        if key < 0:
            continue
        stale = _idle(state, s, 0, now, kmin, lam, thr)
        if stale and side_block > 0:
            stale = _idle(state, s, side_block, now, kmin, lam, thr)
        if stale:
            if remember:
                last_seen[key] = state[s, 0]
            slot_of[key] = -1
            key_of[s] = -1
            free[nfree] = s
            nfree += 1
    return nfree


@njit(cache=True)
def _run(
    ts: Any, size: Any, mi: Any, host: Any, hh_pair: Any, hh_side: Any, hp_pair: Any, hp_side: Any,
    num_mi: int, num_host: int, num_hh: int, num_hp: int,
    rates: Any, kmin: int, purge_every: int, purge_weight: float, out: Any,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    nl = rates.shape[0]
    w1 = 1 + 3 * nl
    w2 = 2 * (1 + 6 * nl) + 1 + 2 * nl
    lam_min = rates[kmin]
    num_jit = 2 * num_hh
    # pools: state rows, key -> row, row -> key, free rows
    mi_state = np.empty((min(num_mi, _INITIAL_ROWS) + 1, w1))
    mi_slot = np.full(num_mi, -1, dtype=np.int64)
    mi_key = np.full(mi_state.shape[0], -1, dtype=np.int64)
    mi_free = np.empty(mi_state.shape[0], dtype=np.int64)
    mi_nfree, mi_used = 0, 0
    h_state = np.empty((min(num_host, _INITIAL_ROWS) + 1, w1))
    h_slot = np.full(num_host, -1, dtype=np.int64)
    h_key = np.full(h_state.shape[0], -1, dtype=np.int64)
    h_free = np.empty(h_state.shape[0], dtype=np.int64)
    h_nfree, h_used = 0, 0
    j_state = np.empty((min(num_jit, _INITIAL_ROWS) + 1, w1))
    j_slot = np.full(num_jit, -1, dtype=np.int64)
    j_key = np.full(j_state.shape[0], -1, dtype=np.int64)
    j_free = np.empty(j_state.shape[0], dtype=np.int64)
    j_last_seen = np.full(num_jit, np.nan)
    j_nfree, j_used = 0, 0
    hh_state = np.empty((min(num_hh, _INITIAL_ROWS) + 1, w2))
    hh_slot = np.full(num_hh, -1, dtype=np.int64)
    hh_key = np.full(hh_state.shape[0], -1, dtype=np.int64)
    hh_free = np.empty(hh_state.shape[0], dtype=np.int64)
    hh_nfree, hh_used = 0, 0
    hp_state = np.empty((min(num_hp, _INITIAL_ROWS) + 1, w2))
    hp_slot = np.full(num_hp, -1, dtype=np.int64)
    hp_key = np.full(hp_state.shape[0], -1, dtype=np.int64)
    hp_free = np.empty(hp_state.shape[0], dtype=np.int64)
    hp_nfree, hp_used = 0, 0
    no_seen = np.empty(0)
    cache = np.full(nl + 1, -1.0)  # last dt and its decay factors (dt > 0 always, so -1 never matches)
    f_own = np.empty(nl)
    f_other = np.empty(nl)
    f_cov = np.empty(nl)

    for i in range(ts.shape[0]):
        t = ts[i]
        v = size[i]
        if purge_every > 0 and i > 0 and i % purge_every == 0:
            mi_nfree = _purge(
                mi_state,
                mi_slot,
                mi_key,
                mi_free,
                mi_nfree,
                mi_used,
                t,
                kmin,
                lam_min,
                purge_weight,
                0,
                no_seen,
                False,
            )
            h_nfree = _purge(
                h_state,
                h_slot,
                h_key,
                h_free,
                h_nfree,
                h_used,
                t,
                kmin,
                lam_min,
                purge_weight,
                0,
                no_seen,
                False,
            )
            j_nfree = _purge(
                j_state,
                j_slot,
                j_key,
                j_free,
                j_nfree,
                j_used,
                t,
                kmin,
                lam_min,
                purge_weight,
                0,
                j_last_seen,
                True,
            )
            hh_nfree = _purge(
                hh_state,
                hh_slot,
                hh_key,
                hh_free,
                hh_nfree,
                hh_used,
                t,
                kmin,
                lam_min,
                purge_weight,
                1 + 6 * nl,
                no_seen,
                False,
            )
            hp_nfree = _purge(
                hp_state,
                hp_slot,
                hp_key,
                hp_free,
                hp_nfree,
                hp_used,
                t,
                kmin,
                lam_min,
                purge_weight,
                1 + 6 * nl,
                no_seen,
                False,
            )
        # MI_dir
        key = mi[i]
        if mi_slot[key] < 0 and mi_nfree == 0 and mi_used == mi_state.shape[0]:
            mi_state, mi_key, mi_free = _grow(mi_state, mi_key, mi_used)
        s, new, mi_nfree, mi_used = _acquire(key, mi_slot, mi_key, mi_free, mi_nfree, mi_used)
        if new:
            _init_stream(mi_state, s, 0, t, nl)
        _stream_update(mi_state, s, v, t, rates, cache, f_own, out, i, 0)
        # H
        key = host[i]
        if h_slot[key] < 0 and h_nfree == 0 and h_used == h_state.shape[0]:
            h_state, h_key, h_free = _grow(h_state, h_key, h_used)
        s, new, h_nfree, h_used = _acquire(key, h_slot, h_key, h_free, h_nfree, h_used)
        if new:
            _init_stream(h_state, s, 0, t, nl)
        _stream_update(h_state, s, v, t, rates, cache, f_own, out, i, 3 * nl)
        # HH
        key = hh_pair[i]
        side = hh_side[i]
        if hh_slot[key] < 0 and hh_nfree == 0 and hh_used == hh_state.shape[0]:
            hh_state, hh_key, hh_free = _grow(hh_state, hh_key, hh_used)
        s, new, hh_nfree, hh_used = _acquire(key, hh_slot, hh_key, hh_free, hh_nfree, hh_used)
        _pair_update(hh_state, s, new, side, v, t, rates, cache, f_own, f_other, f_cov, out, i, 6 * nl)
        # HH_jit: the directed channel's inter-arrival time
        key = 2 * key + (1 if side == 1 else 0)
        if j_slot[key] < 0 and j_nfree == 0 and j_used == j_state.shape[0]:
            j_state, j_key, j_free = _grow(j_state, j_key, j_used)
        s, new, j_nfree, j_used = _acquire(key, j_slot, j_key, j_free, j_nfree, j_used)
        if new:
            seen = j_last_seen[key]
            _init_stream(j_state, s, 0, t if np.isnan(seen) else seen, nl)
        dt = t - j_state[s, 0]
        _stream_update(j_state, s, dt if dt > 0 else 0.0, t, rates, cache, f_own, out, i, 13 * nl)
        # HpHp
        key = hp_pair[i]
        if hp_slot[key] < 0 and hp_nfree == 0 and hp_used == hp_state.shape[0]:
            hp_state, hp_key, hp_free = _grow(hp_state, hp_key, hp_used)
        s, new, hp_nfree, hp_used = _acquire(key, hp_slot, hp_key, hp_free, hp_nfree, hp_used)
        _pair_update(hp_state, s, new, hp_side[i], v, t, rates, cache, f_own, f_other, f_cov, out, i, 16 * nl)
