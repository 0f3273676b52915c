"""The seed paper's experiment: KDD Cup 99 split over two IoT gateways; edge, full and federated MLPs."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fediot.config import parse_sections
from fediot.data.kdd import kdd_attack_category, read_kdd99
from fediot.data.partition import partition_contiguous
from fediot.data.scaling import MinMaxScaler, SufficientStats
from fediot.detect.metrics import BinaryCounts, classification_report, confusion_matrix
from fediot.errors import ConfigError
from fediot.experiments.progress import NullProgress, Progress
from fediot.federated.client import ClassifierClient, Client
from fediot.federated.strategy import make_strategy
from fediot.models.mlp import MLP, MLPConfig
from fediot.models.train import TrainConfig, predict_logits, train_classifier
from fediot.models.weights import get_weights, init_module, set_weights
from fediot.sim.runtime import run_rounds

__all__ = ["KddGatewaysConfig", "run_kdd_gateways"]

DROPPED_CONSTANT = "num_outbound_cmds"
MODELS = ("edge1", "edge2", "full", "fl")
SPLITS = ("gateway1", "gateway2", "pooled")


@dataclass(frozen=True, slots=True)
class KddGatewaysConfig:
    """Configuration of the ``kdd-gateways`` experiment (defaults: the seed paper's protocol)."""

    nrows: int = 100_000
    num_gateways: int = 2
    test_fraction: float = 0.4
    hidden: tuple[int, ...] = (8, 8)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    epochs: int = 20
    batch_size: int = 32
    strategy: Literal["fedavg", "fedavgm"] = "fedavg"
    rounds: int = 20
    local_epochs: int = 1
    fraction_fit: float = 1.0
    min_fit_clients: int = 2
    corrected: bool = True

    def __post_init__(self) -> None:
        if self.num_gateways != 2:
            raise ConfigError("kdd-gateways models exactly 2 gateways (edge1, edge2)")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.nrows < 100:
            raise ConfigError(f"data.nrows must be >= 100, got {self.nrows}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"train.optimizer must be sgd or adam, got {self.optimizer!r}")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> KddGatewaysConfig:
        """Build from the nested TOML dict (sections data, model, train, federated, evaluate), strictly."""
        return parse_sections(
            cls,
            cfg,
            {
                "data": ("nrows", "num_gateways", "test_fraction"),
                "model": ("hidden",),
                "train": ("optimizer", "lr", "epochs", "batch_size"),
                "federated": ("strategy", "rounds", "local_epochs", "fraction_fit", "min_fit_clients"),
                "evaluate": ("corrected",),
            },
        )


@dataclass(frozen=True, slots=True)
class _Split:
    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class KddGatewaysData:
    """The prepared (unscaled) data: per-gateway train/test splits and the corrected test set."""

    feature_names: tuple[str, ...]
    label_names: tuple[str, ...]
    gateways: tuple[_Split, ...]
    corrected_x: NDArray[np.float32] | None
    corrected_labels: NDArray[np.str_] | None


def load_kdd_gateways(config: KddGatewaysConfig, seed: int) -> KddGatewaysData:
    """Read and split the data exactly as the seed paper describes (see the config's comments)."""
    table = read_kdd99(nrows=config.nrows)
    keep = [
        i
        for i, (name, cont) in enumerate(zip(table.feature_names, table.continuous, strict=True))
        if cont and name != DROPPED_CONSTANT
    ]
    x = table.x[:, keep]
    names = tuple(table.feature_names[i] for i in keep)
    label_names = tuple(sorted(set(table.labels.tolist())))
    index = {name: i for i, name in enumerate(label_names)}
    y = np.array([index[label] for label in table.labels.tolist()], dtype=np.int64)
    rng = np.random.default_rng(seed)
    splits = []
    for part in partition_contiguous(x.shape[0], config.num_gateways):
        order = rng.permutation(part)
        n_test = round(config.test_fraction * order.size)
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        splits.append(_Split(x[train], y[train], x[test], y[test]))
    cx: NDArray[np.float32] | None = None
    clabels: NDArray[np.str_] | None = None
    if config.corrected:
        corrected = read_kdd99("corrected")
        cx = corrected.x[:, keep]
        clabels = corrected.labels
    return KddGatewaysData(names, label_names, tuple(splits), cx, clabels)


def _scaler_for(xs: list[NDArray[np.float32]]) -> MinMaxScaler:
    stats = SufficientStats.from_array(xs[0])
    for x in xs[1:]:
        stats = stats.merge(SufficientStats.from_array(x))
    return MinMaxScaler.from_stats(stats)


def _evaluate(module: MLP, scaler: MinMaxScaler, data: KddGatewaysData, num_classes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cms = []
    for g, split in enumerate(data.gateways, start=1):
        pred = predict_logits(module, scaler.transform(split.x_test)).argmax(axis=1)
        cm = confusion_matrix(split.y_test, pred, num_classes)
        cms.append(cm)
        out[f"gateway{g}"] = classification_report(cm, data.label_names)
    out["pooled"] = classification_report(sum(cms[1:], cms[0]), data.label_names)
    if data.corrected_x is not None and data.corrected_labels is not None:
        normal = data.label_names.index("normal")
        pred = predict_logits(module, scaler.transform(data.corrected_x)).argmax(axis=1)
        is_attack_true = data.corrected_labels != "normal"
        is_attack_pred = pred != normal
        counts = BinaryCounts.from_predictions(is_attack_true, is_attack_pred)
        report: dict[str, Any] = counts.as_dict()
        seen = set(data.label_names)
        per_category: dict[str, float] = {}
        uniq, inverse = np.unique(data.corrected_labels, return_inverse=True)
        categories = np.array([kdd_attack_category(str(lab)) for lab in uniq])[inverse]
        for cat in ("dos", "probe", "r2l", "u2r"):
            mask = categories == cat
            per_category[cat] = float(is_attack_pred[mask].mean()) if mask.any() else float("nan")
        unseen = np.array([str(lab) not in seen for lab in uniq])[inverse]
        report["tpr_by_category"] = per_category
        report["tpr_unseen_attack_types"] = float(is_attack_pred[unseen].mean()) if unseen.any() else None
        report["num_unseen_attack_rows"] = int(unseen.sum())
        out["corrected_binary"] = report
    return out


def majority_baselines(config: KddGatewaysConfig, seed: int) -> dict[str, float]:
    """Accuracy of always predicting each test split's most frequent training class (the floor to beat)."""
    data = load_kdd_gateways(replace(config, corrected=False), seed)
    out = {}
    tests = [g.y_test for g in data.gateways]
    for name, y_train, y_test in (
        ("gateway1", data.gateways[0].y_train, tests[0]),
        ("gateway2", data.gateways[1].y_train, tests[1]),
        ("pooled", np.concatenate([g.y_train for g in data.gateways]), np.concatenate(tests)),
    ):
        majority = int(np.bincount(y_train).argmax())
        out[f"{name} ({data.label_names[majority]})"] = float((y_test == majority).mean())
    return out


def run_kdd_gateways(
    config: KddGatewaysConfig, *, seed: int, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train edge1, edge2, full and fl for one seed.

    Returns
    -------
    runs : dict
        ``{model: {split: metrics, ..., wall_seconds}}`` for models edge1, edge2, full, fl and splits
        gateway1, gateway2, pooled (and ``corrected_binary``).
    meta : dict
        Feature names, label names and split sizes.
    """
    progress = progress or NullProgress()
    data = load_kdd_gateways(config, seed)
    num_classes = len(data.label_names)
    mlp_config = MLPConfig(
        num_features=len(data.feature_names), hidden=config.hidden, num_classes=num_classes
    )
    tc = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer="adam" if config.optimizer == "adam" else "sgd",
    )
    init_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])

    def new_model() -> MLP:
        return MLP(mlp_config)

    initial = get_weights(init_module(new_model(), init_seed))
    g1, g2 = data.gateways
    runs: dict[str, Any] = {}
    centralised = {
        "edge1": [g1],
        "edge2": [g2],
        "full": [g1, g2],
    }
    for name, parts in centralised.items():
        t0 = time.perf_counter()
        progress.task(f"{name}: {config.epochs} epochs", 1)
        xs = [p.x_train for p in parts]
        scaler = _scaler_for(xs)
        x = scaler.transform(np.concatenate(xs))
        y = np.concatenate([p.y_train for p in parts])
        module = new_model()
        set_weights(module, initial)
        loss = train_classifier(module, x, y, tc, seed=seed)
        progress.advance(info=f"loss {loss:.4f}")
        runs[name] = _evaluate(module, scaler, data, num_classes)
        runs[name]["train_rows"] = int(x.shape[0])
        runs[name]["final_train_loss"] = loss
        runs[name]["wall_seconds"] = time.perf_counter() - t0

    # Federated: the scaler comes from the gateways' per-feature sufficient statistics (min/max), never rows.
    t0 = time.perf_counter()
    scaler = _scaler_for([g.x_train for g in data.gateways])
    clients: dict[str, Client] = {
        f"gateway{k}": ClassifierClient(
            f"gateway{k}", new_model, scaler.transform(g.x_train), g.y_train, tc, seed=seed
        )
        for k, g in enumerate(data.gateways, start=1)
    }
    progress.task(f"fl: {config.rounds} rounds x {config.local_epochs} local epoch(s)", config.rounds)
    result = run_rounds(
        clients,
        make_strategy(config.strategy),
        initial,
        num_rounds=config.rounds,
        fraction_fit=config.fraction_fit,
        min_fit_clients=config.min_fit_clients,
        seed=seed,
        fit_config=lambda r: {"local-epochs": config.local_epochs},
        on_round=lambda rec: progress.advance(info=f"loss {rec.train_loss:.4f}"),
    )
    module = new_model()
    set_weights(module, result.weights)
    runs["fl"] = _evaluate(module, scaler, data, num_classes)
    runs["fl"]["train_rows"] = int(sum(g.x_train.shape[0] for g in data.gateways))
    runs["fl"]["round_train_loss"] = [r.train_loss for r in result.rounds]
    runs["fl"]["final_train_loss"] = result.rounds[-1].train_loss if result.rounds else float("nan")
    runs["fl"]["bytes_sent"] = result.bytes_sent
    runs["fl"]["bytes_received"] = result.bytes_received
    runs["fl"]["wall_seconds"] = time.perf_counter() - t0
    meta = {
        "feature_names": list(data.feature_names),
        "label_names": list(data.label_names),
        "split_rows": {
            f"gateway{k}": {"train": int(g.x_train.shape[0]), "test": int(g.x_test.shape[0])}
            for k, g in enumerate(data.gateways, start=1)
        },
    }
    return runs, meta
