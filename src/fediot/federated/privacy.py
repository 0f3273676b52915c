"""Client-level differential privacy: DP-FedAvg(M), private statistics and the accountant of a federation.

Pure: no ``flwr``, no file I/O. The accountant is Google's ``dp-accounting`` (the package Flower's
``RdpAccountant`` wraps; install the ``dp`` extra).

Mechanisms (the unit protected is one **client**, i.e. one gateway's whole contribution):

- **Central DP-FedAvg** (:class:`DPFedAvg`, McMahan et al. 2018; the server is trusted to add the noise):
  each reply's update ``w_k - w`` is clipped to L2 norm ``C`` (:func:`clip_update`), the clipped updates
  are averaged with equal client weights over the ``m`` clients selected (a fixed denominator, so one
  client moves the mean by at most ``C / m``), and Gaussian noise of standard deviation ``z C / m`` is
  added to that mean. The noised mean is then handed to the wrapped strategy as its only reply, so FedAvgM's
  momentum (or any other server rule) is post-processing of a private release. With FedAvg inside and every
  selected client replying this is Flower 1.41's ``DifferentialPrivacyServerSideFixedClipping`` over
  ``FedAvg`` (equal client weights), draw for draw when both draw from the same generator (a test).
- **Adaptive clipping** (Andrew et al. 2021; Flower's ``DifferentialPrivacyServerSideAdaptiveClipping``):
  the clipping norm follows a geometric update towards the ``target_quantile`` of the update norms, from a
  noised count of clipped replies. Flower splits the noise multiplier ``z`` between the count and the
  model as ``z_model = (z**-2 - (2 sigma_b)**-2) ** -0.5`` with ``sigma_b = m / 20`` by default; so do we.
  One difference, on purpose: Flower calibrates the model noise with the clipping norm *after* the update
  of that round; we use the norm the round's replies were clipped with (the sensitivity of the release).
- **Local DP** (:func:`local_dp_update`; the server is not trusted): each client clips its own update and
  adds noise of standard deviation ``z C`` before replying; the server just averages.
- **Private statistics** (:func:`private_merge`): the scaler's per-feature statistics and the threshold's
  error statistics are merged as a noised, equally weighted mean of each client's clipped summary vector
  (mean, second moment, min, max per feature) instead of the exact merge: the server learns the average
  client's statistics plus Gaussian noise, never one client's min/max.

Accounting (:class:`PrivacyAccountant`): every release is a sampled Gaussian mechanism, composed with RDP.
Client selection draws ``m`` of ``N`` clients without replacement, so events are
``SampledWithoutReplacementDpEvent(N, m, Gaussian)`` under the *replace-one* relation, where replacing one
client's clipped contribution moves the sum by up to ``2 C``: the accounted noise multiplier is ``z / 2``.
A statistics round asks every client (``m = N``, no amplification).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fediot.config import FLConfig, PrivacyConfig
from fediot.data.scaling import SufficientStats
from fediot.detect.threshold import ErrorSummary
from fediot.errors import ConfigError, FediotError
from fediot.federated.selection import num_selected
from fediot.federated.statistics import FEATURE_STATS, merge_summaries
from fediot.federated.strategy import Strategy
from fediot.federated.types import ClientUpdate, Config, Weights

__all__ = [
    "LOCAL_CLIP",
    "LOCAL_NOISE",
    "DPFedAvg",
    "PrivacyAccountant",
    "PrivacyBudgetExceeded",
    "PrivateFederation",
    "adaptive_noise_multipliers",
    "apply_local_dp",
    "calibrate_noise_multiplier",
    "clip_update",
    "gaussian_noise",
    "local_dp_update",
    "private_merge",
    "setup_privacy",
    "update_norm",
]

NoiseSource = np.random.Generator | np.random.RandomState
"""Anything with ``normal(loc, scale, size)``: the engine uses a seeded Generator."""


class PrivacyBudgetExceeded(FediotError, RuntimeError):
    """The next private release would spend more than ``privacy.epsilon``: the run stops before it."""


def update_norm(update: Weights) -> float:
    """Return the L2 norm of all layers of ``update`` flattened together.

    Examples
    --------
    >>> update_norm([np.array([3.0], np.float32), np.array([[4.0]], np.float32)])
    5.0
    """
    return float(math.sqrt(sum(float(np.linalg.norm(u.ravel())) ** 2 for u in update)))


def clip_update(update: Weights, clipping_norm: float) -> tuple[Weights, bool]:
    """Scale ``update`` by ``min(1, C / ||update||)`` (flat clipping); return it and whether it was clipped.

    Examples
    --------
    >>> clipped, was = clip_update([np.array([3.0, 4.0], np.float32)], 1.0)
    >>> clipped[0].tolist(), was
    ([0.6000000238418579, 0.800000011920929], True)
    """
    if not clipping_norm > 0:
        raise ConfigError(f"privacy.clipping_norm must be > 0, got {clipping_norm}")
    norm = update_norm(update)
    scale = 1.0 if norm == 0 else min(1.0, clipping_norm / norm)
    return [(u * scale).astype(u.dtype) for u in update], scale < 1.0


def gaussian_noise(like: Weights, std: float, rng: NoiseSource) -> Weights:
    """Return independent ``N(0, std^2)`` noise shaped like ``like``, layer by layer (in that order)."""
    return [rng.normal(0.0, std, w.shape).astype(w.dtype) for w in like]


def adaptive_noise_multipliers(
    noise_multiplier: float, num_sampled: int, clipped_count_stddev: float | None
) -> tuple[float, float]:
    """Split ``z`` between the clipped-count query and the model (Andrew et al. 2021, as Flower does).

    Returns ``(sigma_b, z_model)``: the standard deviation of the noised count and the model's noise
    multiplier, so that the two releases together cost what one Gaussian release with ``z`` costs.

    Examples
    --------
    >>> sigma_b, z = adaptive_noise_multipliers(1.0, 20, None)
    >>> sigma_b, round(z, 6)
    (1.0, 1.154701)
    """
    if noise_multiplier <= 0:
        return (0.0 if clipped_count_stddev is None else clipped_count_stddev), 0.0
    sigma_b = num_sampled / 20 if clipped_count_stddev is None else clipped_count_stddev
    if noise_multiplier >= 2 * sigma_b:
        raise ConfigError(
            f"privacy.noise_multiplier={noise_multiplier:.4g} is too large for adaptive clipping with "
            f"clipped_count_stddev={sigma_b:.4g} (needs noise_multiplier < 2 * clipped_count_stddev; "
            "raise privacy.clipped_count_stddev or select more clients)"
        )
    return sigma_b, float((noise_multiplier**-2 - (2 * sigma_b) ** -2) ** -0.5)


def local_dp_update(
    update: ClientUpdate, current: Weights, *, clipping_norm: float, noise_multiplier: float, rng: NoiseSource
) -> ClientUpdate:
    """Local DP on a client: clip ``w_k - w`` to ``C``, add ``N(0, (z C)^2)`` noise, reply ``w + noisy``.

    The server then needs no trust: what leaves the gateway is already a Gaussian mechanism's output. The
    reply's weight becomes 1 (equal client weights, as the sensitivity bound needs).
    """
    delta = [np.subtract(w, c) for w, c in zip(update.weights, current, strict=True)]
    clipped, _ = clip_update(delta, clipping_norm)
    noise = gaussian_noise(clipped, noise_multiplier * clipping_norm, rng)
    weights = [(c + d + n).astype(np.float32) for c, d, n in zip(current, clipped, noise, strict=True)]
    return ClientUpdate(weights, 1, dict(update.metrics))


# --- the accountant ----------------------------------------------------------------------------------


def _dp() -> tuple[Any, Any]:
    try:
        from dp_accounting import dp_event, privacy_accountant
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "differential privacy needs Google's dp-accounting package: pip install 'fediot[dp]'"
        ) from None
    return dp_event, privacy_accountant


def _epsilon(events: Sequence[tuple[float, int, int]], population: int, delta: float) -> float:
    """Epsilon of composing ``(noise_multiplier, sample_size, count)`` events (RDP, replace-one)."""
    dp_event, privacy_accountant = _dp()
    from dp_accounting.rdp import RdpAccountant

    if not events:
        return 0.0
    acc = RdpAccountant(neighboring_relation=privacy_accountant.NeighboringRelation.REPLACE_ONE)
    for z, sample, count in events:
        if z <= 0:
            return math.inf
        gauss = dp_event.GaussianDpEvent(z / 2.0)  # replace-one: sensitivity 2C
        if sample >= population:
            acc.compose(gauss, count)
        else:
            acc.compose(dp_event.SampledWithoutReplacementDpEvent(population, sample, gauss), count)
    return float(acc.get_epsilon(delta))


@dataclass(slots=True)
class PrivacyAccountant:
    """Adds up the privacy a federation spends: epsilon at ``delta`` over every Gaussian release.

    Parameters
    ----------
    population : int
        ``N``, the clients selection draws from.
    delta : float
        The stated delta (in (0, 1)); should be well below ``1 / N``.
    budget : float or None
        ``privacy.epsilon``: :meth:`spend` refuses a release that would take epsilon past it.

    Examples
    --------
    >>> acc = PrivacyAccountant(population=10, delta=1e-5, budget=None)
    >>> acc.spend("round 1", noise_multiplier=2.0, sample_size=5)
    >>> 0 < acc.epsilon() < math.inf
    True
    """

    population: int
    delta: float
    budget: float | None
    events: list[tuple[str, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.population < 1:
            raise ConfigError(f"privacy accounting needs >= 1 client, got {self.population}")
        if not 0.0 < self.delta < 1.0:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")

    def _grouped(self, extra: Sequence[tuple[str, float, int]] = ()) -> list[tuple[float, int, int]]:
        counts: dict[tuple[float, int], int] = {}
        for _, z, m in [*self.events, *extra]:
            counts[(z, m)] = counts.get((z, m), 0) + 1
        return [(z, m, c) for (z, m), c in counts.items()]

    def epsilon(self) -> float:
        """Return the epsilon spent so far at :attr:`delta` (0 before any release)."""
        return _epsilon(self._grouped(), self.population, self.delta)

    def spend(self, what: str, *, noise_multiplier: float, sample_size: int) -> None:
        """Record one release of a Gaussian mechanism over ``sample_size`` of the clients.

        Raises
        ------
        PrivacyBudgetExceeded
            If the release would take epsilon past :attr:`budget` (nothing is recorded then).
        """
        event = (what, float(noise_multiplier), min(int(sample_size), self.population))
        if self.budget is not None:
            after = _epsilon(self._grouped([event]), self.population, self.delta)
            if after > self.budget:
                raise PrivacyBudgetExceeded(
                    f"{what}: releasing it would spend epsilon={after:.4g} at delta={self.delta:g}, past "
                    f"privacy.epsilon={self.budget:g} (spent so far: {self.epsilon():.4g}); the run stops "
                    "before it"
                )
        self.events.append(event)

    def to_dict(self) -> dict[str, Any]:
        """Return what results record: epsilon, delta, budget, the releases and how they were accounted."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "budget": self.budget,
            "releases": len(self.events),
            "population": self.population,
            "events": [{"what": w, "noise_multiplier": z, "sample_size": m} for w, z, m in self.events],
            "accountant": "dp-accounting RDP; sampled without replacement, replace-one (noise z/2)",
        }

    def state_dict(self) -> dict[str, Any]:
        """Return the ledger (what a checkpoint holds)."""
        return {"events": [[w, z, m] for w, z, m in self.events]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the ledger of :meth:`state_dict`."""
        self.events = [(str(w), float(z), int(m)) for w, z, m in state.get("events", [])]


def calibrate_noise_multiplier(
    epsilon: float, *, delta: float, population: int, sample_size: int, rounds: int, statistics: int = 0
) -> float:
    """Return the smallest noise multiplier ``z`` (to 0.1 %) whose whole planned run spends <= ``epsilon``.

    The plan: ``rounds`` model releases over ``sample_size`` of ``population`` clients, plus
    ``statistics`` releases over all clients, every one with the same ``z``.
    """
    if not epsilon > 0:
        raise ConfigError(f"privacy.epsilon must be > 0, got {epsilon}")

    def spent(z: float) -> float:
        events = [(z, min(sample_size, population), rounds)]
        if statistics:
            events.append((z, population, statistics))
        return _epsilon(events, population, delta)

    lo, hi = 1e-2, 1.0
    while spent(hi) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ConfigError(f"privacy.epsilon={epsilon:g} cannot be reached with this plan")
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if spent(mid) > epsilon else (lo, mid)
    return hi


# --- central DP-FedAvg(M) ----------------------------------------------------------------------------


@dataclass(slots=True)
class DPFedAvg:
    """Central client-level DP around a strategy: clip, average with equal weights, add noise, then ``inner``.

    Parameters
    ----------
    inner : Strategy
        Receives the noised mean as its only reply (FedAvg returns it; FedAvgM takes a momentum step).
    noise_multiplier : float
        ``z`` (> 0; the total for adaptive clipping, split by :func:`adaptive_noise_multipliers`).
    clipping_norm : float
        ``C`` (fixed), or the initial norm (adaptive).
    num_sampled : int
        ``m``: the clients selected per round (the mean's fixed denominator).
    rng : numpy Generator or RandomState
        The noise (seeded by the caller; a Generator's state is checkpointed).
    adaptive : bool
        Adaptive clipping.
    target_quantile, clip_lr : float
        Adaptive clipping's target fraction of unclipped updates and its learning rate.
    clipped_count_stddev : float or None
        ``sigma_b`` (default ``m / 20``).
    accountant : PrivacyAccountant or None
        Charged ``z`` over ``m`` clients before each release (a refused release raises before aggregation).
    """

    inner: Strategy
    noise_multiplier: float
    clipping_norm: float
    num_sampled: int
    rng: NoiseSource
    adaptive: bool = False
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float | None = None
    accountant: PrivacyAccountant | None = None
    name: str = field(default="", init=False)
    count_stddev_: float = field(default=0.0, init=False)
    model_noise_multiplier_: float = field(default=0.0, init=False)
    norm_history_: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise ConfigError(f"privacy.noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not self.clipping_norm > 0:
            raise ConfigError(f"privacy.clipping_norm must be > 0, got {self.clipping_norm}")
        if self.num_sampled < 1:
            raise ConfigError(f"DP needs >= 1 selected client per round, got {self.num_sampled}")
        self.name = f"dp-{self.inner.name}"
        if self.adaptive:
            self.count_stddev_, self.model_noise_multiplier_ = adaptive_noise_multipliers(
                self.noise_multiplier, self.num_sampled, self.clipped_count_stddev
            )
        else:
            self.model_noise_multiplier_ = self.noise_multiplier

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Clip each update, take the equally weighted mean over ``m``, add noise, then step ``inner``.

        Raises
        ------
        PrivacyBudgetExceeded
            If the accountant refuses this round's release (before anything is computed).
        """
        if self.accountant is not None:
            self.accountant.spend(
                f"round {server_round}", noise_multiplier=self.noise_multiplier, sample_size=self.num_sampled
            )
        norm = self.clipping_norm
        total = [np.zeros(c.shape, dtype=np.float64) for c in current]
        clipped_count = 0
        for u in updates:
            delta = [np.subtract(w, c) for w, c in zip(u.weights, current, strict=True)]
            clipped, was = clip_update(delta, norm)
            clipped_count += int(was)
            for acc, d in zip(total, clipped, strict=True):
                acc += d
        if self.adaptive:
            noisy = float(self.rng.normal(clipped_count, self.count_stddev_)) / float(len(updates))
            self.clipping_norm = norm * math.exp(-self.clip_lr * (noisy - self.target_quantile))
        self.norm_history_.append(norm)
        mean = [(c + t / self.num_sampled).astype(np.float32) for c, t in zip(current, total, strict=True)]
        noise = gaussian_noise(mean, self.model_noise_multiplier_ * norm / self.num_sampled, self.rng)
        released = [m + n for m, n in zip(mean, noise, strict=True)]
        return self.inner.aggregate(server_round, current, [ClientUpdate(released, 1, {})])

    def state_dict(self) -> dict[str, Any]:
        """Return the inner state, the clipping norm, the noise generator and the accountant's ledger."""
        state: dict[str, Any] = {
            "inner": self.inner.state_dict(),
            "clipping_norm": self.clipping_norm,
            "norm_history": list(self.norm_history_),
        }
        if isinstance(self.rng, np.random.Generator):
            state["rng"] = dict(self.rng.bit_generator.state)
        if self.accountant is not None:
            state["accountant"] = self.accountant.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.inner.load_state_dict(dict(state.get("inner", {})))
        self.clipping_norm = float(state.get("clipping_norm", self.clipping_norm))
        self.norm_history_ = [float(x) for x in state.get("norm_history", [])]
        if "rng" in state and isinstance(self.rng, np.random.Generator):
            self.rng.bit_generator.state = dict(state["rng"])
        if self.accountant is not None and "accountant" in state:
            self.accountant.load_state_dict(state["accountant"])


# --- private statistics ------------------------------------------------------------------------------

_PARTS = 4  # mean, second moment, min, max per feature


def _summary_vector(stats: SufficientStats) -> np.ndarray[Any, np.dtype[np.float64]]:
    second = stats.m2 / stats.count + stats.mean**2
    return np.concatenate([stats.mean, second, stats.min, stats.max]).astype(np.float64)


def private_merge(
    summaries: Mapping[str, SufficientStats],
    *,
    clipping_norm: float,
    noise_multiplier: float,
    rng: NoiseSource,
) -> SufficientStats:
    """Merge per-client statistics privately: a noised, equally weighted mean of clipped summary vectors.

    Each client's vector ``[mean, E[x^2], min, max]`` (per feature) is clipped to L2 norm ``C``; the mean
    over the ``K`` clients gets ``N(0, (z C / K)^2)`` noise per coordinate. The result describes the
    average client (count ``K``): its min/max are the noised means of the clients' min/max, its variance
    ``max(E[x^2] - mean^2, 0)``; ``max >= min`` is enforced.

    Parameters
    ----------
    summaries : mapping of str to SufficientStats
        Per-client statistics (merged in sorted id order).
    clipping_norm, noise_multiplier : float
        ``C`` and ``z`` (the release costs one Gaussian mechanism over all ``K`` clients).
    rng : numpy Generator or RandomState

    Returns
    -------
    SufficientStats
    """
    live = {cid: s for cid, s in summaries.items() if s.count > 0}
    if not live:
        raise ConfigError("private statistics need at least one client with rows")
    k = len(live)
    total = None
    for cid in sorted(live):
        vec = _summary_vector(live[cid])
        norm = float(np.linalg.norm(vec))
        vec = vec * (1.0 if norm == 0 else min(1.0, clipping_norm / norm))
        total = vec if total is None else total + vec
    assert total is not None
    noisy = total / k + rng.normal(0.0, noise_multiplier * clipping_norm / k, total.shape)
    mean, second, lo, hi = np.split(noisy, _PARTS)
    var = np.maximum(second - mean**2, 0.0)
    return SufficientStats(count=k, mean=mean, m2=var * k, min=lo, max=np.maximum(hi, lo))


# --- local DP on the client side ---------------------------------------------------------------------

LOCAL_CLIP = "dp-local-clip"
"""Training-config key: the clipping norm a client applies to its own update (local DP)."""
LOCAL_NOISE = "dp-local-noise"
"""Training-config key: the noise multiplier a client applies to its own update (local DP)."""


def apply_local_dp(reply: Any, current: Weights, config: Config, rng: NoiseSource) -> Any:
    """Client side: privatise a training reply when ``config`` asks for local DP; else return it as is.

    Transports call this where the client's reply is made (before it leaves the gateway): the in-process
    runtime with a generator seeded per client and round, the Flower ClientApp with fresh OS entropy.
    """
    if not isinstance(reply, ClientUpdate) or LOCAL_CLIP not in config:
        return reply
    return local_dp_update(
        reply,
        current,
        clipping_norm=float(config[LOCAL_CLIP]),
        noise_multiplier=float(config[LOCAL_NOISE]),
        rng=rng,
    )


@dataclass(slots=True)
class _LocalCharge:
    """Local DP on the server side: charge the accountant for each round's client releases, then ``inner``."""

    inner: Strategy
    accountant: PrivacyAccountant
    noise_multiplier: float
    name: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.name = f"ldp-{self.inner.name}"

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        # the server chose who takes part, so there is no amplification by sampling: sample = population
        self.accountant.spend(
            f"round {server_round}",
            noise_multiplier=self.noise_multiplier,
            sample_size=self.accountant.population,
        )
        return self.inner.aggregate(server_round, current, updates)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "accountant": self.accountant.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(dict(state.get("inner", {})))
        self.accountant.load_state_dict(state.get("accountant", {}))


# --- one federation's privacy: what the engine plugs in -------------------------------------------------


@dataclass(slots=True)
class PrivateFederation:
    """The privacy of one run: noise level, accountant, and the engine's three hooks.

    Built by :func:`setup_privacy`. The engine wraps its strategy with :meth:`wrap`, extends each round's
    training config with :meth:`fit_config` (local DP) and merges statistics with :meth:`merge`.
    """

    config: PrivacyConfig
    accountant: PrivacyAccountant
    noise_multiplier: float
    num_sampled: int
    rng: np.random.Generator

    def wrap(self, strategy: Strategy) -> Strategy:
        """Return the strategy with this run's DP mechanism around it."""
        p = self.config
        if p.mechanism == "local":
            return _LocalCharge(strategy, self.accountant, self.noise_multiplier)
        return DPFedAvg(
            strategy,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=p.clipping_norm,
            num_sampled=self.num_sampled,
            rng=self.rng,
            adaptive=p.clipping == "adaptive",
            target_quantile=p.target_quantile,
            clip_lr=p.clip_lr,
            clipped_count_stddev=p.clipped_count_stddev,
            accountant=self.accountant,
        )

    def fit_config(self, config: Config) -> dict[str, bool | int | float | str]:
        """Add the local-DP instructions to a training config (unchanged for central DP)."""
        out = dict(config)
        if self.config.mechanism == "local":
            out[LOCAL_CLIP] = self.config.clipping_norm
            out[LOCAL_NOISE] = self.noise_multiplier
        return out

    def merge(self, name: str, summaries: Mapping[str, ErrorSummary]) -> ErrorSummary:
        """Merge a statistics round: exactly, or (``privacy.statistics``) privately and charged."""
        if not self.config.statistics:
            return merge_summaries(summaries)
        stats = {cid: s for cid, s in summaries.items() if isinstance(s, SufficientStats)}
        if len(stats) != len(summaries):
            raise ConfigError(
                "privacy.statistics supports the minmax/standard scalers and the mean-std threshold rule "
                "(not detect.threshold='quantile')"
            )
        self.accountant.spend(name, noise_multiplier=self.noise_multiplier, sample_size=len(stats))
        clip = self.config.feature_clipping_norm if name == FEATURE_STATS else self.config.error_clipping_norm
        return private_merge(stats, clipping_norm=clip, noise_multiplier=self.noise_multiplier, rng=self.rng)


def setup_privacy(
    cfg: FLConfig, *, population: int, min_fit_clients: int, statistics_rounds: int
) -> PrivateFederation:
    """Plan a run's privacy: the noise multiplier (given, or calibrated to the budget) and the accountant.

    ``statistics_rounds`` counts the statistics releases the run will make (scaler, threshold).

    Raises
    ------
    ConfigError
        If the planned run (every round selecting ``m`` of ``population`` clients) would exceed
        ``privacy.epsilon`` with the given noise multiplier: refused before any work.
    """
    p = cfg.privacy
    m = num_selected(population, cfg.federated.fraction_fit, min(min_fit_clients, population))
    sample = population if p.mechanism == "local" else m
    stats = statistics_rounds if p.statistics else 0
    budget = None if p.epsilon is None or math.isinf(p.epsilon) else p.epsilon
    if p.noise_multiplier is None:
        assert budget is not None  # PrivacyConfig requires one of them
        z = calibrate_noise_multiplier(
            budget, delta=p.delta, population=population, sample_size=sample,
            rounds=cfg.federated.rounds, statistics=stats,
        )  # fmt: skip
    else:
        z = p.noise_multiplier
        if budget is not None:
            events = [(z, sample, cfg.federated.rounds)] + ([(z, population, stats)] if stats else [])
            planned = _epsilon(events, population, p.delta)
            if planned > budget:
                raise ConfigError(
                    f"privacy.noise_multiplier={z:g} over federated.rounds={cfg.federated.rounds} would "
                    f"spend epsilon={planned:.4g} at delta={p.delta:g}, past privacy.epsilon={budget:g}"
                )
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 15]))
    accountant = PrivacyAccountant(population=population, delta=p.delta, budget=budget)
    return PrivateFederation(config=p, accountant=accountant, noise_multiplier=z, num_sampled=m, rng=rng)
