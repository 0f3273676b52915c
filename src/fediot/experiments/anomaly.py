"""Federated autoencoder anomaly detection experiments: FL (FedAvg/FedAvgM) vs centralized vs local-only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fediot.data.anomaly import AnomalyDataset
from fediot.data.scaling import SCALER_KINDS, Scaler, SufficientStats, make_scaler, scaler_inputs
from fediot.detect.evaluate import ClientEvaluation, evaluate_scores, summarize_evaluations
from fediot.detect.threshold import threshold_from_errors, threshold_from_stats
from fediot.errors import ConfigError
from fediot.experiments.progress import NullProgress, Progress
from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.strategy import make_strategy
from fediot.federated.types import Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import TrainConfig, reconstruction_errors, train_autoencoder
from fediot.models.weights import get_weights, init_module, set_weights
from fediot.sim.batched import BatchedAutoencoderExecutor
from fediot.sim.runtime import run_rounds

__all__ = ["AnomalyConfig", "VariantSpec", "run_variant"]

VariantKind = Literal["federated", "centralized", "local", "local-cross"]


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One compared method.

    Parameters
    ----------
    name : str
        Label in results (e.g. ``MRN``: FedAvgM with retraining, the seed README's code).
    kind : {"federated", "centralized", "local", "local-cross"}
        ``local-cross`` = the local-only models evaluated on the *other* clients' test data.
    strategy : str
        ``fedavg`` or ``fedavgm`` (federated only).
    retrain_every : int
        Retraining period in rounds (0 = none).
    """

    name: str
    kind: VariantKind = "federated"
    strategy: str = "fedavgm"
    retrain_every: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("federated", "centralized", "local", "local-cross"):
            raise ConfigError(f"variant {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "federated" and self.strategy not in ("fedavg", "fedavgm"):
            raise ConfigError(f"variant {self.name!r}: unknown strategy {self.strategy!r}")


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Shared settings of the anomaly experiments (``[federated]``, ``[train]``, ``[detect]`` sections)."""

    variants: tuple[VariantSpec, ...]
    rounds: int = 20
    fraction_fit: float = 0.5
    min_fit_clients: int = 2
    local_epochs: int = 1
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9
    retrain_fraction: float = 0.5
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    ratios: tuple[float, ...] = (0.75, 0.5, 0.33, 0.25)
    scaler: str = "log-minmax"
    threshold_k: float = 1.0
    window: int = 1
    local_thresholds: bool = True
    centralized_epochs: int | None = None
    executor: Literal["batched", "sequential"] = "batched"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.variants:
            raise ConfigError("an anomaly experiment needs at least one variant")
        if self.rounds < 1:
            raise ConfigError(f"federated.rounds must be >= 1, got {self.rounds}")
        if self.window < 1:
            raise ConfigError(f"detect.window must be >= 1, got {self.window}")
        if self.scaler not in SCALER_KINDS:
            raise ConfigError(f"train.scaler must be one of {', '.join(SCALER_KINDS)}, got {self.scaler!r}")

    @property
    def epochs_equivalent(self) -> int:
        """Epochs of the non-federated baselines (default ``rounds x local_epochs``).

        That is the number of passes over its data that a client selected in every round makes.
        """
        return self.centralized_epochs or self.rounds * self.local_epochs

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> AnomalyConfig:
        """Build from the nested TOML dict."""
        fed, train, det = cfg.get("federated", {}), cfg.get("train", {}), cfg.get("detect", {})
        variants = tuple(
            VariantSpec(
                name=str(v["name"]),
                kind=v.get("kind", "federated"),
                strategy=str(v.get("strategy", "fedavgm")),
                retrain_every=int(v.get("retrain_every", 0)),
            )
            for v in cfg.get("variants", [])
        )
        try:
            return cls(
                variants=variants,
                rounds=int(fed.get("rounds", 20)),
                fraction_fit=float(fed.get("fraction_fit", 0.5)),
                min_fit_clients=int(fed.get("min_fit_clients", 2)),
                local_epochs=int(fed.get("local_epochs", 1)),
                server_learning_rate=float(fed.get("server_learning_rate", 1.0)),
                server_momentum=float(fed.get("server_momentum", 0.9)),
                retrain_fraction=float(fed.get("retrain_fraction", 0.5)),
                optimizer="sgd" if str(train.get("optimizer", "adam")) == "sgd" else "adam",
                lr=float(train.get("lr", 1e-3)),
                batch_size=int(train.get("batch_size", 64)),
                ratios=tuple(float(r) for r in train.get("ratios", (0.75, 0.5, 0.33, 0.25))),
                scaler=str(train.get("scaler", "log-minmax")),
                threshold_k=float(det.get("threshold_k", 1.0)),
                window=int(det.get("window", 1)),
                local_thresholds=bool(det.get("local_thresholds", True)),
                executor="sequential" if str(fed.get("executor", "batched")) == "sequential" else "batched",
                centralized_epochs=(
                    int(train["centralized_epochs"]) if "centralized_epochs" in train else None
                ),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"anomaly experiment config: {exc}") from None

    def train_config(self, epochs: int) -> TrainConfig:
        """Local training settings for ``epochs`` passes."""
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer)


def _merge(stats: list[SufficientStats]) -> SufficientStats:
    out = stats[0]
    for s in stats[1:]:
        out = out.merge(s)
    return out


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
    ae = AutoencoderConfig(num_features=len(ds.feature_names), ratios=cfg.ratios)
    return lambda: Autoencoder(ae)


def _window(ds: AnomalyDataset, cfg: AnomalyConfig) -> int:
    return cfg.window if ds.time_ordered else 1


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
    local models instead of training them twice.
    """
    progress = progress or NullProgress()
    factory = _new_model(ds, cfg)
    init_seed = int(np.random.SeedSequence([seed, 2]).generate_state(1)[0])
    initial = get_weights(init_module(factory(), init_seed))
    t0 = time.perf_counter()
    if spec.kind == "federated":
        res = _run_federated(ds, spec, cfg, factory, initial, seed, progress)
    elif spec.kind == "centralized":
        res = _run_centralized(ds, cfg, factory, initial, seed, progress)
    else:
        res = _run_local(ds, spec, cfg, factory, initial, seed, progress, {} if cache is None else cache)
    res["wall_seconds"] = time.perf_counter() - t0
    res["window_applied"] = cfg.window > 1 and ds.time_ordered
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


def _run_federated(
    ds: AnomalyDataset,
    spec: VariantSpec,
    cfg: AnomalyConfig,
    factory: Callable[[], Autoencoder],
    initial: Weights,
    seed: int,
    progress: Progress,
) -> dict[str, Any]:
    tc = cfg.train_config(cfg.local_epochs)
    clients = {
        cid: AutoencoderClient(
            cid,
            factory,
            split.x_train,
            split.x_opt,
            tc,
            seed=seed,
            retrain_every=spec.retrain_every,
            retrain_fraction=cfg.retrain_fraction,
        )
        for cid, split in ds.clients.items()
    }
    # 1. Federated scaler: every client sends per-feature sufficient statistics of its benign train rows.
    scaler = make_scaler(cfg.scaler, _merge([c.feature_stats(cfg.scaler) for c in clients.values()]))
    for c in clients.values():
        c.set_scaler(scaler)
    # 2. Rounds over a seeded random subset of clients.
    strategy = make_strategy(
        spec.strategy, server_learning_rate=cfg.server_learning_rate, server_momentum=cfg.server_momentum
    )
    progress.task(f"{spec.name}: {cfg.rounds} rounds", cfg.rounds)
    as_clients: dict[str, Client] = dict(clients)
    result = run_rounds(
        as_clients,
        strategy,
        initial,
        num_rounds=cfg.rounds,
        fraction_fit=cfg.fraction_fit,
        min_fit_clients=min(cfg.min_fit_clients, len(clients)),
        seed=seed,
        fit_config=lambda r: {"local-epochs": cfg.local_epochs},
        on_round=lambda rec: progress.advance(info=f"loss {rec.train_loss:.5f}"),
        executor=BatchedAutoencoderExecutor() if cfg.executor == "batched" else None,
    )
    # 3. Federated threshold from the clients' error statistics on their opt rows (never the errors).
    error_stats = {cid: c.error_stats(result.weights) for cid, c in clients.items()}
    merged = error_stats[next(iter(error_stats))]
    for cid in list(error_stats)[1:]:
        merged = merged.merge(error_stats[cid])
    threshold = threshold_from_stats(merged, k=cfg.threshold_k)
    local = {cid: threshold_from_stats(s, k=cfg.threshold_k) for cid, s in error_stats.items()}
    # 4. Each client scores its own test rows and reports confusion counts.
    module = factory()
    set_weights(module, result.weights)

    def score(cid: str, x: NDArray[np.float32]) -> NDArray[np.float64]:
        return _score(module, scaler, x)

    per_test = _evaluate_clients(ds, score, lambda cid: threshold, _window(ds, cfg))
    res = _headline(per_test, ds.primary_test)
    res["threshold"] = threshold
    if cfg.local_thresholds:
        local_eval = _evaluate_clients(ds, score, lambda cid: local[cid], _window(ds, cfg))[ds.primary_test]
        res["local_threshold"] = {k: local_eval[k] for k in ("macro", "pooled") if k in local_eval}
        if "window" in local_eval:
            res["local_threshold"]["window"] = {
                k: local_eval["window"][k] for k in ("macro", "pooled") if k in local_eval["window"]
            }
    res["round_train_loss"] = [r.train_loss for r in result.rounds]
    res["round_clients"] = [r.selected for r in result.rounds]
    res["bytes_sent"] = result.bytes_sent
    res["bytes_received"] = result.bytes_received
    res["retrained_rounds"] = (
        [r for r in range(1, cfg.rounds + 1) if r % spec.retrain_every == 0] if spec.retrain_every else []
    )
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


def _run_centralized(
    ds: AnomalyDataset,
    cfg: AnomalyConfig,
    factory: Callable[[], Autoencoder],
    initial: Weights,
    seed: int,
    progress: Progress,
) -> dict[str, Any]:
    x_train = np.concatenate([c.x_train for c in ds.clients.values()])
    x_opt = np.concatenate([c.x_opt for c in ds.clients.values()])
    progress.task(f"centralized: {cfg.epochs_equivalent} epochs on pooled benign rows", 1)
    module, scaler, threshold, loss = _fit_one(x_train, x_opt, cfg, factory, initial, seed)
    progress.advance(info=f"loss {loss:.5f}")

    def score(cid: str, x: NDArray[np.float32]) -> NDArray[np.float64]:
        return _score(module, scaler, x)

    res = _headline(_evaluate_clients(ds, score, lambda cid: threshold, _window(ds, cfg)), ds.primary_test)
    res["threshold"] = threshold
    res["final_train_loss"] = loss
    res["scores_sample"] = _score_sample(ds, score, threshold)
    return res


def _run_local(
    ds: AnomalyDataset,
    spec: VariantSpec,
    cfg: AnomalyConfig,
    factory: Callable[[], Autoencoder],
    initial: Weights,
    seed: int,
    progress: Progress,
    cache: dict[str, Any],
) -> dict[str, Any]:
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
    scaler = make_scaler(cfg.scaler, SufficientStats.from_array(scaler_inputs(cfg.scaler, x_train)))
    module = factory()
    set_weights(module, initial)
    loss = train_autoencoder(
        module, scaler.transform(x_train), cfg.train_config(cfg.epochs_equivalent), seed=seed
    )
    errors = _score(module, scaler, x_opt if x_opt.shape[0] else x_train)
    return module, scaler, threshold_from_errors(errors, k=cfg.threshold_k), loss
