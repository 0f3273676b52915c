"""One configuration schema (frozen dataclasses) read from experiment TOML, ``--set`` and Flower's run config.

Every federated run — an experiment in this process, ``flwr run`` in simulation, a real deployment — is
described by a :class:`FLConfig`: sections ``federated`` (rounds, selection, strategy), ``train`` (local
training and the model), ``detect`` (threshold rule, window) and, for the Flower transport only,
``server`` (timeouts, paths). The same field names are used everywhere:

- experiment TOML and ``--set``: ``[federated] fraction_fit = 0.5``, ``--set federated.fraction_fit=0.5``;
- Flower's run config: the same fields in kebab case under their section, ``federated.fraction-fit``
  (``[tool.flwr.app.config.federated]`` in ``pyproject.toml``, ``flwr run --run-config
  'federated.fraction-fit=0.5'``). The mapping is mechanical: ``_`` becomes ``-``.

Unknown keys, wrong types and out-of-range values raise :class:`~fediot.errors.ConfigError` naming the
key, the expected type or range, and the closest valid key. Nothing is silently coerced: ``"false"`` is
not a bool, ``2.5`` is not an int, ``"sgdd"`` is not an optimizer.

Examples
--------
>>> cfg = parse_section(FederatedConfig, {"rounds": 5, "fraction_fit": 0.25}, "federated")
>>> cfg.rounds, cfg.fraction_fit
(5, 0.25)
>>> parse_section(FederatedConfig, {"roundz": 5}, "federated")
Traceback (most recent call last):
...
fediot.errors.ConfigError: unknown key 'federated.roundz' (did you mean 'federated.rounds'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, get_args, get_origin

from fediot.errors import ConfigError

__all__ = [
    "OPTIMIZERS",
    "PRIVACY_MECHANISMS",
    "SCALERS",
    "SECURE_STRATEGIES",
    "STATISTICS_RULES",
    "STRATEGIES",
    "THRESHOLD_RULES",
    "DetectConfig",
    "FLConfig",
    "FederatedConfig",
    "PrivacyConfig",
    "ServerConfig",
    "TrainingConfig",
    "check_keys",
    "check_table_names",
    "fl_config_from_run_config",
    "flatten_config",
    "parse_section",
    "parse_sections",
    "parse_tables",
    "set_dotted",
    "to_run_config",
]

T = TypeVar("T")

STRATEGIES = (
    "fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi",
    "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "norm-bounded",
)  # fmt: skip
"""Server aggregation rules selectable by ``federated.strategy`` (see :mod:`fediot.federated.strategy`)."""
STATISTICS_RULES = ("sum", "trimmed", "median")
"""How the clients' scaler and threshold statistics are combined (``federated.statistics``)."""
StrategyName = Literal[
    "fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi",
    "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "norm-bounded",
]  # fmt: skip
OPTIMIZERS = ("adam", "sgd")
"""Local optimizers selectable by ``train.optimizer``."""
SCALERS = ("minmax", "standard", "log-minmax", "log-standard")
"""Federated scalers selectable by ``train.scaler`` (see :mod:`fediot.data.scaling`)."""
PRIVACY_MECHANISMS = ("off", "central", "local")
"""Client-level DP selectable by ``privacy.mechanism`` (see :mod:`fediot.federated.privacy`)."""
THRESHOLD_RULES = ("mean-std", "quantile")
"""Threshold rules selectable by ``detect.threshold`` (see :mod:`fediot.detect.threshold`)."""


def _range(key: str, ok: bool, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value!r}")


