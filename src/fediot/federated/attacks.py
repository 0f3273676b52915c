"""Hostile clients, for experiments and tests only: model, data and statistics poisoning, free-riders.

Each attack wraps an honest :class:`~fediot.federated.client.Client` (or, for data poisoning, builds a
client with poisoned rows), so it runs under every transport and executor; everything it does not
override (``set_scaler``, ``feature_stats``, ``errors``, ...) is the honest client's. With ``u = w_k - w``
the honest update from the global weights ``w``:

- ``scale``: sends ``w + s u`` (a boosted update); ``sign-flip``: ``w - s u``;
- ``random``: ``w + noise``, Gaussian per layer with ``s`` times the RMS of that layer of ``u``;
- ``alie`` ("a little is enough", Baruch et al. 2019): the colluding clients train honestly, and all send
  ``w + mean(u) - z std(u)`` (per coordinate over the colluders), small enough to pass distance-based
  defences; ``z`` from the paper's ``z_max`` for ``n`` clients of which ``m`` collude;
- ``data``: a compromised gateway adds attack rows, labelled benign, to its training rows (and hence to
  its scaler statistics): the backdoor an anomaly detector fears;
- ``stats-inflate`` / ``stats-deflate``: trains honestly but reports its scaler and threshold statistics
  as if every value were multiplied by ``factor`` (``> 1`` / ``< 1``);
- ``free-rider``: returns the global weights unchanged, claiming its example count.

Randomness (``random``) is derived from ``(seed, client_id, server_round)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fediot.data.scaling import SufficientStats
from fediot.errors import ConfigError
from fediot.federated.client import AutoencoderClient, Client, answer_query, client_seed
from fediot.federated.statistics import ERROR_STATS, FEATURE_STATS, encode_summary, threshold_rule_from_config
from fediot.federated.types import ClientUpdate, Config, Weights

__all__ = [
    "ATTACKS",
    "AttackConfig",
    "Collusion",
    "FreeRiderClient",
    "ModelPoisoningClient",
    "StatisticsPoisoningClient",
    "alie_z",
    "make_attacker",
    "poison_data",
    "select_malicious",
]

AttackKind = Literal[
    "none", "scale", "sign-flip", "random", "alie", "data", "stats-inflate", "stats-deflate", "free-rider"
]
ATTACKS: tuple[str, ...] = (
    "none", "scale", "sign-flip", "random", "alie", "data", "stats-inflate", "stats-deflate", "free-rider",
)  # fmt: skip
"""Attack kinds :func:`make_attacker` builds."""


@dataclass(frozen=True, slots=True)
class AttackConfig:
    """What the hostile clients do (``[attack]`` of the robustness experiment).

    Parameters
    ----------
    kind : str
        One of :data:`ATTACKS`.
    scale : float
        ``s`` of ``scale``, ``sign-flip`` and ``random`` (> 0).
    alie_z : float or None
        ``z`` of ``alie``; None: Baruch et al.'s ``z_max`` for the run's client count and colluders.
    factor : float
        ``stats-inflate`` multiplies the reported statistics by ``factor``, ``stats-deflate`` by
        ``1 / factor`` (> 1).
    data_ratio : float
        ``data``: attack rows added per benign training row (> 0; fewer if fewer exist).
    """

    kind: AttackKind = "none"
    scale: float = 10.0
    alie_z: float | None = None
    factor: float = 1e6
    data_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ATTACKS:
            raise ConfigError(f"attack.kind must be one of {', '.join(ATTACKS)}, got {self.kind!r}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ConfigError(f"attack.scale must be > 0 and finite, got {self.scale!r}")
        if not (self.factor > 1 and math.isfinite(self.factor)):
            raise ConfigError(f"attack.factor must be > 1 and finite, got {self.factor!r}")
        if not (self.data_ratio > 0 and math.isfinite(self.data_ratio)):
            raise ConfigError(f"attack.data_ratio must be > 0 and finite, got {self.data_ratio!r}")
        if self.alie_z is not None and not math.isfinite(self.alie_z):
            raise ConfigError(f"attack.alie_z must be finite or empty, got {self.alie_z!r}")


def select_malicious(client_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """Return ``round(fraction * n)`` of ``client_ids`` chosen by ``seed`` (sorted), the hostile ones.

    Examples
    --------
    >>> select_malicious([f"c{i}" for i in range(10)], 0.2, seed=0) == select_malicious(
    ...     [f"c{i}" for i in range(10)], 0.2, seed=0)
    True
    >>> len(select_malicious([f"c{i}" for i in range(26)], 0.3, seed=0))
    8
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"malicious fraction must be in [0, 1), got {fraction}")
    count = round(fraction * len(client_ids))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 14]))
    chosen = rng.choice(len(client_ids), size=count, replace=False).tolist() if count else []
    return sorted(client_ids[int(i)] for i in chosen)


