"""N-BaIoT's window majority vote over consecutive predictions."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["window_vote"]


def window_vote(flags: ArrayLike, ws: int) -> NDArray[np.bool_]:
    """Alert on row ``i`` when more than half of the last ``ws`` predictions (``i-ws+1..i``) are anomalous.

    The first ``ws - 1`` rows vote over the rows seen so far (a shorter window); a tie (exactly half) is
    not an alert. ``ws = 1`` returns the flags unchanged.

    Parameters
    ----------
    flags : array-like of shape (n_samples,)
        Per-row predictions (truthy = anomalous), in time order.
    ws : int
        Window size, >= 1.

    Examples
    --------
    >>> window_vote([1, 0, 1, 1, 0, 0], 3).astype(int).tolist()
    [1, 0, 1, 1, 1, 0]
    """
    if ws < 1:
        raise ValueError(f"ws must be >= 1, got {ws}")
    f = np.asarray(flags).astype(bool)
    if ws == 1 or f.size == 0:
        return f.copy()
    csum = np.concatenate([[0], np.cumsum(f, dtype=np.int64)])
    idx = np.arange(1, f.size + 1)
    start = np.maximum(idx - ws, 0)
    votes = csum[idx] - csum[start]
    length = idx - start
    return np.asarray(2 * votes > length)