@dataclass(frozen=True, slots=True)
class FederatedConfig:
    """``[federated]``: rounds, client selection and the server's aggregation rule.

    Parameters
    ----------
    rounds : int
        Federated rounds (>= 1).
    fraction_fit : float
        Fraction of the available clients selected per round, in (0, 1] (seeded).
    min_fit_clients : int
        At least this many are selected, and at least this many must reply for a round to count.
    local_epochs : int
        Local epochs per round on a client's benign training rows.
    strategy : str
        One of :data:`STRATEGIES`: ``fedavg``, ``fedavgm`` (server momentum), ``fedprox`` (client-side
        proximal term), ``fedadam``/``fedyogi`` (adaptive server optimisers), or a robust rule: ``median``,
        ``trimmed-mean``, ``krum``, ``multi-krum``, ``bulyan``, ``norm-bounded``.
    server_learning_rate, server_momentum : float
        FedAvgM's ``eta`` (> 0) and ``beta`` (in [0, 1)).
    proximal_mu : float
        FedProx's ``mu`` (>= 0): clients minimise ``loss + mu/2 ||w - w_global||^2``.
    server_optimizer_lr, server_beta_1, server_beta_2, server_tau : float
        FedAdam/FedYogi: server learning rate (> 0), moment decays (in [0, 1)) and adaptivity (> 0).
    trimmed_fraction : float
        ``trimmed-mean``: fraction cut from each tail per coordinate, in [0, 0.5).
    num_malicious : int
        ``krum``, ``multi-krum``, ``bulyan``: ``f``, the hostile clients per round the rule is sized for
        (Bulyan needs ``4 f + 3`` replies per round).
    krum_select : int
        ``multi-krum``: replies averaged per round (0 = the round's replies minus ``num_malicious``).
    clip_norm : float
        ``norm-bounded``: largest L2 norm of one client's update (> 0).
    statistics : {"sum", "trimmed", "median"}
        How the clients' scaler and threshold statistics are combined (see
        :func:`fediot.federated.statistics.merge_summaries`): ``sum`` pools them exactly (one lying client
        moves the result without bound); ``trimmed`` / ``median`` combine each statistic coordinate-wise
        over clients, so fewer than ``int(statistics_trim * n)`` / ``n / 2`` lying clients keep every
        statistic inside the honest clients' range.
    statistics_trim : float
        ``trimmed``: fraction of clients cut from each tail per statistic, in [0, 0.5).
    retrain_every : int
        The seed README's retraining: every ``retrain_every`` rounds a client trains one more epoch on a
        fresh random ``retrain_fraction`` of its rows (0 = never).
    retrain_fraction : float
        In (0, 1].
    executor : {"batched", "sequential"}
        In-process only: train the selected autoencoder clients at once, or one after another.
    tolerate_failures : bool
        A client that fails (or sends a non-finite or wrongly shaped update) is counted and left out of
        the round instead of stopping the run; the round still needs ``min_fit_clients`` replies.
    """

    rounds: int = 20
    fraction_fit: float = 0.5
    min_fit_clients: int = 2
    local_epochs: int = 3
    strategy: StrategyName = "fedavgm"
    server_learning_rate: float = 1.0
    server_momentum: float = 0.5
    proximal_mu: float = 0.01
    server_optimizer_lr: float = 0.01
    server_beta_1: float = 0.9
    server_beta_2: float = 0.99
    server_tau: float = 1e-3
    trimmed_fraction: float = 0.2
    num_malicious: int = 0
    krum_select: int = 0
    clip_norm: float = 1.0
    statistics: Literal["sum", "trimmed", "median"] = "sum"
    statistics_trim: float = 0.2
    retrain_every: int = 0
    retrain_fraction: float = 0.5
    executor: Literal["batched", "sequential"] = "batched"
    tolerate_failures: bool = True

    def __post_init__(self) -> None:
        _range("federated.rounds", self.rounds >= 1, ">= 1", self.rounds)
        _range("federated.fraction_fit", 0.0 < self.fraction_fit <= 1.0, "in (0, 1]", self.fraction_fit)
        _range("federated.min_fit_clients", self.min_fit_clients >= 1, ">= 1", self.min_fit_clients)
        _range("federated.local_epochs", self.local_epochs >= 1, ">= 1", self.local_epochs)
        _range(
            "federated.server_learning_rate", self.server_learning_rate > 0, "> 0", self.server_learning_rate
        )
        _range(
            "federated.server_momentum", 0.0 <= self.server_momentum < 1.0, "in [0, 1)", self.server_momentum
        )
        _range("federated.retrain_every", self.retrain_every >= 0, ">= 0", self.retrain_every)
        _finite = math.isfinite
        _range(
            "federated.proximal_mu",
            self.proximal_mu >= 0 and _finite(self.proximal_mu),
            ">= 0",
            self.proximal_mu,
        )
        lr = self.server_optimizer_lr
        _range("federated.server_optimizer_lr", lr > 0 and _finite(lr), "> 0 and finite", lr)
        for name in ("server_beta_1", "server_beta_2"):
            value = getattr(self, name)
            _range(f"federated.{name}", 0.0 <= value < 1.0, "in [0, 1)", value)
        _range(
            "federated.server_tau", self.server_tau > 0 and _finite(self.server_tau), "> 0", self.server_tau
        )
        for name in ("trimmed_fraction", "statistics_trim"):
            value = getattr(self, name)
            _range(f"federated.{name}", 0.0 <= value < 0.5, "in [0, 0.5)", value)
        _range("federated.num_malicious", self.num_malicious >= 0, ">= 0", self.num_malicious)
        _range("federated.krum_select", self.krum_select >= 0, ">= 0", self.krum_select)
        _range("federated.clip_norm", self.clip_norm > 0 and _finite(self.clip_norm), "> 0", self.clip_norm)
        fraction = self.retrain_fraction
        _range("federated.retrain_fraction", 0.0 < fraction <= 1.0, "in (0, 1]", fraction)


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """``[train]``: the model, its local training and the federated scaler.

    Parameters
    ----------
    optimizer : {"adam", "sgd"}
    lr : float
        Learning rate (> 0).
    batch_size : int
    momentum : float
        SGD momentum (ignored by Adam), in [0, 1).
    weight_decay : float
        L2 penalty (>= 0).
    ratios : tuple of float
        Autoencoder layer widths as fractions of the input width (N-BaIoT: 0.75, 0.5, 0.33, 0.25).
    scaler : {"minmax", "standard", "log-minmax", "log-standard"}
        Federated scaler fitted from the clients' per-feature sufficient statistics before round 1.
    centralized_epochs : int or None
        Epochs of the non-federated baselines (default ``rounds x local_epochs``); 0 or empty = default.
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    momentum: float = 0.0
    weight_decay: float = 0.0
    ratios: tuple[float, ...] = (0.75, 0.5, 0.33, 0.25)
    scaler: Literal["minmax", "standard", "log-minmax", "log-standard"] = "log-minmax"
    centralized_epochs: int | None = None

    def __post_init__(self) -> None:
        _range("train.lr", self.lr > 0 and math.isfinite(self.lr), "> 0 and finite", self.lr)
        _range("train.batch_size", self.batch_size >= 1, ">= 1", self.batch_size)
        _range("train.momentum", 0.0 <= self.momentum < 1.0, "in [0, 1)", self.momentum)
        _range("train.weight_decay", self.weight_decay >= 0, ">= 0", self.weight_decay)
        _range(
            "train.ratios",
            len(self.ratios) >= 1 and all(0.0 < r <= 1.0 for r in self.ratios),
            "a non-empty list of fractions in (0, 1]",
            self.ratios,
        )
        if self.centralized_epochs is not None:
            _range("train.centralized_epochs", self.centralized_epochs >= 0, ">= 0", self.centralized_epochs)


@dataclass(frozen=True, slots=True)
class DetectConfig:
    """``[detect]``: how the federated threshold is set and how flags are voted.

    Parameters
    ----------
    threshold : {"mean-std", "quantile"}
        ``mean + threshold_k * std`` of the benign opt-row errors (N-BaIoT), from federated sufficient
        statistics; or their ``threshold_q`` quantile, from federated log-binned histograms.
    threshold_k : float
        N-BaIoT uses 1 (>= 0).
    threshold_q : float
        In (0, 1): flags at most about ``1 - threshold_q`` of the benign opt rows.
    window : int
        Majority vote over ``window`` consecutive rows of one stream (1 = none; time-ordered data only).
    local_thresholds : bool
        Experiments: also report each client's own threshold on its own opt rows.
    """

    threshold: Literal["mean-std", "quantile"] = "mean-std"
    threshold_k: float = 1.0
    threshold_q: float = 0.99
    window: int = 10
    local_thresholds: bool = True

    def __post_init__(self) -> None:
        _range(
            "detect.threshold_k",
            self.threshold_k >= 0 and math.isfinite(self.threshold_k),
            ">= 0 and finite",
            self.threshold_k,
        )
        _range("detect.threshold_q", 0.0 < self.threshold_q < 1.0, "in (0, 1)", self.threshold_q)
        _range("detect.window", self.window >= 1, ">= 1", self.window)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: what only the Flower transport needs (deployment and ``flwr run`` simulation).

    Parameters
    ----------
    min_available_clients : int
        Wait (up to ``connect_timeout``) until this many gateways have identified themselves.
    round_timeout : float
        Seconds to wait for the replies of one round or statistics query; missing replies are failures.
    connect_timeout : float
        Seconds to wait for ``min_available_clients`` gateways.
    poll_interval : float
        Seconds between two polls for replies.
    checkpoint_path : str or None
        Server state (``.npz``) written atomically after every round.
    resume : bool
        Continue from ``checkpoint_path`` (refused when it does not exist or holds another configuration).
    history_path : str or None
        JSON history of the rounds, rewritten atomically after every round (a resumed run appends).
    detector_path : str or None
        The federated detector (weights, scaler, threshold) saved there after the last round.
    events_path : str or None
        Events as JSON lines (run start, each round, failed or lost gateways, scaler, threshold, detector,
        run end or failure), appended and flushed as they happen (see :mod:`fediot.federated.events`).
    num_features : int
        Input width of the autoencoder (N-BaIoT: 115).
    feature_names : str
        ``nbaiot`` (the 115 N-BaIoT columns), a comma-separated list, or empty (none recorded).
    secure_aggregation : bool
        Run every training round as one Flower SecAgg+ round (:mod:`fediot.flower.secagg`): the server
        learns only the example-weighted mean of the contributing gateways' updates (and of their training
        losses), never one gateway's weights, count or loss. Refused with robust strategies, robust
        statistics and central DP, which need the individual updates. The statistics rounds (scaler,
        threshold) are not covered (docs/threat-model.md).
    secagg_num_shares : int
        SecAgg+ shares per secret: 0, one per selected gateway; else >= 3 (neighbourhood size).
    secagg_reconstruction_threshold : int
        Shares needed to reconstruct a secret (a dropped gateway's mask key, a survivor's mask seed):
        0, two thirds of the shares (at least 2); else >= 2 and below ``secagg_num_shares`` when that is
        set. A round survives as long as every gateway keeps this many live neighbours.
    secagg_clipping_range : float
        Weights (times ``num_examples / secagg_max_weight``) must lie in ``[-r, r]`` to be quantised; a
        gateway whose update does not fails its round rather than being clipped.
    secagg_max_weight : float
        The largest ``num_examples`` a gateway may report (SecAgg+ quantises ``num_examples / max``).
    """

    min_available_clients: int = 2
    round_timeout: float = 600.0
    connect_timeout: float = 300.0
    poll_interval: float = 0.2
    checkpoint_path: str | None = None
    resume: bool = False
    history_path: str | None = None
    detector_path: str | None = None
    events_path: str | None = None
    num_features: int = 115
    feature_names: str = "nbaiot"
    secure_aggregation: bool = False
    secagg_num_shares: int = 0
    secagg_reconstruction_threshold: int = 0
    secagg_clipping_range: float = 8.0
    secagg_max_weight: float = 100000.0

    def __post_init__(self) -> None:
        available = self.min_available_clients
        _range("server.min_available_clients", available >= 1, ">= 1", available)
        for name in ("round_timeout", "connect_timeout", "poll_interval"):
            value = getattr(self, name)
            _range(f"server.{name}", value > 0 and math.isfinite(value), "> 0 and finite", value)
        _range("server.num_features", self.num_features >= 1, ">= 1", self.num_features)
        if self.resume and not self.checkpoint_path:
            raise ConfigError("server.resume needs server.checkpoint_path")
        shares, threshold = self.secagg_num_shares, self.secagg_reconstruction_threshold
        _range("server.secagg_num_shares", shares == 0 or shares >= 3, "0 (all) or >= 3", shares)
        key = "server.secagg_reconstruction_threshold"
        _range(key, threshold == 0 or threshold >= 2, "0 or >= 2", threshold)
        if shares and threshold >= shares:
            raise ConfigError(
                f"server.secagg_reconstruction_threshold ({threshold}) must be < server.secagg_num_shares "
                f"({shares})"
            )
        for name in ("secagg_clipping_range", "secagg_max_weight"):
            value = getattr(self, name)
            _range(f"server.{name}", value > 0 and math.isfinite(value), "> 0 and finite", value)


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    """``[privacy]``: client-level differential privacy and its budget (off by default).

    Parameters
    ----------
    mechanism : {"off", "central", "local"}
        ``central``: the server clips each update, averages with equal weights and adds Gaussian noise
        (DP-FedAvg(M); the server is trusted with single updates). ``local``: each gateway clips and noises
        its own update before it leaves (the server is not trusted; much more noise).
    clipping : {"fixed", "adaptive"}
        Fixed L2 clipping norm, or adaptive clipping towards ``target_quantile`` (central only).
    clipping_norm : float
        The norm ``C`` (> 0), or the initial norm of adaptive clipping.
    target_quantile, clip_lr : float
        Adaptive clipping: target fraction of unclipped updates (in [0, 1]) and learning rate (> 0).
    clipped_count_stddev : float or None
        Adaptive clipping: noise of the clipped count (empty: ``m / 20``, as Flower).
    noise_multiplier : float or None
        ``z`` (> 0). Empty: the smallest ``z`` whose whole planned run fits in ``epsilon``.
    epsilon : float or None
        The budget: no release is made that would take epsilon (at ``delta``) past it. ``inf`` or empty
        with a ``noise_multiplier``: no budget, epsilon is still reported.
    delta : float
        The stated delta, in (0, 1).
    statistics : bool
        Private statistics: the scaler's and the threshold's summaries are merged as a noised mean of
        clipped client summaries, charged to the same accountant.
    feature_clipping_norm, error_clipping_norm : float
        L2 clipping norms of one client's feature summary (scaler) and error summary (threshold).
    """

    mechanism: Literal["off", "central", "local"] = "off"
    clipping: Literal["fixed", "adaptive"] = "fixed"
    clipping_norm: float = 1.0
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float | None = None
    noise_multiplier: float | None = None
    epsilon: float | None = None
    delta: float = 1e-5
    statistics: bool = False
    feature_clipping_norm: float = 100.0
    error_clipping_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("clipping_norm", "clip_lr", "feature_clipping_norm", "error_clipping_norm"):
            value = getattr(self, name)
            _range(f"privacy.{name}", value > 0 and math.isfinite(value), "> 0 and finite", value)
        quantile = self.target_quantile
        _range("privacy.target_quantile", 0.0 <= quantile <= 1.0, "in [0, 1]", quantile)
        _range("privacy.delta", 0.0 < self.delta < 1.0, "in (0, 1)", self.delta)
        if self.clipped_count_stddev is not None:
            stddev = self.clipped_count_stddev
            _range("privacy.clipped_count_stddev", stddev > 0, "> 0", stddev)
        if self.noise_multiplier is not None:
            z = self.noise_multiplier
            _range("privacy.noise_multiplier", z > 0 and math.isfinite(z), "> 0 and finite (or empty)", z)
        if self.epsilon is not None:
            _range("privacy.epsilon", self.epsilon > 0, "> 0 (inf: no budget)", self.epsilon)
        if self.mechanism == "off":
            return
        if self.noise_multiplier is None and (self.epsilon is None or math.isinf(self.epsilon)):
            raise ConfigError(
                f"privacy.mechanism={self.mechanism!r} needs privacy.noise_multiplier or a finite "
                "privacy.epsilon"
            )
        if self.mechanism == "local" and self.clipping == "adaptive":
            raise ConfigError("privacy.clipping='adaptive' needs privacy.mechanism='central'")

    @property
    def enabled(self) -> bool:
        """Whether any DP mechanism runs."""
        return self.mechanism != "off"


