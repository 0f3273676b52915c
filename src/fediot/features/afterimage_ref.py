"""Plain-Python AfterImage (Kitsune's damped incremental statistics): the readable reference and test oracle.

Semantics follow Kitsune-py's ``AfterImage.py``/``netStat.py`` (Mirsky et al., NDSS 2018), as used for
N-BaIoT, one packet at a time:

* A stream keeps, per lambda, a weight ``w`` (starts at 1e-20), a linear sum ``LS`` and a squared sum
  ``SS``. On an arrival at time ``t`` it first decays all three by ``2 ** (-lambda * (t - t_last))`` (only
  when ``t > t_last``; ``t_last`` then becomes ``t``), then adds ``1``, ``v``, ``v * v``. Mean is ``LS / w``,
  variance ``|SS / w - mean ** 2|``. A new stream starts with ``t_last`` = its first packet's time.
  The decay factor is computed as ``exp(-lambda * ln 2 * dt)`` (equal to Kitsune's ``pow(2, ...)`` up to
  rounding; ``exp`` gives bit-identical results in Python and numba, ``pow(2, x)`` does not).
* ``MI_dir`` (source MAC + source IP), ``H`` (source IP) and ``HH_jit`` report weight, mean, variance.
  The jitter stream (keyed by the directed IP channel) inserts ``t - t_last`` (0 when not positive)
  instead of the size, so its first value is 0.
* ``HH`` (directed IP channel) and ``HpHp`` (directed socket, IP + port) keep one stream per direction
  and a shared covariance term per pair: ``CF3`` (sum of residual products) and ``w3`` (starts at 1e-20),
  decayed with the pair's own last time. After a packet is inserted on its direction, Kitsune's
  ``incStat_cov.update_cov`` runs: decay the other direction, decay ``CF3``/``w3``, then
  ``res = v - mean_own``, ``CF3 += res * last_res_other``, ``w3 += 1``, ``last_res_own = res``. Kitsune
  calls it twice per packet once the pair exists (from ``insert`` and from ``update_get_2D_Stats``) and once
  on the pair's first packet; we do the same. ``last_res`` is never decayed (Kitsune decays only the
  residual it is about to overwrite). Reported: weight, mean, std of the packet's direction,
  magnitude ``sqrt(mean_i^2 + mean_j^2)``, radius ``sqrt(var_i^2 + var_j^2)``, covariance ``CF3 / w3`` and
  pcc ``cov / (std_i * std_j)`` (0 when that product is 0). The other direction contributes its mean and
  variance as of its own last packet (Kitsune's cached values; identical in exact arithmetic, and safe when
  its weight has since underflowed to 0). A packet whose source and destination are the
  same endpoint has covariance and pcc 0 and uses its own direction for both sides (as Kitsune does).

Deliberate deviations from Kitsune-py (all documented in ``fediot.features``):

1. ``HH`` weight/mean/std are per directed IP channel (as in the published N-BaIoT rows, whose ``HH_*_weight``
   always equals ``HH_jit_*_weight``), not per source IP as in today's Kitsune-py; ``H`` is the per-source-IP
   stream N-BaIoT adds. ``HpHp`` streams are per directed socket (IP:port -> IP:port) with its reverse.
2. Keys are typed tuples, so Kitsune's string-concatenation collisions (``"10.0.0.1" + "23"`` ==
   ``"10.0.0.12" + "3"``) cannot happen.
3. Idle streams are purged (bounded memory, see ``AfterImageConfig``). A purged jitter stream remembers its
   last time, so the gap is still reported; a purged pair restarts its covariance at 0.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from fediot.features.columns import AfterImageConfig
from fediot.features.pcap import PROTO_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PacketTable

__all__ = ["compute_features_ref", "packet_keys"]

_Key = tuple[object, ...]
_LN2 = math.log(2.0)


def _decay(values: tuple[list[float], ...], dt: float, rates: tuple[float, ...]) -> None:
    """Multiply entry ``k`` of every list by ``exp(-rates[k] * dt)`` (damped window statistics)."""
    for k, rate in enumerate(rates):
        factor = math.exp(-rate * dt)
        for v in values:
            v[k] *= factor


class _IncStat:
    """Damped count, linear and squared sums of one stream, for every lambda."""

    __slots__ = ("last", "last_mean", "last_res", "last_var", "ss", "sum", "w")

    def __init__(self, t: float, num_lambdas: int) -> None:
        self.last = t
        self.w = [1e-20] * num_lambdas
        self.sum = [0.0] * num_lambdas
        self.ss = [0.0] * num_lambdas
        self.last_res = [0.0] * num_lambdas
        self.last_mean = [0.0] * num_lambdas
        self.last_var = [0.0] * num_lambdas

    def decay(self, t: float, rates: tuple[float, ...]) -> None:
        if t > self.last:
            _decay((self.sum, self.ss, self.w), t - self.last, rates)
            self.last = t

    def insert(self, v: float, t: float, rates: tuple[float, ...]) -> None:
        self.decay(t, rates)
        for k in range(len(rates)):
            self.sum[k] += v
            self.ss[k] += v * v
            self.w[k] += 1.0

    def mean(self, k: int) -> float:
        return self.sum[k] / self.w[k]

    def var(self, k: int) -> float:
        mean = self.sum[k] / self.w[k]
        return abs(self.ss[k] / self.w[k] - mean * mean)

    def remember(self) -> None:
        """Keep mean and variance as of now: the other direction of a pair reports these (Kitsune's cache)."""
        for k in range(len(self.w)):
            self.last_mean[k] = self.mean(k)
            self.last_var[k] = self.var(k)

    def idle(self, now: float, k: int, rate: float, threshold: float) -> bool:
        return self.w[k] * math.exp(-rate * (now - self.last)) < threshold


class _Pair:
    """Both directions between two endpoints plus their shared residual-product (covariance) term."""

    __slots__ = ("cf3", "last", "streams", "w3")

    def __init__(self, t: float, num_lambdas: int) -> None:
        self.streams = (_IncStat(t, num_lambdas), _IncStat(t, num_lambdas))
        self.last = t
        self.cf3 = [0.0] * num_lambdas
        self.w3 = [1e-20] * num_lambdas

    def update_cov(self, side: int, v: float, t: float, rates: tuple[float, ...]) -> None:
        own, other = self.streams[side], self.streams[1 - side]
        other.decay(t, rates)
        if t > self.last:
            _decay((self.cf3, self.w3), t - self.last, rates)
            self.last = t
        for k in range(len(rates)):
            res = v - own.mean(k)
            self.cf3[k] += res * other.last_res[k]
            self.w3[k] += 1.0
            own.last_res[k] = res


def packet_keys(packets: PacketTable, i: int) -> tuple[_Key, _Key, _Key, _Key, _Key, _Key]:
    """Return Kitsune's keys of packet ``i``: (MI, host, IP source, IP destination, socket src, socket dst).

    Parameters
    ----------
    packets : PacketTable
        Parsed packets.
    i : int
        Row index.
    """
    version = int(packets.ip_version[i])
    proto = int(packets.protocol[i])
    src_mac = int(packets.src_mac[i])
    dst_mac = int(packets.dst_mac[i])
    if version == 0:  # no IP: Kitsune uses the MAC addresses as "IPs"
        src: _Key = ("mac", src_mac)
        dst: _Key = ("mac", dst_mac)
    else:
        src = (f"ipv{version}", int(packets.src_ip[i, 0]), int(packets.src_ip[i, 1]))
        dst = (f"ipv{version}", int(packets.dst_ip[i, 0]), int(packets.dst_ip[i, 1]))
    if version == 0 or proto == PROTO_ARP:
        sock_src: _Key = ("mac", src_mac, "")
        sock_dst: _Key = ("mac", dst_mac, "")
    elif proto in (PROTO_TCP, PROTO_UDP):
        sock_src = (*src, int(packets.src_port[i]))
        sock_dst = (*dst, int(packets.dst_port[i]))
    elif proto == PROTO_ICMP:
        sock_src = (*src, "icmp")
        sock_dst = (*dst, "icmp")
    else:
        sock_src = (*src, "")
        sock_dst = (*dst, "")
    return (src_mac, *src), src, src, dst, sock_src, sock_dst


class _AfterImage:
    """All stream tables; ``process`` returns one feature row per packet.

    ``process`` may be called again with the next packets of the same stream: the purge schedule counts
    packets across calls, as :class:`fediot.features.StreamingExtractor` does.
    """

    def __init__(self, config: AfterImageConfig) -> None:
        self.rates = tuple(float(lam) * _LN2 for lam in config.lambdas)
        self.config = config
        self.kmin = min(range(len(self.rates)), key=lambda k: self.rates[k])
        self.mi: dict[_Key, _IncStat] = {}
        self.host: dict[_Key, _IncStat] = {}
        self.jit: dict[_Key, _IncStat] = {}
        self.jit_last_seen: dict[_Key, float] = {}
        self.hh: dict[_Key, _Pair] = {}
        self.hp: dict[_Key, _Pair] = {}
        self.num_packets = 0

    def stream(self, table: dict[_Key, _IncStat], key: _Key, t: float) -> _IncStat:
        st = table.get(key)
        if st is None:
            st = table[key] = _IncStat(t, len(self.rates))
        return st

    def stats_1d(self, st: _IncStat, v: float, t: float) -> list[float]:
        st.insert(v, t, self.rates)
        row = []
        for k in range(len(self.rates)):
            row += [st.w[k], st.mean(k), st.var(k)]
        return row

    def jitter(self, key: _Key, t: float) -> list[float]:
        st = self.jit.get(key)
        if st is None:
            st = self.jit[key] = _IncStat(self.jit_last_seen.get(key, t), len(self.rates))
        dt = t - st.last
        return self.stats_1d(st, dt if dt > 0 else 0.0, t)

    def stats_2d(self, table: dict[_Key, _Pair], src: _Key, dst: _Key, v: float, t: float) -> list[float]:
        key = (src, dst) if src <= dst else (dst, src)
        pair = table.get(key)
        is_new = pair is None
        if pair is None:
            pair = table[key] = _Pair(t, len(self.rates))
        rates = self.rates
        if src == dst:  # Kitsune's self-link: its residual partner is never set, so CF3 stays 0
            own = other = pair.streams[0]
            own.insert(v, t, rates)
        else:
            side = 0 if src < dst else 1
            own, other = pair.streams[side], pair.streams[1 - side]
            own.insert(v, t, rates)
            for _ in range(1 if is_new else 2):
                pair.update_cov(side, v, t, rates)
        own.remember()
        row = []
        for k in range(len(rates)):
            mean_i, mean_j = own.last_mean[k], other.last_mean[k]
            var_i, var_j = own.last_var[k], other.last_var[k]
            std_i, std_j = math.sqrt(var_i), math.sqrt(var_j)
            cov = pair.cf3[k] / pair.w3[k]
            ss = std_i * std_j
            row += [
                own.w[k], mean_i, std_i,
                math.sqrt(mean_i * mean_i + mean_j * mean_j),
                math.sqrt(var_i * var_i + var_j * var_j),
                cov, cov / ss if ss != 0 else 0.0,
            ]  # fmt: skip
        return row

    def purge(self, now: float) -> None:
        k, rate, thr = self.kmin, self.rates[self.kmin], self.config.purge_weight
        for table in (self.mi, self.host):
            for key in [key for key, st in table.items() if st.idle(now, k, rate, thr)]:
                del table[key]
        for key in [key for key, st in self.jit.items() if st.idle(now, k, rate, thr)]:
            self.jit_last_seen[key] = self.jit.pop(key).last
        for pairs in (self.hh, self.hp):
            idle = [
                key for key, p in pairs.items()
                if p.streams[0].idle(now, k, rate, thr) and p.streams[1].idle(now, k, rate, thr)
            ]  # fmt: skip
            for key in idle:
                del pairs[key]

    def process(self, packets: PacketTable) -> NDArray[np.float64]:
        n = len(packets)
        out = np.empty((n, self.config.num_features), dtype=np.float64)
        every = self.config.purge_every
        for i in range(n):
            t = float(packets.timestamp[i])
            v = float(packets.length[i])
            seq = self.num_packets + i
            if every and seq and seq % every == 0:
                self.purge(t)
            mi_key, host_key, src, dst, sock_src, sock_dst = packet_keys(packets, i)
            row = self.stats_1d(self.stream(self.mi, mi_key, t), v, t)
            row += self.stats_1d(self.stream(self.host, host_key, t), v, t)
            row += self.stats_2d(self.hh, src, dst, v, t)
            row += self.jitter((src, dst), t)
            row += self.stats_2d(self.hp, sock_src, sock_dst, v, t)
            out[i] = row
        self.num_packets += n
        return out


def compute_features_ref(packets: PacketTable, config: AfterImageConfig | None = None) -> NDArray[np.float64]:
    """Compute the AfterImage features packet by packet in plain Python (slow; the test oracle).

    Parameters
    ----------
    packets : PacketTable
        Packets in processing order (n_packets rows).
    config : AfterImageConfig, optional
        Lambdas and purging; the default gives the 115 N-BaIoT columns.

    Returns
    -------
    ndarray of shape (n_packets, 23 * n_lambdas), float64
        One row per packet in ``feature_names(config.lambdas)`` order.
    """
    return _AfterImage(config or AfterImageConfig()).process(packets)
