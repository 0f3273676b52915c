"""Federated autoencoder anomaly detection experiments: FL (FedAvg/FedAvgM) vs centralized vs local-only."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from fediot.config import (
    DetectConfig,
    FederatedConfig,
    FLConfig,
    TrainingConfig,
    check_table_names,
    flatten_config,
    parse_tables,
)
from fediot.data.anomaly import AnomalyDataset
from fediot.data.scaling import Scaler, SufficientStats, make_scaler, scaler_inputs
from fediot.detect.detector import AnomalyDetector
from fediot.detect.evaluate import ClientEvaluation, evaluate_scores, summarize_evaluations
from fediot.detect.threshold import ThresholdRule, fit_threshold
from fediot.errors import ConfigError
from fediot.experiments.progress import NullProgress, Progress
from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.engine import run_fl
from fediot.federated.settings import init_seed, local_train_config, threshold_rule
from fediot.federated.types import Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import TrainConfig, reconstruction_errors, train_autoencoder
from fediot.models.weights import get_weights, init_module, set_weights
from fediot.sim.batched import BatchedAutoencoderExecutor
from fediot.sim.runtime import InProcessTransport

__all__ = ["AnomalyConfig", "VariantSpec", "dataset_fingerprint", "run_variant"]

VariantKind = Literal["federated", "centralized", "local", "local-cross"]


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One compared method (a ``[[variants]]`` table).

    Parameters
    ----------
    name : str
        Label in results (e.g. ``MRN``: FedAvgM with retraining, the seed README's code).
    kind : {"federated", "centralized", "local", "local-cross"}
        ``local-cross`` = the local-only models evaluated on the *other* clients' test data.
    strategy : {"fedavg", "fedavgm"} or None
        Federated only: overrides ``federated.strategy``.
    retrain_every : int or None
        Federated only: overrides ``federated.retrain_every`` (0 = no retraining).
    """

    name: str
    kind: VariantKind = "federated"
    strategy: Literal["fedavg", "fedavgm"] | None = None
    retrain_every: int | None = None

    def __post_init__(self) -> None:
        if self.retrain_every is not None and self.retrain_every < 0:
            raise ConfigError(f"variant {self.name!r}: retrain_every must be >= 0, got {self.retrain_every}")


_SECTIONS = ("federated", "train", "detect")


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """An anomaly experiment: its variants and the shared ``[federated]``, ``[train]``, ``[detect]`` sections.

    The sections are the :class:`fediot.config.FLConfig` schema that Flower deployments read too
    (``server`` is not used in process).
    """

    variants: tuple[VariantSpec, ...]
    fl: FLConfig = field(default_factory=FLConfig)

    def __post_init__(self) -> None:
        check_table_names([v.name for v in self.variants], "variants", "an anomaly experiment")

    @property
    def federated(self) -> FederatedConfig:
        """The ``[federated]`` section."""
        return self.fl.federated

    @property
    def train(self) -> TrainingConfig:
        """The ``[train]`` section."""
        return self.fl.train

    @property
    def detect(self) -> DetectConfig:
        """The ``[detect]`` section."""
        return self.fl.detect

    @property
    def epochs_equivalent(self) -> int:
        """Epochs of the non-federated baselines (default ``rounds x local_epochs``).

        That is the number of passes over its data that a client selected in every round makes.
        """
        return self.train.centralized_epochs or self.federated.rounds * self.federated.local_epochs

    @property
    def threshold_rule(self) -> ThresholdRule:
        """The ``[detect]`` threshold rule."""
        return threshold_rule(self.detect)

    def variant_config(self, spec: VariantSpec) -> FLConfig:
        """Return a federated variant's FL configuration: the sections with the variant's overrides."""
        fed = self.federated
        if spec.strategy is not None:
            fed = replace(fed, strategy=spec.strategy)
        if spec.retrain_every is not None:
            fed = replace(fed, retrain_every=spec.retrain_every)
        return replace(self.fl, federated=fed)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], *, seed: int = 0) -> AnomalyConfig:
        """Build from the nested TOML dict; unknown keys, wrong types and bad values raise ConfigError."""
        variants = parse_tables(VariantSpec, cfg, "variants")
        fl = FLConfig.from_dict({"seed": seed, **{k: cfg[k] for k in _SECTIONS if k in cfg}})
        return cls(variants=variants, fl=fl)

    def to_results(self) -> dict[str, Any]:
        """Return the configuration as results record it: every section field (names are unique), variants."""
        flat: dict[str, Any] = {}
        for section in _SECTIONS:
            flat.update(flatten_config(getattr(self.fl, section)))
        flat["variants"] = [flatten_config(v) for v in self.variants]
        return flat

    def train_config(self, epochs: int) -> TrainConfig:
        """Local training settings for ``epochs`` passes."""
        return local_train_config(self.train, epochs)