def alie_z(num_clients: int, num_colluders: int) -> float:
    """Baruch et al.'s ``z_max``: ``s = floor(n / 2 + 1) - m`` (at least 1), ``z = Phi^-1((n - s) / n)``.

    Examples
    --------
    >>> round(alie_z(26, 5), 3)
    0.396
    """
    s = max(1, math.floor(num_clients / 2 + 1) - num_colluders)  # s <= 0: a colluding majority
    p = (num_clients - s) / num_clients
    if p <= 0.5:
        return 0.0
    return NormalDist().inv_cdf(min(p, 1 - 1e-12))


def _delta(update: Weights, start: Weights) -> list[NDArray[np.float64]]:
    return [u.astype(np.float64) - w.astype(np.float64) for u, w in zip(update, start, strict=True)]


def _server_round(config: Config) -> int:
    return int(config.get("server-round", 1))


class _Wrapper:
    """Delegates everything it does not override to the honest client."""

    def __init__(self, inner: Client) -> None:
        self.inner = inner
        self.client_id = inner.client_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Collusion:
    """The shared knowledge of colluding ``alie`` clients: their honest updates of the current round.

    The first member asked in a round trains every member honestly from the round's weights (as each
    would) and computes ``mean(u) - z std(u)``; every member then sends it.

    Parameters
    ----------
    members : sequence of Client
        The honest clients of the colluders.
    z : float
        Standard deviations to move against the mean.
    """

    def __init__(self, members: Sequence[Client], z: float) -> None:
        self.members = {c.client_id: c for c in members}
        self.z = z
        self._round: int | None = None
        self._honest: dict[str, ClientUpdate] = {}
        self._poisoned: Weights = []

    def set_scaler(self, scaler: Any) -> None:
        """Give every member the scaler one of them received (they share what they learn)."""
        for member in self.members.values():
            set_scaler = getattr(member, "set_scaler", None)
            if callable(set_scaler):
                set_scaler(scaler)

    def update(self, client_id: str, weights: Weights, config: Config) -> ClientUpdate:
        """Return member ``client_id``'s reply for this round (the same poisoned weights for every member)."""
        server_round = _server_round(config)
        if self._round != server_round:
            self._honest = {cid: c.fit(weights, config) for cid, c in self.members.items()}
            deltas = [_delta(u.weights, weights) for u in self._honest.values()]
            poisoned: Weights = []
            for layer, w in enumerate(weights):
                stacked = np.stack([d[layer] for d in deltas])
                std = stacked.std(axis=0, ddof=1) if stacked.shape[0] > 1 else np.zeros(w.shape)
                poisoned.append((w + stacked.mean(axis=0) - self.z * std).astype(np.float32))
            self._poisoned = poisoned
            self._round = server_round
        honest = self._honest[client_id]
        return ClientUpdate([p.copy() for p in self._poisoned], honest.num_examples, dict(honest.metrics))


