"""The AnomalyDetector estimator: scaler + autoencoder + threshold, fitted locally or assembled from parts."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from fediot.data.scaling import MinMaxScaler, Scaler, StandardScaler, SufficientStats, scaler_from_dict
from fediot.detect.artefact import FORMAT_VERSION, DetectorArtefact, load_artefact, save_artefact
from fediot.detect.threshold import ThresholdRule, fit_threshold
from fediot.detect.window import window_vote
from fediot.errors import DataError
from fediot.models import (
    Autoencoder,
    AutoencoderConfig,
    TrainConfig,
    get_weights,
    init_module,
    set_weights,
    train_autoencoder,
)
from fediot.models.scoring import AutoencoderScorer
from fediot.models.weights import Weights

__all__ = ["FORMAT_VERSION", "AnomalyDetector"]

_RECORDED = ("device_thresholds", "feature_set", "window", "training", "dataset")
"""Artefact fields that ``from_parts`` records as they are."""
DEFAULT_TRAIN_CONFIG = TrainConfig(epochs=20, batch_size=32, lr=1e-3, optimizer="adam")


def _column_names(x: Any) -> tuple[str, ...] | None:
    columns = getattr(x, "columns", None)
    return None if columns is None else tuple(str(c) for c in columns)


def _check_names(expected: Sequence[str], got: Sequence[str], what: str) -> None:
    """Raise :class:`DataError` naming the first position where ``got`` differs from ``expected``."""
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        if e != g:
            raise DataError(f"{what}: feature {i} is {g!r}, expected {e!r}", column=g)
    if len(expected) != len(got):
        raise DataError(f"{what}: {len(got)} features, expected {len(expected)}")


class AnomalyDetector:
    """Flag rows whose autoencoder reconstruction error exceeds a threshold fitted on benign rows.

    Follows the scikit-learn estimator contract: ``__init__`` only stores parameters, :meth:`fit`
    validates and returns ``self``, learned state ends in ``_``. A federated run assembles one from the
    global model, a federated scaler and a federated threshold with :meth:`from_parts`.

    Parameters
    ----------
    scaler : {"minmax", "standard"}
        Feature scaler fitted on the training rows' sufficient statistics.
    threshold_rule : ThresholdRule, optional
        Default: N-BaIoT's ``mean + 1 * std`` (sample std) of the opt errors.
    ratios : tuple of float
        Autoencoder encoder widths as fractions of the input (N-BaIoT's 75/50/33/25 %).
    train_config : TrainConfig, optional
        Default: 20 epochs of Adam, lr 1e-3, batch 32.
    seed : int
        Fixes the weight initialisation and the mini-batch order.

    Attributes
    ----------
    module_ : Autoencoder
    scaler_ : MinMaxScaler or StandardScaler
    threshold_ : float
        A row is anomalous when its score is above it.
    threshold_rule_ : ThresholdRule
    feature_names_in_ : tuple of str or None
    n_features_in_ : int
    train_loss_ : float
        Mean training loss of the last epoch (NaN when assembled from parts).
    device_thresholds_ : dict of str to float
        Per-device calibrated thresholds (see :meth:`threshold_for`).
    feature_set_ : str
    window_ : int
    training_, dataset_ : dict
        Training configuration and dataset fingerprint (recorded in the saved artefact).
    """

    device_thresholds_: dict[str, float]
    feature_set_: str
    window_: int
    training_: dict[str, Any]
    dataset_: dict[str, Any]

    def __init__(
        self,
        *,
        scaler: Literal["minmax", "standard"] = "minmax",
        threshold_rule: ThresholdRule | None = None,
        ratios: tuple[float, ...] = (0.75, 0.5, 0.33, 0.25),
        train_config: TrainConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.scaler = scaler
        self.threshold_rule = threshold_rule
        self.ratios = ratios
        self.train_config = train_config
        self.seed = seed

    # ------------------------------------------------------------------ fitting and assembling

    def fit(
        self,
        x_train_benign: ArrayLike,
        x_opt_benign: ArrayLike | None = None,
        *,
        feature_names: Sequence[str] | None = None,
    ) -> AnomalyDetector:
        """Fit the scaler and the autoencoder on benign rows, then the threshold on the opt rows.

        Parameters
        ----------
        x_train_benign : array-like of shape (n_train, n_features)
            Benign training rows (raw, unscaled).
        x_opt_benign : array-like of shape (n_opt, n_features), optional
            Held-out benign rows for the threshold; the training rows are used when omitted (the
            threshold is then optimistic: the model has seen those rows).
        feature_names : sequence of str, optional
            Column names; taken from ``x_train_benign.columns`` (a DataFrame) when omitted.

        Returns
        -------
        AnomalyDetector
            ``self``.
        """
        if self.scaler not in ("minmax", "standard"):
            raise ValueError(f"scaler must be 'minmax' or 'standard', got {self.scaler!r}")
        rule = self.threshold_rule if self.threshold_rule is not None else ThresholdRule()
        config = self.train_config if self.train_config is not None else DEFAULT_TRAIN_CONFIG
        names = tuple(feature_names) if feature_names is not None else _column_names(x_train_benign)
        x_train = np.asarray(x_train_benign, dtype=np.float64)
        stats = SufficientStats.from_array(x_train)  # validates 2-D and finite
        if stats.count < 2:
            raise DataError(f"need >= 2 benign training rows, got {stats.count}")
        if names is not None and len(names) != stats.num_features:
            raise DataError(f"{len(names)} feature names for {stats.num_features} columns")
        scaler: Scaler = (
            MinMaxScaler.from_stats(stats) if self.scaler == "minmax" else StandardScaler.from_stats(stats)
        )
        module = Autoencoder(AutoencoderConfig(num_features=stats.num_features, ratios=tuple(self.ratios)))
        init_module(module, self.seed)
        x_scaled = scaler.transform(x_train)
        self.train_loss_ = train_autoencoder(module, x_scaled, config, seed=self.seed)
        self.module_ = module
        self.scaler_ = scaler
        self.feature_names_in_ = names
        self.n_features_in_ = stats.num_features
        self.threshold_rule_ = rule
        if x_opt_benign is None:
            opt_errors = self._scorer().score(x_train)  # the scorer anomaly_score uses: one computation
        else:
            x_opt = np.asarray(x_opt_benign, dtype=np.float64)
            if names is not None and (opt_names := _column_names(x_opt_benign)) is not None:
                _check_names(names, opt_names, "x_opt_benign")
            opt_errors = self._errors(x_opt)
        self.threshold_ = fit_threshold(opt_errors, rule)
        self.device_thresholds_ = {}
        self.feature_set_ = "nbaiot"
        self.window_ = 1
        self.training_ = {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr}
        self.training_.update({"optimizer": config.optimizer, "scaler": self.scaler, "seed": self.seed})
        self.dataset_ = {"train_rows": int(stats.count)}
        return self

    @classmethod
    def from_parts(
        cls,
        model: Autoencoder | Weights,
        scaler: Scaler,
        threshold: float,
        *,
        feature_names: Sequence[str] | None = None,
        config: AutoencoderConfig | None = None,
        threshold_rule: ThresholdRule | None = None,
        device_thresholds: Mapping[str, float] | None = None,
        feature_set: str = "nbaiot",
        window: int = 1,
        training: Mapping[str, Any] | None = None,
        dataset: Mapping[str, Any] | None = None,
    ) -> AnomalyDetector:
        """Assemble a fitted detector from a (global) model, a (federated) scaler and threshold.

        Parameters
        ----------
        model : Autoencoder or list of ndarray
            A module (copied) or its weights as returned by ``fediot.models.get_weights``.
        scaler : MinMaxScaler or StandardScaler
        threshold : float
        feature_names : sequence of str, optional
        config : AutoencoderConfig, optional
            Required when ``model`` is a list of weights; defaults to the module's own config.
        threshold_rule : ThresholdRule, optional
            The rule ``threshold`` came from (recorded only; default ``ThresholdRule()``).
        device_thresholds : mapping of str to float, optional
            Per-device (calibrated or local) thresholds by device MAC or client id.
        feature_set : str
            The feature set the rows come from (``nbaiot``: N-BaIoT's 115 columns).
        window : int
            Window size of the majority vote the detector is meant to be used with.
        training, dataset : mapping, optional
            The training configuration and the dataset fingerprint (recorded in the artefact).
        """
        if isinstance(model, Autoencoder):
            ae_config = model.config if config is None else config
            weights = get_weights(model)
        else:
            if config is None:
                raise ValueError("config is required when model is a list of weights")
            ae_config, weights = config, model
        if not math.isfinite(threshold):
            raise DataError(f"threshold must be finite, got {threshold!r}")
        if scaler.num_features != ae_config.num_features:
            raise DataError(f"scaler has {scaler.num_features} features, model {ae_config.num_features}")
        names = None if feature_names is None else tuple(feature_names)
        if names is not None and len(names) != ae_config.num_features:
            raise DataError(f"{len(names)} feature names for {ae_config.num_features} model inputs")
        rule = threshold_rule if threshold_rule is not None else ThresholdRule()
        kind: Literal["minmax", "standard"] = "minmax" if isinstance(scaler, MinMaxScaler) else "standard"
        det = cls(scaler=kind, threshold_rule=rule, ratios=ae_config.ratios)
        module = Autoencoder(ae_config)
        set_weights(module, weights)
        module.eval()
        det.module_ = module
        det.scaler_ = copy.deepcopy(scaler)
        det.threshold_ = float(threshold)
        det.threshold_rule_ = rule
        det.feature_names_in_ = names
        det.n_features_in_ = ae_config.num_features
        det.train_loss_ = float("nan")
        det.device_thresholds_ = {str(k): float(v) for k, v in (device_thresholds or {}).items()}
        det.feature_set_ = feature_set
        det.window_ = int(window)
        det.training_ = dict(training or {})
        det.dataset_ = dict(dataset or {})
        return det

    # ------------------------------------------------------------------ scoring

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise RuntimeError("this AnomalyDetector is not fitted: call fit() or build it with from_parts()")

    def _errors(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._scorer().score(x)

    def scorer(self) -> AutoencoderScorer:
        """Return the :class:`~fediot.models.scoring.AutoencoderScorer` of the fitted scaler and module.

        Built on first use and kept; rebuilt when ``module_`` or ``scaler_`` is replaced or the module's
        parameters change in place (torch's version counters). Not thread-safe (see the scorer).
        """
        self._check_fitted()
        return self._scorer()

    def _scorer(self) -> AutoencoderScorer:
        module, scaler = self.module_, self.scaler_
        cached = self.__dict__.get("_scorer_cache")
        if (
            cached is not None
            and cached[0] is module
            and cached[1] is scaler
            and cached[3] == [p._version for p in cached[2]]
        ):
            scorer: AutoencoderScorer = cached[4]
            return scorer
        params = list(module.parameters())
        versions = [p._version for p in params]
        shift = scaler.min_ if isinstance(scaler, MinMaxScaler) else scaler.mean_
        scorer = AutoencoderScorer(module, shift=shift, scale=scaler.scale_, log=scaler.log, row_exact=True)
        self.__dict__["_scorer_cache"] = (module, scaler, params, versions, scorer)
        return scorer

    def __getstate__(self) -> dict[str, Any]:
        # the scorer (buffers, maybe an ONNX Runtime session) is a cache: never copied or pickled
        return {k: v for k, v in self.__dict__.items() if k != "_scorer_cache"}

    def anomaly_score(self, x: ArrayLike) -> NDArray[np.float64]:
        """Return the per-row reconstruction MSE of the scaled rows; higher = more anomalous.

        Scaling, network and error run in the detector's :meth:`scorer` (float32, preallocated buffers);
        the scaled rows equal ``scaler_.transform(x)`` bit for bit. ``x`` holds raw rows, shape (n_samples,
        n_features); a DataFrame's columns must equal ``feature_names_in_``. Otherwise as
        :meth:`fediot.models.scoring.AutoencoderScorer.score` (float64 scores; DataError on a wrong width
        or NaN/inf, naming the row and column).
        """
        scorer = self.scorer()
        names = _column_names(x)
        if names is not None and self.feature_names_in_ is not None:
            _check_names(self.feature_names_in_, names, "x")
        scores = scorer.score(x)
        self._check_raw(x)
        return scores

    def _check_raw(self, x: ArrayLike) -> None:
        """Refuse rows that look already scaled: the detector applies its own scaler to raw rows.

        With a min-max scaler the detector knows every training row's minimum per feature. On the feature
        with the largest minimum (N-BaIoT: a packet-size feature, never below ~40 bytes), if that minimum
        is at least 10 and every row of ``x`` has it below a quarter of it, the rows cannot be raw rows of
        the kind it was trained on (scaled rows sit near [0, 1], a few units for traffic outside the
        training range): a :class:`DataError` instead of 100% alerts. One column, one reduction.
        """
        scaler = self.scaler_
        if not isinstance(scaler, MinMaxScaler):
            return
        mins = scaler.min_
        raw_mins = np.sign(mins) * np.expm1(np.abs(mins)) if scaler.log else mins
        j = int(np.argmax(raw_mins))
        if raw_mins[j] < 10.0:
            return
        column = np.asarray(x)[:, j]  # x passed the scorer's checks: 2-D, the model's width, finite
        limit = raw_mins[j] / 4
        if column.size and float(np.abs(column).max()) < limit:
            name = self.feature_names_in_[j] if self.feature_names_in_ is not None else str(j)
            raise DataError(
                f"x looks already scaled: below {limit:.4g} in every row, while every training row had "
                f">= {raw_mins[j]:.4g}; pass raw rows as `fediot extract` writes them (the detector "
                "applies its own scaler)",
                column=name,
            )

    def decision_function(self, x: ArrayLike) -> NDArray[np.float64]:
        """Return ``anomaly_score(x) - threshold_`` of shape (n_samples,); > 0 = anomalous."""
        return self.anomaly_score(x) - self.threshold_

    def predict(self, x: ArrayLike, *, window: int | None = None) -> NDArray[np.int8]:
        """Return 1 for anomalous rows (score > ``threshold_``), 0 otherwise.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            Raw rows, in time order when ``window`` is given.
        window : int, optional
            Apply N-BaIoT's majority vote over this many consecutive rows (see ``window_vote``).

        Returns
        -------
        ndarray of shape (n_samples,), int8
        """
        flags = self.anomaly_score(x) > self.threshold_
        if window is not None:
            flags = window_vote(flags, window)
        return flags.astype(np.int8)

    # ------------------------------------------------------------------ persistence (the only I/O here)

    def threshold_for(self, device: str | None) -> float:
        """Return ``device``'s calibrated threshold, or the global ``threshold_`` for an unknown device."""
        self._check_fitted()
        if device is None:
            return self.threshold_
        return float(self.device_thresholds_.get(device, self.threshold_))

    def to_artefact(self) -> DetectorArtefact:
        """Return everything :meth:`save` writes, as a :class:`~fediot.detect.artefact.DetectorArtefact`."""
        self._check_fitted()
        config = self.module_.config
        return DetectorArtefact(
            weights={
                k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.module_.state_dict().items()
            },
            num_features=config.num_features,
            ratios=tuple(config.ratios),
            scaler=self.scaler_.to_dict(),
            threshold=float(self.threshold_),
            threshold_rule=self.threshold_rule_.to_dict(),
            device_thresholds=dict(self.device_thresholds_),
            feature_set=self.feature_set_,
            feature_names=self.feature_names_in_,
            window=self.window_,
            training=dict(self.training_),
            dataset=dict(self.dataset_),
            train_loss=float(self.train_loss_),
            seed=int(self.seed),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted detector to one versioned file, atomically; return its path.

        The file (:mod:`fediot.detect.artefact`: ``.npz`` + JSON, no pickle) holds the autoencoder,
        scaler, thresholds (global and per device), feature set and names, window, training configuration
        and dataset fingerprint. A detector with non-finite parameters is refused, and nothing is written.
        """
        return save_artefact(Path(path), self.to_artefact())

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, feature_names: Sequence[str] | None = None
    ) -> AnomalyDetector:
        """Read a detector written by :meth:`save` (never unpickles anything).

        Parameters
        ----------
        path : str or PathLike
        feature_names : sequence of str, optional
            The columns the caller will score; checked against the saved names.

        Raises
        ------
        DataError
            If the file is missing, truncated, altered, not a detector artefact, of another format version,
            not finite, or its feature names differ from ``feature_names`` (names the first mismatch).
        """
        p = Path(path)
        art = load_artefact(p)
        if feature_names is not None:
            if art.feature_names is None:
                raise DataError("the detector was saved without feature names; cannot check them", path=p)
            _check_names(art.feature_names, tuple(feature_names), f"{p}")
        module = Autoencoder(AutoencoderConfig(num_features=art.num_features, ratios=art.ratios))
        try:
            module.load_state_dict({k: torch.from_numpy(v) for k, v in art.weights.items()})
            scaler = scaler_from_dict(art.scaler)
            rule = ThresholdRule.from_dict(art.threshold_rule)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise DataError(f"inconsistent detector artefact ({type(exc).__name__}: {exc})", path=p) from None
        recorded = {name: getattr(art, name) for name in _RECORDED}
        det = cls.from_parts(
            module, scaler, art.threshold, feature_names=art.feature_names, threshold_rule=rule, **recorded
        )
        det.seed = art.seed
        det.train_loss_ = art.train_loss
        return det