def _score(module: Autoencoder, scaler: Scaler, x: NDArray[np.float32]) -> NDArray[np.float64]:
    return reconstruction_errors(module, scaler.transform(x)) if x.shape[0] else np.zeros(0)


def _evaluate_clients(
    ds: AnomalyDataset,
    score: Callable[[str, NDArray[np.float32]], NDArray[np.float64]],
    thresholds: Callable[[str], float],
    window: int,
    targets: Callable[[str], list[str]] | None = None,
) -> dict[str, Any]:
    """Score every client's test sets; summarise per test set (macro, pooled, clients, window)."""
    out: dict[str, Any] = {}
    for test_name in ds.test_names:
        evals: dict[str, ClientEvaluation] = {}
        for cid in ds.clients:
            for target in targets(cid) if targets else [cid]:
                test = ds.clients[target].tests[test_name]
                key = cid if targets is None else f"{cid}->{target}"
                evals[key] = evaluate_scores(score(cid, test.x), thresholds(cid), test, window=window)
        out[test_name] = summarize_evaluations(evals, window=window)
    return out


def _new_model(ds: AnomalyDataset, cfg: AnomalyConfig) -> Callable[[], Autoencoder]:
    ae = AutoencoderConfig(num_features=len(ds.feature_names), ratios=cfg.train.ratios)
    return lambda: Autoencoder(ae)


def _window(ds: AnomalyDataset, cfg: AnomalyConfig) -> int:
    return cfg.detect.window if ds.time_ordered else 1


class _Run(NamedTuple):
    """What one variant's run needs: the data, the variant, the config, the model and the seed."""

    ds: AnomalyDataset
    spec: VariantSpec
    cfg: AnomalyConfig
    factory: Callable[[], Autoencoder]
    initial: Weights
    seed: int
    progress: Progress
    cache: dict[str, Any]


