"""ONNX export of a detector: raw feature rows in, anomaly scores out, the scaler folded into the graph.

The graph (opset 17) takes ``features``, float64 of shape (n, n_features) — the raw rows the extractor
produces — and returns ``score``, float64 of shape (n,): higher = more anomalous, the same value as
``AnomalyDetector.anomaly_score``. Inside: the scaler in float64 as graph ops (the log scaler's
``sign(x) * log(1 + |x|)``, then ``(x - shift) / scale``), a cast to float32, the autoencoder's
``Gemm``/``Tanh`` layers, and the mean squared reconstruction error cast back to float64 — the steps and
dtypes of the PyTorch path. The graph's metadata records the global threshold, the per-device thresholds,
the window and the feature names as JSON strings.

Needs the ``onnx`` extra (``pip install 'fediot[onnx]'``: onnx + onnxruntime).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fediot.data.scaling import MinMaxScaler
from fediot.detect.detector import AnomalyDetector
from fediot.errors import FediotError
from fediot.fileio import atomic_write

__all__ = ["ONNX_EXTRA", "OPSET", "export_onnx", "onnx_model"]

OPSET = 17
ONNX_EXTRA = "ONNX export needs onnx; install it with: pip install 'fediot[onnx]'"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise FediotError(ONNX_EXTRA) from None
    return onnx


def onnx_model(detector: AnomalyDetector) -> Any:
    """Return the detector as an ``onnx.ModelProto`` (see the module docstring for its graph).

    Parameters
    ----------
    detector : AnomalyDetector
        A fitted detector.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    scaler = detector.scaler_
    shift = scaler.min_ if isinstance(scaler, MinMaxScaler) else scaler.mean_
    inits = [
        numpy_helper.from_array(np.asarray(shift, dtype=np.float64), "scaler_shift"),
        numpy_helper.from_array(np.asarray(scaler.scale_, dtype=np.float64), "scaler_scale"),
    ]
    nodes = []
    x = "features"
    if scaler.log:
        inits.append(numpy_helper.from_array(np.array(1.0, dtype=np.float64), "one"))
        nodes += [
            helper.make_node("Sign", [x], ["log_sign"]),
            helper.make_node("Abs", [x], ["log_abs"]),
            helper.make_node("Add", ["log_abs", "one"], ["log_abs1"]),
            helper.make_node("Log", ["log_abs1"], ["log_mag"]),
            helper.make_node("Mul", ["log_sign", "log_mag"], ["log_x"]),
        ]
        x = "log_x"
    nodes += [
        helper.make_node("Sub", [x, "scaler_shift"], ["shifted"]),
        helper.make_node("Div", ["shifted", "scaler_scale"], ["scaled64"]),
        helper.make_node("Cast", ["scaled64"], ["scaled"], to=TensorProto.FLOAT),
    ]
    layers = [*detector.module_.encoder, *detector.module_.decoder]
    h = "scaled"
    for i, layer in enumerate(layers):
        out = f"h{i}"
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().cpu().numpy().astype(np.float32)
            b = layer.bias.detach().cpu().numpy().astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [out], transB=1))
        else:
            nodes.append(helper.make_node("Tanh", [h], [out]))
        h = out
    nodes += [
        helper.make_node("Sub", [h, "scaled"], ["residual"]),
        helper.make_node("Mul", ["residual", "residual"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["mse"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["mse"], ["score"], to=TensorProto.DOUBLE),
    ]
    n = detector.n_features_in_
    graph = helper.make_graph(
        nodes,
        "fediot_detector",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["n", n])],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["n"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fediot")
    model.ir_version = 8
    meta = {
        "threshold": json.dumps(detector.threshold_),
        "device_thresholds": json.dumps(detector.device_thresholds_, sort_keys=True),
        "window": json.dumps(detector.window_),
        "feature_set": detector.feature_set_,
        "feature_names": json.dumps(list(detector.feature_names_in_ or ())),
        "score": "reconstruction MSE of the scaled row; higher = more anomalous; anomalous above threshold",
    }
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def export_onnx(detector: AnomalyDetector, path: str | Path) -> Path:
    """Write ``detector`` as an ONNX model to ``path``, atomically; return the path."""
    model = onnx_model(detector)
    data = model.SerializeToString()

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(Path(path), write)