@dataclass(frozen=True, slots=True)
class FLConfig:
    """A federated run: ``seed`` and the sections federated, train, detect, server and privacy.

    ``server`` is used by the Flower transport only; an in-process experiment ignores it.
    """

    seed: int = 0
    federated: FederatedConfig = field(default_factory=FederatedConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        if self.privacy.statistics and self.privacy.mechanism != "central":
            raise ConfigError("privacy.statistics needs privacy.mechanism='central'")
        if self.server.secure_aggregation:
            _check_secure_aggregation(self)
        if self.server.min_available_clients < self.federated.min_fit_clients:
            raise ConfigError(
                f"server.min_available_clients ({self.server.min_available_clients}) must be >= "
                f"federated.min_fit_clients ({self.federated.min_fit_clients})"
            )

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], *, prefix: str = "") -> FLConfig:
        """Build from a nested mapping (sections as sub-mappings, snake-case keys); unknown keys raise."""
        return parse_section(cls, cfg, prefix)

    def to_dict(self) -> dict[str, Any]:
        """Return the nested plain-value form (the inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = _to_plain(self)
        return out


SECURE_STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi")
"""The strategies that need only the weighted mean of the updates (``server.secure_aggregation`` allows)."""


def _check_secure_aggregation(cfg: FLConfig) -> None:
    """Refuse what SecAgg+ cannot serve: rules that need each gateway's own update or summary."""
    why = "server.secure_aggregation=true gives the server only the sum of the updates"
    fed = cfg.federated
    if fed.strategy not in SECURE_STRATEGIES:
        raise ConfigError(
            f"{why}: federated.strategy={fed.strategy!r} needs each update; use one of "
            f"{', '.join(SECURE_STRATEGIES)}"
        )
    if fed.statistics != "sum":
        raise ConfigError(f"{why}: federated.statistics={fed.statistics!r} needs each summary; use 'sum'")
    if cfg.privacy.mechanism == "central":
        raise ConfigError(
            f"{why}: privacy.mechanism='central' clips each update on the server; use 'local' (each "
            "gateway clips and noises its own update before masking)"
        )
    if fed.min_fit_clients < 2:
        raise ConfigError(f"{why}: SecAgg+ needs federated.min_fit_clients >= 2, got {fed.min_fit_clients}")


