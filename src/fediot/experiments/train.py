"""``fediot train``: train one configured variant of an anomaly experiment and return its detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fediot.errors import ConfigError
from fediot.experiments.progress import NullProgress, Progress

__all__ = ["TrainedDetector", "train_detector"]


@dataclass(frozen=True, slots=True)
class TrainedDetector:
    """A trained detector and the evaluation of its variant on the dataset's test sets."""

    detector: Any
    """The :class:`fediot.detect.detector.AnomalyDetector`."""
    variant: str
    results: dict[str, Any]
    """``run_variant``'s results for the variant (macro/pooled metrics, per attack, threshold...)."""


def train_detector(
    experiment: str = "fl-vs-centralized",
    *,
    variant: str | None = None,
    client: str | None = None,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: Progress | None = None,
) -> TrainedDetector:
    """Train ``variant`` of ``experiment`` (default: its first federated variant) and return the detector.

    Parameters
    ----------
    experiment : str
        An anomaly experiment (shipped name or TOML path); its ``[data]``, ``[federated]``, ``[train]`` and
        ``[detect]`` sections are used as they are, with ``overrides``.
    variant : str, optional
        A ``[[variants]]`` name (``FL``, ``centralized``, ``local``, ...).
    client : str, optional
        For a ``local`` variant: whose local model to return (required then).
    seed : int
        Fixes partitions, initialisation, selection and mini-batch order.

    Raises
    ------
    ConfigError
        For an unknown experiment or variant, a ``local`` variant without ``client``, or a bad override.
    """
    from fediot.experiments.anomaly import dataset_fingerprint, run_variant
    from fediot.experiments.datasets import load_anomaly_dataset
    from fediot.experiments.runner import _anomaly_config, load_experiment

    kind, cfg = load_experiment(experiment, overrides)
    if kind != "anomaly":
        raise ConfigError(f"fediot train needs an anomaly experiment; {experiment!r} is {kind!r}")
    config, data = _anomaly_config(cfg)
    names = [v.name for v in config.variants]
    if variant is None:
        spec = next((v for v in config.variants if v.kind == "federated"), config.variants[0])
    else:
        matches = [v for v in config.variants if v.name == variant]
        if not matches:
            choices = ", ".join(names)
            raise ConfigError(f"unknown variant {variant!r} of {experiment!r}; choose one of {choices}")
        spec = matches[0]
    if spec.kind == "local-cross":
        raise ConfigError("a local-cross variant evaluates local models elsewhere; train --variant local")
    if spec.kind == "local" and client is None:
        raise ConfigError(f"variant {spec.name!r} trains one model per client: name one with --client")
    progress = progress or NullProgress()
    ds = load_anomaly_dataset(data, seed)
    if client is not None and client not in ds.clients:
        raise ConfigError(f"unknown client {client!r}; clients: {', '.join(sorted(ds.clients))}")
    cache: dict[str, Any] = {}
    results = run_variant(ds, spec, config, seed=seed, progress=progress, cache=cache)
    if spec.kind == "local":
        from fediot.detect.detector import AnomalyDetector

        module, scaler, threshold = cache["local_models"][client]
        detector = AnomalyDetector.from_parts(
            module,
            scaler,
            threshold,
            feature_names=ds.feature_names,
            threshold_rule=config.threshold_rule,
            window=config.detect.window if ds.time_ordered else 1,
            training={"variant": spec.name, "kind": "local", "client": client, "seed": seed},
            dataset=dataset_fingerprint(ds),
        )
    else:
        detector = cache["detectors"][spec.name]
    return TrainedDetector(detector, spec.name, results)
