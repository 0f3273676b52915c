"""The compiled per-row scoring kernel of :class:`fediot.models.scoring.AutoencoderScorer` (numba).

A module of its own so that importing the scorer (and everything that trains or scores with torch, such as
a gateway's ClientApp) does not import numba; the scorer loads it on its first call of at most
``small_rows`` rows.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

__all__ = ["score_rows"]

# tanh(x) = x * P(u) / Q(u), u = x**2 / 100, on |x| <= 10 (beyond, float32 tanh rounds to +-1); a rational
# fit (Sanathanan-Koerner iterations, our own) with max relative error 4.3e-10 in float64: rounded to float32
# it equals the correctly rounded tanh or is 1 ulp off (0.12% of inputs), like libm's tanhf.
_TANH_P = (
    0.9999999999309017,
    14.068995894768673,
    43.85736965020057,
    41.242348570978955,
    10.5321609504195,
    0.331655139503499,
)
_TANH_Q = (
    1.0,
    47.40232912990765,
    290.6016917289995,
    493.11248447674194,
    250.84757561709043,
    27.36122520028533,
)
@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"}, error_model="numpy")
def _tanh_inplace(v: Any, n: int) -> None:  # pragma: no cover - compiled
    p0, p1, p2, p3, p4, p5 = _TANH_P
    q1, q2, q3, q4, q5 = _TANH_Q[1], _TANH_Q[2], _TANH_Q[3], _TANH_Q[4], _TANH_Q[5]
    for j in range(n):
        z = np.float64(v[j])
        z = np.float64(min(max(z, -10.0), 10.0))
        u = z * z * 0.01
        num = ((((p5 * u + p4) * u + p3) * u + p2) * u + p1) * u + p0
        den = ((((q5 * u + q4) * u + q3) * u + q2) * u + q1) * u + 1.0
        v[j] = np.float32(z * num / den)


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"}, error_model="numpy")
def score_rows(
    x: Any, shift: Any, scale: Any, log: bool, params: Any, dims: Any, work: Any, out: Any
) -> None:  # pragma: no cover - compiled; tested through AutoencoderScorer
    """Score each row of ``x`` into ``out`` (float64): scale, every layer, mean squared error.

    ``dims[l] = (in_padded, out_padded, weight offset, bias offset, tanh)``; the weights are stored
    transposed, ``(in_padded, out_padded)``, zero-padded, so every inner loop is whole vectors.
    """
    n, f = x.shape
    xs = work[0]
    for r in range(n):
        for k in range(f):
            v = np.float64(x[r, k])
            if log:
                a = math.log1p(abs(v))
                v = np.float64(a if v > 0.0 else (-a if v < 0.0 else v))
            xs[k] = np.float32((v - shift[k]) / scale[k])
        src = xs
        dst = work[1]
        spare = work[2]
        for layer in range(dims.shape[0]):
            din = dims[layer, 0]
            dout = dims[layer, 1]
            w = params[dims[layer, 2] : dims[layer, 2] + din * dout]
            b = params[dims[layer, 3] : dims[layer, 3] + dout]
            for j in range(dout):
                dst[j] = b[j]
            for i in range(din):
                hi = src[i]
                wi = w[i * dout : (i + 1) * dout]
                for j in range(dout):
                    dst[j] += wi[j] * hi
            if dims[layer, 4]:
                _tanh_inplace(dst, dout)
            if layer == 0:
                src = dst
                dst = spare
            else:
                src, dst = dst, src
        acc = np.float64(0.0)
        for k in range(f):
            d = src[k] - xs[k]
            acc += np.float64(d * d)
        out[r] = acc / f
