"""The fast scorer against today's plain PyTorch path, on the shipped real N-BaIoT rows, every scaler kind."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fediot.data.scaling import SCALER_KINDS, SufficientStats, make_scaler, scaler_inputs
from fediot.detect import AnomalyDetector
from fediot.errors import ConfigError, DataError
from fediot.models import (
    Autoencoder,
    AutoencoderConfig,
    AutoencoderScorer,
    TrainConfig,
    init_module,
    reconstruction_errors,
    train_autoencoder,
)
from fediot.models.scoring import onnxruntime_available

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples"
BACKENDS = ["torch", pytest.param("onnxruntime", marks=pytest.mark.skipif(
    not onnxruntime_available(), reason="needs the onnx extra"))]  # fmt: skip
# |new - old| <= RTOL * |old| (relative 1e-6): float32 matrix products in another order (kernel,
# blocking) differ in the last bits; the scaled inputs are bit-identical.
ATOL, RTOL = 0.0, 1e-6


@torch.no_grad()
def old_reconstruction_errors(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """fediot's reconstruction_errors before the scorer (the reference)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = np.empty(t.shape[0], dtype=np.float64)
    for i in range(0, t.shape[0], 65536):
        chunk = t[i : i + 65536]
        out[i : i + chunk.shape[0]] = ((module(chunk) - chunk) ** 2).mean(dim=1).double().numpy()
    return out


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    """(benign rows, all rows: benign + attacks) of the shipped N-BaIoT samples, float64."""
    frames = {p.name: pd.read_csv(p) for p in sorted(SAMPLES.glob("*.csv.gz"))}
    benign = frames["benign_traffic.csv.gz"].to_numpy(np.float64)
    everything = np.concatenate([f.to_numpy(np.float64) for f in frames.values()])
    return benign, everything


@pytest.fixture(scope="module", params=SCALER_KINDS)
def fitted(request: pytest.FixtureRequest, rows: tuple[np.ndarray, np.ndarray]) -> AnomalyDetector:
    """A detector with a briefly trained autoencoder (errors of benign rows are small: the hard case)."""
    benign, _ = rows
    kind = request.param
    scaler = make_scaler(kind, SufficientStats.from_array(scaler_inputs(kind, benign)))
    module = init_module(Autoencoder(AutoencoderConfig(benign.shape[1])), 0)
    train_autoencoder(
        module, scaler.transform(benign), TrainConfig(epochs=3, lr=1e-3, optimizer="adam"), seed=0
    )
    return AnomalyDetector.from_parts(module, scaler, threshold=0.01)


def _close(new: np.ndarray, old: np.ndarray) -> None:
    assert new.dtype == np.float64
    assert new.shape == old.shape
    np.testing.assert_allclose(new, old, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 3, 16, 17, 1000, 2500])
def test_scorer_equals_old_path(fitted: AnomalyDetector, rows: tuple, backend: str, n: int) -> None:
    # Prepare: real rows tiled to n (2500 > block_rows: several blocks)
    _, everything = rows
    x = np.resize(everything, (n, everything.shape[1]))
    det = fitted
    s = det.scaler_
    shift = s.min_ if hasattr(s, "min_") else s.mean_
    # Execute
    scorer = AutoencoderScorer(det.module_, shift=shift, scale=s.scale_, log=s.log, backend=backend)
    new64 = scorer.score(x)
    new32 = scorer.score(x.astype(np.float32))
    old = old_reconstruction_errors(det.module_, s.transform(x))
    # Assert
    _close(new64, old)
    _close(new32, old_reconstruction_errors(det.module_, s.transform(x.astype(np.float32))))
    assert (new64 > 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_unscaled_scorer_and_reconstruction_errors(
    fitted: AnomalyDetector, rows: tuple, backend: str
) -> None:
    _, everything = rows
    xs = fitted.scaler_.transform(everything)
    old = old_reconstruction_errors(fitted.module_, xs)
    _close(AutoencoderScorer(fitted.module_, backend=backend).score(xs), old)
    _close(reconstruction_errors(fitted.module_, xs), old)
    _close(reconstruction_errors(fitted.module_, xs[:1]), old[:1])


def test_detector_scores_predict_and_decision(fitted: AnomalyDetector, rows: tuple) -> None:
    _, everything = rows
    old = old_reconstruction_errors(fitted.module_, fitted.scaler_.transform(everything))
    _close(fitted.anomaly_score(everything), old)
    np.testing.assert_array_equal(
        fitted.decision_function(everything), fitted.anomaly_score(everything) - fitted.threshold_
    )
    np.testing.assert_array_equal(
        fitted.predict(everything[:1]), (old[:1] > fitted.threshold_).astype(np.int8)
    )


def test_scaled_block_is_bit_identical_to_transform(fitted: AnomalyDetector, rows: tuple) -> None:
    _, everything = rows
    s = fitted.scaler_
    shift = s.min_ if hasattr(s, "min_") else s.mean_
    scorer = AutoencoderScorer(fitted.module_, shift=shift, scale=s.scale_, log=s.log, backend="torch")
    scorer._buffers(everything.shape[0])
    np.testing.assert_array_equal(scorer._scaled_block(everything), s.transform(everything))


def test_detector_rebuilds_its_scorer_when_weights_change(fitted: AnomalyDetector, rows: tuple) -> None:
    _, everything = rows
    det = pickle.loads(pickle.dumps(fitted))  # the cached scorer is not pickled
    before = det.anomaly_score(everything[:20])
    with torch.no_grad():
        det.module_.decoder[-1].bias.add_(0.5)
    after = det.anomaly_score(everything[:20])
    _close(after, old_reconstruction_errors(det.module_, det.scaler_.transform(everything[:20])))
    assert not np.allclose(before, after)


def test_bad_input_fails_closed(fitted: AnomalyDetector, rows: tuple) -> None:
    _, everything = rows
    scorer = fitted.scorer()
    bad = everything[:40].copy()
    bad[7, 3] = np.nan
    with pytest.raises(DataError, match=r"row 7 \(column index 3\)"):
        scorer.score(bad)
    with pytest.raises(DataError, match=r"row 0 \(column index 3\)"):
        scorer.score(bad[7:8])
    with pytest.raises(DataError, match=r"expected shape \(n_samples, 115\)"):
        scorer.score(everything[:, :10])
    with pytest.raises(DataError, match="float64 array of shape"):
        scorer.score(everything[:3], out=np.empty(2))
    with pytest.raises(ConfigError, match="backend"):
        AutoencoderScorer(fitted.module_, backend="tvm")  # type: ignore[arg-type]
    assert scorer.score(everything[:0]).shape == (0,)


def test_out_buffer_is_filled_in_place(fitted: AnomalyDetector, rows: tuple) -> None:
    _, everything = rows
    out = np.empty(everything.shape[0])
    got = fitted.scorer().score(everything, out=out)
    assert got is out
    _close(out, fitted.anomaly_score(everything))
