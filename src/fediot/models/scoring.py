"""Fast reconstruction-error scoring of a trained :class:`~fediot.models.Autoencoder` (float32, no autograd).

:class:`AutoencoderScorer` snapshots an autoencoder's weights (and, optionally, an affine input scaler with
an optional signed ``log1p``) and scores rows with preallocated float32 buffers:

- one to ``small_rows`` rows per call: one compiled numba kernel does scaling, all layers and the error
  per row (no Python per layer, no allocation but the result);
- larger calls: blocks of ``block_rows`` rows (intermediates stay in the L2 cache); the input scaling runs
  in NumPy into a preallocated float32 block, then the layers run either as in-place PyTorch ops
  (``addmm`` into preallocated outputs, in-place ``tanh``) or, with ``backend="onnxruntime"`` (the ``onnx``
  extra), in one ONNX Runtime session.

The scaled input equals today's ``scaler.transform(x)`` bit for bit (the affine step is computed in float64
per block, exactly as :class:`~fediot.data.scaling.MinMaxScaler` does, then rounded to float32); the
network and the error run in float32, and the per-row mean of squared errors is returned as float64. Scores
agree with the plain PyTorch path (``module(x)``) to float32 rounding of the matrix products.

A scorer is a snapshot: it does not see later changes of the module's weights (build a new one), and it is
not safe to call from several threads at once (its buffers are shared; build one per thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from fediot.errors import ConfigError, DataError

__all__ = ["BACKENDS", "AutoencoderScorer", "linear_layers", "onnxruntime_available"]

Backend = Literal["auto", "torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")
"""Backends of the block path (calls of more than ``small_rows`` rows); ``"auto"`` takes ONNX Runtime when
``onnx`` and ``onnxruntime`` are importable (measured faster, see BENCHMARKS.md), else torch."""


def onnxruntime_available() -> bool:
    """Return whether the ``onnx`` extra (``onnx`` and ``onnxruntime``) is importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def linear_layers(module: nn.Module) -> list[tuple[NDArray[np.float32], NDArray[np.float32], bool]]:
    """Return ``(weight (out, in), bias (out,), tanh_follows)`` for each ``nn.Linear`` of an autoencoder.

    Accepts the module layouts fediot builds: ``nn.Sequential`` chains (also nested, e.g. the
    :class:`~fediot.models.Autoencoder`'s encoder and decoder) of ``nn.Linear`` and ``nn.Tanh``.

    Raises
    ------
    ConfigError
        If the module holds any other layer, a Linear without bias, or two activations in a row.
    """
    layers: list[tuple[NDArray[np.float32], NDArray[np.float32], bool]] = []
    for m in module.modules():
        if isinstance(m, nn.Sequential) or m is module:
            continue
        if isinstance(m, nn.Linear):
            if m.bias is None:
                raise ConfigError("AutoencoderScorer needs every nn.Linear to have a bias")
            w = m.weight.detach().cpu().numpy().astype(np.float32, copy=True)
            b = m.bias.detach().cpu().numpy().astype(np.float32, copy=True)
            layers.append((w, b, False))
        elif isinstance(m, nn.Tanh):
            if not layers or layers[-1][2]:
                raise ConfigError("AutoencoderScorer: nn.Tanh must follow an nn.Linear")
            w, b, _ = layers[-1]
            layers[-1] = (w, b, True)
        else:
            raise ConfigError(
                f"AutoencoderScorer supports nn.Linear and nn.Tanh only, got {type(m).__name__}"
            )
    if not layers:
        raise ConfigError("AutoencoderScorer: the module has no nn.Linear layer")
    for (w0, _, _), (w1, _, _) in zip(layers[:-1], layers[1:], strict=True):
        if w0.shape[0] != w1.shape[1]:
            raise ConfigError(f"AutoencoderScorer: layer widths do not chain ({w0.shape} then {w1.shape})")
    if layers[0][0].shape[1] != layers[-1][0].shape[0]:
        raise ConfigError("AutoencoderScorer: the output width differs from the input width")
    return layers


_LANE = 16  # widths are padded to multiples of this (one AVX-512 vector of float32)