class ModelPoisoningClient(_Wrapper):
    """Trains honestly, then sends a poisoned model (``scale``, ``sign-flip``, ``random`` or ``alie``).

    Parameters
    ----------
    inner : Client
        The honest client.
    kind : {"scale", "sign-flip", "random", "alie"}
    scale : float
        ``s`` (see the module docstring).
    seed : int
        Run seed (``random``).
    collusion : Collusion, optional
        Required for ``alie``.
    """

    def __init__(
        self, inner: Client, kind: str, *, scale: float, seed: int, collusion: Collusion | None = None
    ) -> None:
        super().__init__(inner)
        if kind not in ("scale", "sign-flip", "random", "alie"):
            raise ConfigError(f"not a model-poisoning attack: {kind!r}")
        if kind == "alie" and collusion is None:
            raise ConfigError("the alie attack needs a Collusion of its members")
        self.kind = kind
        self.scale = scale
        self.seed = seed
        self.collusion = collusion

    def set_scaler(self, scaler: Any) -> None:
        """Scale the honest client's rows (and, for ``alie``, every colluder's)."""
        if self.collusion is not None:
            self.collusion.set_scaler(scaler)
        else:
            self.inner.set_scaler(scaler)  # type: ignore[attr-defined]

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        """Return the poisoned reply (honest example count and metrics)."""
        if self.collusion is not None:
            return self.collusion.update(self.client_id, weights, config)
        honest = self.inner.fit(weights, config)
        deltas = _delta(honest.weights, weights)
        if self.kind == "scale":
            out = [w + self.scale * d for w, d in zip(weights, deltas, strict=True)]
        elif self.kind == "sign-flip":
            out = [w - self.scale * d for w, d in zip(weights, deltas, strict=True)]
        else:
            rng = np.random.default_rng(client_seed(self.seed, self.client_id, _server_round(config)))
            out = [
                w + rng.normal(0.0, self.scale * math.sqrt(float(np.mean(d * d))) + 1e-12, w.shape)
                for w, d in zip(weights, deltas, strict=True)
            ]
        return ClientUpdate(
            [np.asarray(o, dtype=np.float32) for o in out], honest.num_examples, honest.metrics
        )


class FreeRiderClient(_Wrapper):
    """Returns the global weights unchanged (no training), claiming its honest example count."""

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        """Return ``weights`` as its update."""
        del config
        count = int(getattr(self.inner, "num_train", 1))
        return ClientUpdate([np.array(w, dtype=np.float32) for w in weights], count, {})


class StatisticsPoisoningClient(_Wrapper):
    """Trains honestly, but reports its statistics as if every value were multiplied by ``factor``.

    ``feature_stats``: mean, min and max times ``factor``, ``m2`` times ``factor ** 2``; ``error_stats``:
    the summary of its reconstruction errors times ``factor`` (so the error mean, std, min, max and
    histogram all move).

    Parameters
    ----------
    inner : Client
        The honest client.
    factor : float
        > 1 inflates, in (0, 1) deflates.
    """

    def __init__(self, inner: Client, factor: float) -> None:
        super().__init__(inner)
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"statistics poisoning factor must be > 0 and finite, got {factor!r}")
        self.factor = factor

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        """Train honestly."""
        return self.inner.fit(weights, config)

    def answer(self, name: str, weights: Weights | None, config: Config) -> dict[str, Any]:
        """Answer a statistics query with the scaled statistics (see the class docstring)."""
        from fediot.detect.threshold import error_summary

        f = self.factor
        if name == FEATURE_STATS:
            own = getattr(self.inner, "feature_stats", None)
            if not callable(own):
                return answer_query(self.inner, name, weights, config)
            s: SufficientStats = own(str(config.get("scaler", "minmax")))
            lo, hi = np.minimum(s.min * f, s.max * f), np.maximum(s.min * f, s.max * f)
            return encode_summary(SufficientStats(s.count, s.mean * f, s.m2 * f * f, lo, hi))
        if name == ERROR_STATS and weights is not None:
            errors = getattr(self.inner, "errors", None)
            if callable(errors):
                which = "opt" if getattr(self.inner, "x_opt_raw", np.zeros(0)).shape[0] else "train"
                scaled = np.asarray(errors(weights, which)) * f
                return encode_summary(error_summary(scaled, threshold_rule_from_config(config)))
        return answer_query(self.inner, name, weights, config)