def run_variant(
    ds: AnomalyDataset,
    spec: VariantSpec,
    cfg: AnomalyConfig,
    *,
    seed: int,
    progress: Progress | None = None,
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one variant for one seed and return its results.

    ``cache`` (one dict per dataset and seed) lets ``local`` and ``local-cross`` share the same trained
    local models instead of training them twice; the detectors of the federated and centralized variants
    land in ``cache["detectors"][spec.name]`` (what ``fediot run`` saves and ``fediot train`` returns).
    """
    cache = {} if cache is None else cache
    progress = progress or NullProgress()
    factory = _new_model(ds, cfg)
    initial = get_weights(init_module(factory(), init_seed(seed)))
    t0 = time.perf_counter()
    run = _Run(ds, spec, cfg, factory, initial, seed, progress, cache)
    if spec.kind == "federated":
        res = _run_federated(run)
    elif spec.kind == "centralized":
        res = _run_centralized(run)
    else:
        res = _run_local(run)
    res["wall_seconds"] = time.perf_counter() - t0
    res["window_applied"] = cfg.detect.window > 1 and ds.time_ordered
    return res


def _headline(per_test: dict[str, Any], primary: str) -> dict[str, Any]:
    main = per_test[primary]
    out = {k: main[k] for k in ("macro", "pooled", "clients") if k in main}
    if "window" in main:
        out["window"] = main["window"]
    out["by_attack"] = main.get("by_attack", {})
    if len(per_test) > 1:
        out["tests"] = per_test
    return out


def dataset_fingerprint(ds: AnomalyDataset) -> dict[str, Any]:
    """Identify the training data of a detector: name, protocol, row counts and a sha256 of the rows."""
    digest = hashlib.sha256()
    for cid in sorted(ds.clients):
        split = ds.clients[cid]
        digest.update(cid.encode())
        digest.update(np.ascontiguousarray(split.x_train).tobytes())
        digest.update(np.ascontiguousarray(split.x_opt).tobytes())
    return {
        "name": ds.name,
        "protocol": ds.protocol,
        "clients": len(ds.clients),
        "train_rows": sum(int(c.x_train.shape[0]) for c in ds.clients.values()),
        "opt_rows": sum(int(c.x_opt.shape[0]) for c in ds.clients.values()),
        "sha256": digest.hexdigest(),
    }


def _detector(
    ds: AnomalyDataset,
    cfg: AnomalyConfig,
    module: Autoencoder,
    scaler: Scaler,
    threshold: float,
    training: dict[str, Any],
) -> AnomalyDetector:
    return AnomalyDetector.from_parts(
        module,
        scaler,
        threshold,
        feature_names=ds.feature_names,
        threshold_rule=cfg.threshold_rule,
        feature_set="nbaiot",
        window=_window(ds, cfg),
        training=training,
        dataset=dataset_fingerprint(ds),
    )


def autoencoder_clients(
    ds: AnomalyDataset,
    factory: Callable[[], Any],
    tc: TrainConfig,
    fed: FederatedConfig,
    seed: int,
) -> dict[str, Client]:
    """One :class:`AutoencoderClient` per gateway of ``ds`` (its benign train and opt rows)."""
    return {
        cid: AutoencoderClient(
            cid,
            factory,
            split.x_train,
            split.x_opt,
            tc,
            seed=seed,
            retrain_every=fed.retrain_every,
            retrain_fraction=fed.retrain_fraction,
        )
        for cid, split in ds.clients.items()
    }


def _run_federated(run: _Run) -> dict[str, Any]:
    ds, spec, cfg, factory, initial, seed, progress, cache = run
    fl = replace(cfg.variant_config(spec), seed=seed)
    tc = cfg.train_config(fl.federated.local_epochs)
    clients = autoencoder_clients(ds, factory, tc, fl.federated, seed)
    # The engine: federated scaler, rounds over a seeded random subset of clients, federated threshold
    # from the clients' error statistics on their opt rows (never the rows or the errors themselves).
    progress.task(f"{spec.name}: {fl.federated.rounds} rounds", fl.federated.rounds)
    executor = BatchedAutoencoderExecutor() if fl.federated.executor == "batched" else None
    result = run_fl(
        InProcessTransport(clients, executor),
        fl,
        initial,
        min_fit_clients=min(fl.federated.min_fit_clients, len(clients)),
        on_round=lambda rec: progress.advance(info=f"loss {rec.train_loss:.5f}"),
    )
    assert result.scaler is not None  # run_fl always fits a scaler and a threshold
    assert result.threshold is not None
    scaler, threshold, local = result.scaler, result.threshold, result.local_thresholds
    # Each client scores its own test rows and reports confusion counts.
    module = factory()
    set_weights(module, result.weights)
    training = {"variant": spec.name, "kind": spec.kind, **fl.to_dict(), "local_thresholds": dict(local)}
    if result.privacy is not None:  # differential privacy spent (epsilon at delta), in the artefact too
        training["privacy_spent"] = result.privacy
        del training["local_thresholds"]  # exact per-gateway statistics: not part of a private release
    cache.setdefault("detectors", {})[spec.name] = _detector(ds, cfg, module, scaler, threshold, training)

    def score(cid: str, x: NDArray[np.float32]) -> NDArray[np.float64]:
        return _score(module, scaler, x)

    window = _window(ds, cfg)
    per_test = _evaluate_clients(ds, score, lambda cid: threshold, window)
    res = _headline(per_test, ds.primary_test)
    res["threshold"] = threshold
    if cfg.detect.local_thresholds:
        local_eval = _evaluate_clients(ds, score, lambda cid: local[cid], window)[ds.primary_test]
        res["local_threshold"] = {k: local_eval[k] for k in ("macro", "pooled") if k in local_eval}
        if "window" in local_eval:
            res["local_threshold"]["window"] = {
                k: local_eval["window"][k] for k in ("macro", "pooled") if k in local_eval["window"]
            }
    res["round_train_loss"] = [r.train_loss for r in result.rounds]
    res["round_clients"] = [r.selected for r in result.rounds]
    res["round_failures"] = [r.failures for r in result.rounds]
    res["bytes_sent"] = result.bytes_sent
    if result.privacy is not None:
        res["privacy"] = result.privacy
    res["bytes_received"] = result.bytes_received
    every = fl.federated.retrain_every
    rounds = range(1, fl.federated.rounds + 1)
    res["retrained_rounds"] = [r for r in rounds if r % every == 0] if every else []
    res["scores_sample"] = _score_sample(ds, score, threshold)
    return res


def _score_sample(
    ds: AnomalyDataset, score: Callable[[str, NDArray[np.float32]], NDArray[np.float64]], threshold: float
) -> dict[str, Any]:
    """Benign and attack score quantiles of the primary test set (for the distribution plot)."""
    benign, attack = [], []
    for cid, split in ds.clients.items():
        test = split.tests[ds.primary_test]
        s = score(cid, test.x)
        benign.append(s[test.y == 0])
        attack.append(s[test.y == 1])
    b, a = np.concatenate(benign), np.concatenate(attack)
    qs = np.linspace(0, 1, 101)
    return {
        "threshold": threshold,
        "benign_quantiles": np.quantile(b, qs).tolist() if b.size else [],
        "attack_quantiles": np.quantile(a, qs).tolist() if a.size else [],
    }


def _run_centralized(run: _Run) -> dict[str, Any]:
    ds, spec, cfg, factory, initial, seed, progress, cache = run
    x_train = np.concatenate([c.x_train for c in ds.clients.values()])
    x_opt = np.concatenate([c.x_opt for c in ds.clients.values()])
    progress.task(f"centralized: {cfg.epochs_equivalent} epochs on pooled benign rows", 1)
    module, scaler, threshold, loss = _fit_one(x_train, x_opt, cfg, factory, initial, seed)
    progress.advance(info=f"loss {loss:.5f}")
    training = {"variant": spec.name, "kind": spec.kind, "epochs": cfg.epochs_equivalent, "seed": seed}
    training.update(train=flatten_config(cfg.train), detect=flatten_config(cfg.detect))
    cache.setdefault("detectors", {})[spec.name] = _detector(ds, cfg, module, scaler, threshold, training)

    def score(cid: str, x: NDArray[np.float32]) -> NDArray[np.float64]:
        return _score(module, scaler, x)

    res = _headline(_evaluate_clients(ds, score, lambda cid: threshold, _window(ds, cfg)), ds.primary_test)
    res["threshold"] = threshold
    res["final_train_loss"] = loss
    res["scores_sample"] = _score_sample(ds, score, threshold)
    return res


def _run_local(run: _Run) -> dict[str, Any]:
    ds, spec, cfg, factory, initial, seed, progress, cache = run
    models: dict[str, tuple[Autoencoder, Scaler, float]] = cache.setdefault("local_models", {})
    if not models:
        progress.task(
            f"{spec.name}: one autoencoder per client, {cfg.epochs_equivalent} epochs", len(ds.clients)
        )
        for k, (cid, split) in enumerate(ds.clients.items()):
            module, scaler, threshold, _ = _fit_one(
                split.x_train, split.x_opt, cfg, factory, initial, seed + 1000 * (k + 1)
            )
            models[cid] = (module, scaler, threshold)
            progress.advance(info=cid)

    def score(cid: str, x: NDArray[np.float32]) -> NDArray[np.float64]:
        module, scaler, _ = models[cid]
        return _score(module, scaler, x)

    ids = list(ds.clients)
    targets = (lambda cid: [t for t in ids if t != cid]) if spec.kind == "local-cross" else None
    res = _headline(
        _evaluate_clients(ds, score, lambda cid: models[cid][2], _window(ds, cfg), targets), ds.primary_test
    )
    res["thresholds"] = {cid: m[2] for cid, m in models.items()}
    return res


def _fit_one(
    x_train: NDArray[np.float32],
    x_opt: NDArray[np.float32],
    cfg: AnomalyConfig,
    factory: Callable[[], Autoencoder],
    initial: Weights,
    seed: int,
) -> tuple[Autoencoder, Scaler, float, float]:
    """Train one non-federated detector: scaler and autoencoder on ``x_train``, threshold on ``x_opt``.

    Returns ``(module, scaler, threshold, final training loss)``; the threshold falls back to the training
    rows when there are no opt rows.
    """
    kind = cfg.train.scaler
    scaler = make_scaler(kind, SufficientStats.from_array(scaler_inputs(kind, x_train)))
    module = factory()
    set_weights(module, initial)
    loss = train_autoencoder(
        module, scaler.transform(x_train), cfg.train_config(cfg.epochs_equivalent), seed=seed
    )
    errors = _score(module, scaler, x_opt if x_opt.shape[0] else x_train)
    return module, scaler, fit_threshold(errors, cfg.threshold_rule), loss