class AutoencoderScorer:
    """Per-row reconstruction MSE of an autoencoder, optionally after an affine (log) input scaler.

    ``score(x)`` returns ``mean((module(s(x)) - s(x)) ** 2, axis=1)``, where
    ``s(x) = (g(x) - shift) / scale`` in float64 rounded to float32 and ``g`` is ``sign(x) * log1p(|x|)``
    when ``log`` else the identity; without ``shift``/``scale``, ``s`` is the identity (``x`` is already
    scaled). Higher = more anomalous.

    Parameters
    ----------
    module : nn.Module
        An :class:`~fediot.models.Autoencoder` (or any chain of ``nn.Linear``/``nn.Tanh`` whose output width
        equals its input width). Its weights are copied (a snapshot).
    shift, scale : array-like of shape (n_features,), optional
        The scaler's affine parameters (e.g. ``MinMaxScaler.min_`` and ``.scale_``); both or neither.
    log : bool
        Apply ``signed_log1p`` before the affine step (the ``log-*`` scalers).
    backend : {"auto", "torch", "onnxruntime"}
        What runs the layers for calls of more than ``small_rows`` rows. ``"onnxruntime"`` needs the
        ``onnx`` extra (``pip install 'fediot[onnx]'``); ``"auto"`` uses it when installed, else torch.
        Both agree with the plain PyTorch path to float32 rounding. ``backend_`` holds the one in use.
    block_rows : int
        Rows per block of the block path (the buffers hold this many rows).
    small_rows : int
        Calls of at most this many rows use the compiled per-row kernel.
    row_exact : bool
        Score every row inside a full ``block_rows`` block (the last one zero-padded) and never use the
        per-row kernel, so a row's score is the same bit for bit however the rows are batched (what
        ``fediot detect`` needs to equal offline scoring). Costs up to one block per call, and uses the
        torch backend (ONNX Runtime's results were measured to vary with the batching, by up to 6e-5).

    Notes
    -----
    Threads: the torch backend uses torch's intra-op thread count (see
    :func:`fediot.models.threads.set_threads`);
    the ONNX Runtime session is created with that count; the per-row kernel runs on the calling thread.

    Examples
    --------
    >>> import numpy as np
    >>> from fediot.models import Autoencoder, AutoencoderConfig, init_module, reconstruction_errors
    >>> ae = init_module(Autoencoder(AutoencoderConfig(num_features=6)), 0)
    >>> x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    >>> scorer = AutoencoderScorer(ae)
    >>> bool(np.allclose(scorer.score(x), reconstruction_errors(ae, x), rtol=1e-5, atol=1e-7))
    True
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        shift: ArrayLike | None = None,
        scale: ArrayLike | None = None,
        log: bool = False,
        backend: Backend = "auto",
        block_rows: int = 1024,
        small_rows: int = 16,
        row_exact: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if block_rows < 1 or small_rows < 0:
            raise ConfigError(f"block_rows must be >= 1 and small_rows >= 0, got {block_rows}, {small_rows}")
        layers = linear_layers(module)
        f = int(layers[0][0].shape[1])
        self.num_features = f
        if row_exact and backend == "onnxruntime":
            raise ConfigError("row_exact scoring needs the torch backend (ONNX Runtime's sums vary by batch)")
        if backend == "auto":
            backend = "onnxruntime" if onnxruntime_available() and not row_exact else "torch"
        self.backend_ = backend
        self.block_rows = int(block_rows)
        self.row_exact = bool(row_exact)
        self.small_rows = 0 if self.row_exact else int(small_rows)
        self.log = bool(log)
        if (shift is None) != (scale is None):
            raise ConfigError("give both shift and scale, or neither")
        self.scaled = shift is not None
        self.shift = self._param(shift, 0.0, "shift")
        self.scale = self._param(scale, 1.0, "scale")
        if not (np.all(np.isfinite(self.scale)) and np.all(self.scale != 0.0)):
            raise DataError("scaler scale must be finite and non-zero in every feature")
        self.layers = layers

        # per-row kernel: weights transposed to (in, out), zero-padded to whole vectors, in one flat array
        def pad(k: int) -> int:
            return -(-k // _LANE) * _LANE

        dims = np.zeros((len(layers), 5), dtype=np.int64)
        chunks: list[NDArray[np.float32]] = []
        offset = 0
        for i, (w, b, act) in enumerate(layers):
            dout, din = w.shape
            wt = np.zeros((pad(din), pad(dout)), dtype=np.float32)
            wt[:din, :dout] = w.T
            bp = np.zeros(pad(dout), dtype=np.float32)
            bp[:dout] = b
            dims[i] = (pad(din), pad(dout), offset, offset + wt.size, int(act))
            chunks += [wt.reshape(-1), bp]
            offset += wt.size + bp.size
        self._params = np.concatenate(chunks)
        self._dims = dims
        self._work = np.zeros((3, pad(max(max(w.shape) for w, _, _ in layers))), dtype=np.float32)
        # block path: buffers are allocated on the first call of more than small_rows rows
        self._xs: NDArray[np.float32] | None = None
        self._tmp: NDArray[np.float64] | None = None
        self._sums: NDArray[np.float32] | None = None
        self._session: Any = None
        self._row_kernel: Any = None  # fediot.models.row_kernel.score_rows, loaded on first use (numba)
        self._tw: list[torch.Tensor] = []
        self._tb: list[torch.Tensor] = []
        self._tbufs: list[torch.Tensor] = []
        if backend == "onnxruntime":
            self._session = _onnx_session(layers)
        else:
            self._tw = [torch.from_numpy(np.ascontiguousarray(w.T)) for w, _, _ in layers]
            self._tb = [torch.from_numpy(b) for _, b, _ in layers]

    def _load_row_kernel(self) -> Any:
        """Import the compiled per-row kernel (numba) on the first call of at most ``small_rows`` rows."""
        from fediot.models.row_kernel import score_rows

        self._row_kernel = score_rows
        return score_rows

    def _buffers(self, rows: int) -> None:
        """Allocate the block buffers for ``rows`` rows (at most ``block_rows``), once."""
        if self._xs is not None and self._xs.shape[0] >= rows:
            return
        f = self.num_features
        self._xs = np.empty((rows, f), dtype=np.float32)
        self._tmp = np.empty((rows, f), dtype=np.float64) if self.scaled or self.log else None
        self._sums = np.empty(rows, dtype=np.float32)
        if self._session is None:
            self._tbufs = [torch.empty((rows, w.shape[0]), dtype=torch.float32) for w, _, _ in self.layers]

    def _param(self, value: ArrayLike | None, default: float, name: str) -> NDArray[np.float64]:
        if value is None:
            return np.full(self.num_features, default, dtype=np.float64)
        a = np.ascontiguousarray(value, dtype=np.float64).reshape(-1)
        if a.shape[0] != self.num_features:
            raise DataError(f"scaler {name} has {a.shape[0]} features, the model {self.num_features}")
        return a

    # ------------------------------------------------------------------ scoring

    def score(self, x: ArrayLike, *, out: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """Return the per-row reconstruction MSE of (the scaled) ``x``; higher = more anomalous.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            Rows, float32 or float64 (other dtypes are converted to float64); raw when the scorer holds a
            scaler, already scaled otherwise.
        out : ndarray of shape (n_samples,), float64, optional
            Where to write the scores (no allocation then).

        Returns
        -------
        ndarray of shape (n_samples,), float64

        Raises
        ------
        DataError
            On a wrong shape, or NaN/inf in ``x`` (names the row and column index).
        """
        a = np.asarray(x)
        if a.dtype != np.float32 and a.dtype != np.float64:
            a = a.astype(np.float64)
        if a.ndim != 2 or a.shape[1] != self.num_features:
            raise DataError(f"expected shape (n_samples, {self.num_features}), got {a.shape}")
        n = a.shape[0]
        if out is None:
            out = np.empty(n, dtype=np.float64)
        elif out.shape != (n,) or out.dtype != np.float64:
            raise DataError(f"out must be a float64 array of shape ({n},), got {out.dtype} {out.shape}")
        if n == 0:
            return out
        if n <= self.small_rows:
            score_rows = self._row_kernel or self._load_row_kernel()
            score_rows(
                np.ascontiguousarray(a), self.shift, self.scale, self.log, self._params, self._dims,
                self._work, out,
            )  # fmt: skip
        else:
            self._buffers(self.block_rows if self.row_exact else min(n, self.block_rows))
            for start in range(0, n, self.block_rows):
                stop = min(n, start + self.block_rows)
                self._score_block(a[start:stop], out[start:stop])
        if not np.isfinite(out).all():
            _check_finite(a)  # NaN/inf input: fail closed; a finite overflow keeps its inf score
        return out

    def _scaled_block(self, xb: NDArray[Any]) -> NDArray[np.float32]:
        """Return the scaled rows of ``xb`` (float64 arithmetic, as the scalers do), in a block buffer."""
        assert self._xs is not None
        if not (self.scaled or self.log) and xb.dtype == np.float32 and xb.flags.c_contiguous:
            return xb  # already scaled float32 rows: used in place
        xs = self._xs[: xb.shape[0]]
        if self._tmp is None:
            np.copyto(xs, xb, casting="same_kind")
            return xs
        tmp = self._tmp[: xb.shape[0]]
        if self.log:
            np.abs(xb, out=tmp)
            np.log1p(tmp, out=tmp)
            np.copysign(tmp, xb, out=tmp)
            np.subtract(tmp, self.shift, out=tmp)
        else:
            np.subtract(xb, self.shift, out=tmp)
        np.divide(tmp, self.scale, out=xs, casting="same_kind")
        return xs

    def _score_block(self, xb: NDArray[Any], out: NDArray[np.float64]) -> None:
        m = xb.shape[0]
        xs = self._scaled_block(xb)
        if self.row_exact and m < self.block_rows:
            # every block has the same shape, so a row's score never depends on how rows were batched
            assert self._xs is not None
            self._xs[:m] = xs
            self._xs[m:] = 0.0
            full = np.empty(self.block_rows, dtype=np.float64)
            self._run_layers(self._xs, full)
            out[:] = full[:m]
            return
        self._run_layers(xs, out)

    def _run_layers(self, xs: NDArray[np.float32], out: NDArray[np.float64]) -> None:
        m = xs.shape[0]
        if self._session is not None:
            sums = self._session.run(None, {"x": xs})[0]
            np.divide(sums, self.num_features, out=out)
            return
        assert self._sums is not None
        txs = torch.from_numpy(xs)
        h = txs
        for w, b, buf, (_, _, act) in zip(self._tw, self._tb, self._tbufs, self.layers, strict=True):
            o = buf[:m]
            torch.addmm(b, h, w, out=o)
            if act:
                torch.tanh_(o)
            h = o
        h.sub_(txs).square_()
        sums_t = torch.from_numpy(self._sums[:m])
        torch.sum(h, 1, out=sums_t)
        np.divide(self._sums[:m], self.num_features, out=out, casting="same_kind")


def _check_finite(a: NDArray[Any]) -> None:
    finite = np.isfinite(a)
    if not finite.all():
        col = int(np.argmax(~finite.all(axis=0)))
        row = int(np.argmax(~finite[:, col]))
        raise DataError(f"non-finite value {a[row, col]!r} at row {row} (column index {col})", column=col)


def _onnx_session(layers: Sequence[tuple[NDArray[np.float32], NDArray[np.float32], bool]]) -> Any:
    """Build an ONNX Runtime session computing the per-row sum of squared reconstruction errors."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError(
            "backend 'onnxruntime' needs onnx and onnxruntime: pip install 'fediot[onnx]'"
        ) from None
    nodes = []
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")]
    prev = "x"
    for i, (w, b, act) in enumerate(layers):
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"),
            numpy_helper.from_array(b, f"b{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"z{i}"]))
        prev = f"z{i}"
        if act:
            nodes.append(helper.make_node("Tanh", [prev], [f"h{i}"]))
            prev = f"h{i}"
    nodes += [
        helper.make_node("Sub", [prev, "x"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceSum", ["d2", "axis"], ["sums"], keepdims=0),
    ]
    f = int(layers[0][0].shape[1])
    graph = helper.make_graph(
        nodes,
        "fediot_autoencoder_errors",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", f])],
        [helper.make_tensor_value_info("sums", TensorProto.FLOAT, ["n"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