def poison_data(
    client: AutoencoderClient, attack_rows: NDArray[np.float32], ratio: float, seed: int
) -> AutoencoderClient:
    """Return a copy of ``client`` that also trains on attack rows labelled benign (data poisoning).

    ``min(len(attack_rows), round(ratio * n_train))`` rows drawn by ``seed`` are appended to the benign
    training rows (they enter its scaler statistics too); its opt rows stay benign.
    """
    if attack_rows.ndim != 2 or attack_rows.shape[1] != client.x_train_raw.shape[1]:
        raise ConfigError(
            f"client {client.client_id!r}: attack rows of shape {attack_rows.shape} do not match its "
            f"{client.x_train_raw.shape[1]} features"
        )
    k = min(attack_rows.shape[0], max(1, round(ratio * client.num_train)))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 15, client_seed(seed, client.client_id, 0)]))
    picked = attack_rows[np.sort(rng.choice(attack_rows.shape[0], size=k, replace=False))]
    return AutoencoderClient(
        client.client_id,
        client.model_factory,
        np.concatenate([client.x_train_raw, picked]).astype(np.float32),
        client.x_opt_raw,
        client.train_config,
        seed=client.seed,
        retrain_every=client.retrain_every,
        retrain_fraction=client.retrain_fraction,
    )


def make_attacker(
    clients: dict[str, Client],
    malicious: Sequence[str],
    attack: AttackConfig,
    *,
    seed: int,
    attack_rows: dict[str, NDArray[np.float32]] | None = None,
) -> dict[str, Client]:
    """Return ``clients`` with the ``malicious`` ones replaced by ``attack``'s hostile clients (same order).

    Parameters
    ----------
    clients : dict of str to Client
        The honest federation.
    malicious : sequence of str
        Ids of the hostile clients (:func:`select_malicious`).
    attack : AttackConfig
    seed : int
        Run seed.
    attack_rows : dict of str to ndarray, optional
        ``data``: each hostile client's attack rows to train on.
    """
    unknown = [cid for cid in malicious if cid not in clients]
    if unknown:
        raise ConfigError(f"malicious clients {unknown} are not in the federation")
    if attack.kind == "none" or not malicious:
        return dict(clients)
    out = dict(clients)
    collusion = None
    if attack.kind == "alie":
        z = attack.alie_z if attack.alie_z is not None else alie_z(len(clients), len(malicious))
        collusion = Collusion([clients[cid] for cid in malicious], z)
    for cid in malicious:
        honest = clients[cid]
        if attack.kind in ("scale", "sign-flip", "random", "alie"):
            out[cid] = ModelPoisoningClient(
                honest, attack.kind, scale=attack.scale, seed=seed, collusion=collusion
            )
        elif attack.kind == "data":
            if not isinstance(honest, AutoencoderClient) or attack_rows is None or cid not in attack_rows:
                raise ConfigError(f"the data attack needs an AutoencoderClient and attack rows for {cid!r}")
            out[cid] = poison_data(honest, attack_rows[cid], attack.data_ratio, seed)
        elif attack.kind == "stats-inflate":
            out[cid] = StatisticsPoisoningClient(honest, attack.factor)
        elif attack.kind == "stats-deflate":
            out[cid] = StatisticsPoisoningClient(honest, 1.0 / attack.factor)
        else:
            out[cid] = FreeRiderClient(honest)
    return out
