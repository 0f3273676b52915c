"""The detector artefact: one file holding everything needed to score traffic, loadable without running code.

Format (``fediot-detector``, version :data:`FORMAT_VERSION`): a NumPy ``.npz`` archive read with
``allow_pickle=False`` — so loading a file received from elsewhere cannot execute code — holding

- ``meta``: UTF-8 JSON (format, version, fediot version, autoencoder shape, scaler kind, threshold and its
  rule, per-device thresholds, feature set and column names, window size, the full training
  configuration, the dataset fingerprint, and a sha256 of every array);
- ``weights/<name>``: the autoencoder's float32 parameters (``state_dict`` names);
- ``scaler/<name>``: the scaler's float64 per-feature arrays.

Saving validates before writing (finite weights, scaler and thresholds; shapes consistent with the feature
count) and writes atomically. Loading validates the same and checks every array against its recorded
sha256 and shape, so a truncated, edited or foreign file fails with one clear :class:`DataError` naming
the file and what is wrong, never a traceback. The checksums detect damage and careless edits; they do not
authenticate the file's origin (anyone can recompute them): obtain artefacts over a trusted channel.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot import __version__
from fediot.errors import DataError
from fediot.fileio import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "DetectorArtefact", "load_artefact", "save_artefact"]

FORMAT = "fediot-detector"
"""The ``format`` field of every detector artefact."""
FORMAT_VERSION = 2
"""Version of the layout; a reader refuses other versions (1 was the pickle-free ``.pt`` layout)."""


@dataclass(frozen=True, slots=True)
class DetectorArtefact:
    """The content of a detector file: plain values that ``AnomalyDetector`` is built from.

    Attributes
    ----------
    weights : dict of str to ndarray
        Autoencoder ``state_dict`` as float32 arrays.
    num_features : int
    ratios : tuple of float
        Autoencoder layer widths as fractions of the input width.
    scaler : dict
        The scaler's ``to_dict()`` (``kind``, ``log`` and float64 per-feature arrays).
    threshold : float
        Global threshold: a row is anomalous when its score is above it.
    threshold_rule : dict
        ``ThresholdRule.to_dict()``.
    device_thresholds : dict of str to float
        Per-device calibrated thresholds (key: device MAC or client id).
    feature_set : str
        Name of the feature set the model was trained on (``nbaiot``: N-BaIoT's 115 columns).
    feature_names : tuple of str or None
    window : int
        Window size of the majority vote the detector was evaluated with.
    training : dict
        The full training configuration (``FLConfig.to_dict()`` or the variant's settings).
    dataset : dict
        Fingerprint of the training data (name, build parameters, row counts, hashes).
    train_loss : float
    seed : int
    fediot_version : str
        The version that wrote the file.
    """

    weights: dict[str, NDArray[np.float32]]
    num_features: int
    ratios: tuple[float, ...]
    scaler: dict[str, Any]
    threshold: float
    threshold_rule: dict[str, Any]
    device_thresholds: dict[str, float] = field(default_factory=dict)
    feature_set: str = "nbaiot"
    feature_names: tuple[str, ...] | None = None
    window: int = 1
    training: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    train_loss: float = float("nan")
    seed: int = 0
    fediot_version: str = __version__


def _digest(a: NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _finite_number(value: Any, what: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number, got {value!r}", path=where) from None
    if not math.isfinite(number):
        raise DataError(f"{what} must be finite, got {number!r}", path=where)
    return number


def _validate(art: DetectorArtefact, where: str) -> None:
    """Raise :class:`DataError` unless ``art`` is a consistent, finite detector."""
    if art.num_features < 1:
        raise DataError(f"num_features must be >= 1, got {art.num_features}", path=where)
    if not art.weights:
        raise DataError("the detector has no weights", path=where)
    for name, w in art.weights.items():
        if not np.isfinite(w).all():
            raise DataError(
                f"weight {name!r} holds non-finite values: refusing a detector that flags nothing", path=where
            )
    first = next(iter(art.weights.values()))
    if first.ndim != 2 or first.shape[1] != art.num_features:
        raise DataError(
            f"the first layer has shape {first.shape}, expected (*, {art.num_features})", path=where
        )
    arrays = {k: v for k, v in art.scaler.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise DataError("the scaler has no per-feature arrays", path=where)
    for name, a in arrays.items():
        if a.shape != (art.num_features,):
            raise DataError(
                f"scaler {name!r} has shape {a.shape}, expected ({art.num_features},)", path=where
            )
        if not np.isfinite(a).all():
            raise DataError(f"scaler {name!r} holds non-finite values", path=where)
    _finite_number(art.threshold, "threshold", where)
    for device, value in art.device_thresholds.items():
        _finite_number(value, f"device threshold of {device!r}", where)
    if art.feature_names is not None and len(art.feature_names) != art.num_features:
        raise DataError(f"{len(art.feature_names)} feature names for {art.num_features} features", path=where)
    if art.window < 1:
        raise DataError(f"window must be >= 1, got {art.window}", path=where)


def save_artefact(path: str | Path, art: DetectorArtefact) -> Path:
    """Validate ``art`` and write it to ``path`` atomically; return the path.

    Raises
    ------
    DataError
        If the detector is not finite or not consistent (nothing is written then).
    """
    target = Path(path)
    _validate(art, str(target))
    arrays: dict[str, NDArray[Any]] = {}
    for name, w in art.weights.items():
        arrays[f"weights/{name}"] = np.ascontiguousarray(w, dtype=np.float32)
    scaler_meta: dict[str, Any] = {}
    for name, value in art.scaler.items():
        if isinstance(value, np.ndarray):
            arrays[f"scaler/{name}"] = np.ascontiguousarray(value, dtype=np.float64)
        else:
            scaler_meta[name] = value
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fediot_version": art.fediot_version,
        "num_features": int(art.num_features),
        "ratios": [float(r) for r in art.ratios],
        "weight_names": list(art.weights),
        "scaler": scaler_meta,
        "threshold": float(art.threshold),
        "threshold_rule": dict(art.threshold_rule),
        "device_thresholds": {str(k): float(v) for k, v in art.device_thresholds.items()},
        "feature_set": art.feature_set,
        "feature_names": None if art.feature_names is None else list(art.feature_names),
        "window": int(art.window),
        "training": art.training,
        "dataset": art.dataset,
        "train_loss": None if math.isnan(art.train_loss) else float(art.train_loss),
        "seed": int(art.seed),
        "arrays": {
            k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _digest(a)}
            for k, a in arrays.items()
        },
    }
    payload = {**arrays, "meta": np.frombuffer(json.dumps(meta, allow_nan=False).encode(), dtype=np.uint8)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)  # type: ignore[arg-type]

    return atomic_write(target, write)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "meta" not in npz.files:
                raise DataError("not a fediot detector artefact (no meta record)", path=path)
            meta = json.loads(bytes(npz["meta"]).decode("utf-8"))
            arrays = {k: np.array(npz[k]) for k in npz.files if k != "meta"}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("no such detector file", path=path) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, KeyError) as exc:
        raise DataError(
            f"not a readable detector artefact (truncated or not an .npz file: {type(exc).__name__}: {exc})",
            path=path,
        ) from None
    if not isinstance(meta, dict):
        raise DataError("not a fediot detector artefact (meta is not an object)", path=path)
    return meta, arrays


def load_artefact(path: str | Path) -> DetectorArtefact:
    """Read and validate a detector file written by :func:`save_artefact` (never unpickles anything).

    Raises
    ------
    DataError
        If the file is missing, truncated, not a detector, of another format version, altered (an array's
        sha256, shape or dtype differs from the record), or not finite — naming the file and the reason.
    """
    p = Path(path)
    meta, arrays = _read(p)
    if meta.get("format") != FORMAT:
        raise DataError(f"not a fediot detector artefact (format {meta.get('format')!r})", path=p)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"detector format version {meta.get('format_version')!r}; this fediot ({__version__}) reads "
            f"version {FORMAT_VERSION}: re-train or re-export the model",
            path=p,
        )
    try:
        recorded: Mapping[str, Any] = meta["arrays"]
        if set(recorded) != set(arrays):
            missing = sorted(set(recorded) ^ set(arrays))
            raise DataError(f"the file's arrays differ from its record ({missing[:3]})", path=p)
        for name, a in arrays.items():
            rec = recorded[name]
            if list(a.shape) != list(rec["shape"]) or str(a.dtype) != rec["dtype"]:
                raise DataError(f"array {name!r} has shape/dtype {a.shape}/{a.dtype}, recorded {rec}", path=p)
            if _digest(a) != rec["sha256"]:
                raise DataError(
                    f"array {name!r} was altered (sha256 mismatch): refusing a tampered detector", path=p
                )
        weights = {name: arrays[f"weights/{name}"].astype(np.float32) for name in meta["weight_names"]}
        scaler: dict[str, Any] = dict(meta["scaler"])
        scaler.update({k.removeprefix("scaler/"): v for k, v in arrays.items() if k.startswith("scaler/")})
        names = meta["feature_names"]
        loss = meta.get("train_loss")
        art = DetectorArtefact(
            weights=weights,
            num_features=int(meta["num_features"]),
            ratios=tuple(float(r) for r in meta["ratios"]),
            scaler=scaler,
            threshold=_finite_number(meta["threshold"], "threshold", str(p)),
            threshold_rule=dict(meta["threshold_rule"]),
            device_thresholds={str(k): float(v) for k, v in meta["device_thresholds"].items()},
            feature_set=str(meta["feature_set"]),
            feature_names=None if names is None else tuple(str(n) for n in names),
            window=int(meta["window"]),
            training=dict(meta["training"]),
            dataset=dict(meta["dataset"]),
            train_loss=float("nan") if loss is None else float(loss),
            seed=int(meta["seed"]),
            fediot_version=str(meta["fediot_version"]),
        )
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"malformed detector record ({type(exc).__name__}: {exc})", path=p) from None
    _validate(art, str(p))
    return art