# --- the strict reader ------------------------------------------------------------------------------


def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def check_keys(mapping: Mapping[str, Any], valid: Iterable[str], prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first key of ``mapping`` not in ``valid``, suggesting the closest.

    Examples
    --------
    >>> check_keys({"lr": 1}, ["lr", "optimizer"], "train")
    >>> check_keys({"optimiser": "sgd"}, ["lr", "optimizer"], "train")
    Traceback (most recent call last):
    ...
    fediot.errors.ConfigError: unknown key 'train.optimiser' (did you mean 'train.optimizer'?)
    """
    allowed = list(valid)
    for key in mapping:
        if key not in allowed:
            full = [_join(prefix, k) for k in allowed]
            raise ConfigError(f"unknown key {_join(prefix, key)!r}{_suggest(_join(prefix, key), full)}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " or empty"
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the field's own type."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if value is None or value == "":
            return None
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value in get_args(tp) and type(value) is type(get_args(tp)[0]):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        elem = get_args(tp)[0]
        out = []
        for item in items:
            if isinstance(item, str) and elem in (int, float):
                try:
                    item = elem(item)
                except ValueError:
                    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}") from None
            out.append(_coerce(item, elem, key))
        return tuple(out)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def parse_section(cls: type[T], mapping: Mapping[str, Any], prefix: str = "") -> T:
    """Build the config dataclass ``cls`` from ``mapping``, strictly.

    Nested dataclass fields take sub-mappings. Keys may be snake case or kebab case (``fraction-fit``).

    Raises
    ------
    ConfigError
        Naming the key for an unknown key (with the closest valid one), a value of the wrong type, or a
        value out of range.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a table of keys, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    normalised = {str(k).replace("-", "_"): v for k, v in mapping.items()}
    check_keys(normalised, names, prefix)
    kwargs: dict[str, Any] = {}
    for name, value in normalised.items():
        tp = hints[name]
        key = _join(prefix, name)
        if dataclasses.is_dataclass(tp):
            kwargs[name] = parse_section(tp, value, key)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None


def parse_tables(cls: type[T], cfg: Mapping[str, Any], key: str) -> tuple[T, ...]:
    """Parse the array of tables ``[[key]]`` of ``cfg`` (missing: empty) with :func:`parse_section`."""
    raw = cfg.get(key, [])
    if not isinstance(raw, list):
        raise ConfigError(f"{key} must be an array of tables ([[{key}]])")
    return tuple(parse_section(cls, item, f"{key}[{i}]") for i, item in enumerate(raw))


def check_table_names(names: Sequence[str], key: str, owner: str) -> None:
    """Refuse an empty ``[[key]]`` array (``owner`` needs one) or two tables with the same name."""
    if not names:
        raise ConfigError(f"{owner} needs at least one [[{key}]] table")
    if len(set(names)) != len(names):
        raise ConfigError(f"{key} names must be unique, got {list(names)}")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


def flatten_config(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dataclass to dotted snake-case keys (``federated.fraction_fit``) and plain values."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        key = _join(prefix, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten_config(value, key))
        else:
            out[key] = _to_plain(value)
    return out


def to_run_config(cfg: FLConfig) -> dict[str, bool | int | float | str]:
    """Return Flower's run config for ``cfg``: dotted sections, kebab-case fields, Flower's value types.

    ``None`` becomes ``""`` and a tuple a comma-separated string (Flower's run config holds scalars only).

    Examples
    --------
    >>> rc = to_run_config(FLConfig())
    >>> rc["federated.fraction-fit"], rc["server.checkpoint-path"], rc["train.ratios"]
    (0.5, '', '0.75,0.5,0.33,0.25')
    """
    out: dict[str, bool | int | float | str] = {}
    for key, value in flatten_config(cfg).items():
        if value is None:
            value = ""
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[key.replace("_", "-")] = value
    return out


def fl_config_from_run_config(run_config: Mapping[str, Any]) -> FLConfig:
    """Build an :class:`FLConfig` from Flower's flat run config (``section.kebab-key`` keys), strictly.

    Examples
    --------
    >>> fl_config_from_run_config({"federated.rounds": 3, "seed": 1}).federated.rounds
    3
    >>> fl_config_from_run_config({"federated.fraction-fitt": 0.5})
    Traceback (most recent call last):
    ...
    fediot.errors.ConfigError: unknown key 'federated.fraction_fitt' (did you mean 'federated.fraction_fit'?)
    """
    nested: dict[str, Any] = {}
    for key, value in run_config.items():
        set_dotted(nested, str(key).replace("-", "_"), value)
    return FLConfig.from_dict(nested)


def set_dotted(nested: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``nested[a][b][c] = value`` for ``dotted = "a.b.c"``, creating sections as needed.

    Examples
    --------
    >>> d: dict[str, Any] = {}
    >>> set_dotted(d, "train.lr", 0.1)
    >>> d
    {'train': {'lr': 0.1}}
    """
    parts = dotted.strip().split(".")
    node = nested
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_sections(
    cls: type[T],
    cfg: Mapping[str, Any],
    layout: Mapping[str, Iterable[str]],
    *,
    top_level: Iterable[str] = ("name", "kind", "description"),
) -> T:
    """Build a flat config dataclass ``cls`` from TOML sections, strictly.

    ``layout`` maps each section to the ``cls`` fields it holds (``{"data": ("nrows",), ...}``); keys of
    ``top_level`` are allowed beside the sections and ignored.

    Examples
    --------
    >>> @dataclass(frozen=True)
    ... class C:
    ...     lr: float = 0.1
    >>> parse_sections(C, {"train": {"lr": 1}}, {"train": ("lr",)}).lr
    1.0
    """
    check_keys(cfg, [*top_level, *layout])
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for section, names in layout.items():
        values = cfg.get(section, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a table of keys, got {values!r}")
        allowed = list(names)
        check_keys(values, allowed, section)
        for key, value in values.items():
            kwargs[key] = _coerce(value, hints[key], _join(section, key))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
