"""Feature scalers built from federatable per-feature sufficient statistics (never from pooled rows)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fediot.errors import ConfigError, DataError

__all__ = [
    "SCALER_KINDS",
    "MinMaxScaler",
    "Scaler",
    "StandardScaler",
    "SufficientStats",
    "check_finite",
    "make_scaler",
    "scaler_from_dict",
    "scaler_inputs",
    "signed_log1p",
]


def check_finite(a: NDArray[np.float64]) -> None:
    """Raise :class:`DataError` naming the first column (0-based index) of ``a`` that holds NaN or inf.

    Parameters
    ----------
    a : ndarray of shape (n_samples, n_features)
    """
    finite = np.isfinite(a)
    if not finite.all():
        col = int(np.argmax(~finite.all(axis=0)))
        row = int(np.argmax(~finite[:, col]))
        raise DataError(f"non-finite value {a[row, col]!r} at row {row} (column index {col})", column=col)


@dataclass(frozen=True, slots=True)
class SufficientStats:
    """Per-feature count, mean, sum of squared deviations (M2), min and max; mergeable across clients.

    Each client computes these on its own rows (:meth:`from_array`); the server merges them
    (:meth:`merge` or ``+``) and fits a scaler or a threshold from the result, which equals the pooled
    computation up to rounding. Merging uses Chan et al.'s parallel update of ``(count, mean, M2)``, which
    is numerically stable (no catastrophic cancellation of ``sum_sq - sum**2 / n``); ``sum`` and ``sum_sq``
    are exposed as derived values. Everything is float64.

    Attributes
    ----------
    count : int
        Number of rows.
    mean, m2, min, max : ndarray of shape (n_features,)
        Per-feature mean, sum of squared deviations from the mean, minimum and maximum. With zero rows:
        mean = m2 = 0, min = +inf, max = -inf (the identity of :meth:`merge`).

    Examples
    --------
    >>> import numpy as np
    >>> a = SufficientStats.from_array(np.array([[1.0], [2.0]]))
    >>> b = SufficientStats.from_array(np.array([[3.0], [6.0]]))
    >>> m = a + b
    >>> m.count, m.mean.tolist(), m.var().tolist(), m.max.tolist(), m.sum.tolist()
    (4, [3.0], [3.5], [6.0], [12.0])
    """

    count: int
    mean: NDArray[np.float64]
    m2: NDArray[np.float64]
    min: NDArray[np.float64]
    max: NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.count < 0:
            raise DataError(f"count must be >= 0, got {self.count}")
        shapes = {name: np.shape(getattr(self, name)) for name in ("mean", "m2", "min", "max")}
        if len(set(shapes.values())) != 1 or len(shapes["mean"]) != 1:
            raise DataError(f"mean, m2, min and max must be 1-D of one length, got shapes {shapes}")

    @classmethod
    def empty(cls, num_features: int) -> SufficientStats:
        """Return the statistics of zero rows (the identity of :meth:`merge`)."""
        zeros = np.zeros(num_features)
        return cls(0, zeros, zeros.copy(), np.full(num_features, np.inf), np.full(num_features, -np.inf))

    @classmethod
    def from_array(cls, x: ArrayLike) -> SufficientStats:
        """Compute the statistics of ``x`` of shape (n_samples, n_features).

        Raises
        ------
        DataError
            If ``x`` is not 2-D or holds NaN/inf (names the first bad column index).
        """
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2:
            raise DataError(f"expected a 2-D array (n_samples, n_features), got shape {a.shape}")
        check_finite(a)
        n = a.shape[0]
        if n == 0:
            return cls.empty(a.shape[1])
        mean = a.mean(axis=0)
        return cls(n, mean, ((a - mean) ** 2).sum(axis=0), a.min(axis=0), a.max(axis=0))

    @property
    def num_features(self) -> int:
        """Number of features."""
        return int(self.mean.shape[0])

    @property
    def sum(self) -> NDArray[np.float64]:
        """Per-feature sum, shape (n_features,)."""
        return self.mean * self.count

    @property
    def sum_sq(self) -> NDArray[np.float64]:
        """Per-feature sum of squares, shape (n_features,)."""
        return self.m2 + self.count * self.mean**2

    def merge(self, other: SufficientStats) -> SufficientStats:
        """Return the statistics of both row sets together (exact up to rounding, order-independent)."""
        if other.num_features != self.num_features:
            raise DataError(
                f"cannot merge statistics of {self.num_features} and {other.num_features} features"
            )
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return SufficientStats(n, mean, m2, np.minimum(self.min, other.min), np.maximum(self.max, other.max))

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return self.merge(other)

    def var(self, ddof: int = 0) -> NDArray[np.float64]:
        """Per-feature variance, shape (n_features,) (``ddof=0``: population, ``ddof=1``: sample).

        NaN where ``count - ddof <= 0``.
        """
        if self.count - ddof <= 0:
            return np.full(self.num_features, np.nan)
        return self.m2 / (self.count - ddof)

    def to_dict(self) -> dict[str, Any]:
        """Return plain float64 arrays and an int count: what crosses the network."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SufficientStats:
        """Inverse of :meth:`to_dict`; also accepts ``sum``/``sum_sq`` in place of ``mean``/``m2``.

        Raises
        ------
        DataError
            If a key is missing or the arrays disagree in shape.
        """
        try:
            count = int(d["count"])
            arr = {k: np.asarray(d[k], dtype=np.float64).reshape(-1) for k in ("min", "max")}
            if "mean" in d:
                mean = np.asarray(d["mean"], dtype=np.float64).reshape(-1)
                m2 = np.asarray(d["m2"], dtype=np.float64).reshape(-1)
            else:
                total = np.asarray(d["sum"], dtype=np.float64).reshape(-1)
                mean = total / count if count else np.zeros_like(total)
                sq = np.asarray(d["sum_sq"], dtype=np.float64).reshape(-1)
                m2 = np.maximum(sq - count * mean**2, 0.0)
        except KeyError as exc:
            raise DataError(f"sufficient statistics lack the key {exc.args[0]!r}") from None
        return cls(count, mean, m2, arr["min"], arr["max"])


CONSTANT_RTOL = 1e-9
"""A feature whose span (or std) is below ``CONSTANT_RTOL * max(1, |min|, |max|)`` counts as constant and gets
scale 1: dividing by a rounding-noise span (e.g. 1e-12) would blow benign test rows up to 1e12."""


def _negligible(spread: NDArray[np.float64], stats: SufficientStats) -> NDArray[np.bool_]:
    magnitude = np.maximum(1.0, np.maximum(np.abs(stats.min), np.abs(stats.max)))
    return np.asarray(~(spread > CONSTANT_RTOL * magnitude))


def _check_input(x: ArrayLike, num_features: int) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != num_features:
        raise DataError(f"expected shape (n_samples, {num_features}), got {a.shape}")
    check_finite(a)
    return a


def _arrays_from_dict(d: Mapping[str, Any], kind: str, names: tuple[str, str]) -> list[NDArray[np.float64]]:
    if d.get("kind") != kind:
        raise DataError(f"expected a {kind!r} scaler, got kind {d.get('kind')!r}")
    try:
        out = [np.asarray(d[n], dtype=np.float64).reshape(-1) for n in names]
    except KeyError as exc:
        raise DataError(f"{kind} scaler lacks the key {exc.args[0]!r}") from None
    if out[0].shape != out[1].shape:
        raise DataError(f"{kind} scaler arrays differ in shape: {out[0].shape} vs {out[1].shape}")
    return out


class _AffineScaler:
    """What both scalers share: ``(a - offset) / scale_``, ``a = x`` (``signed_log1p(x)`` when ``log``)."""

    kind: ClassVar[str]
    offset_key: ClassVar[str]
    """Name of the offset in :meth:`to_dict` (``min`` or ``mean``); the attribute is that name + ``_``."""
    scale_: NDArray[np.float64]
    log: bool

    @property
    def offset(self) -> NDArray[np.float64]:
        """The per-feature offset, shape (n_features,)."""
        value: NDArray[np.float64] = getattr(self, f"{self.offset_key}_")
        return value

    @property
    def num_features(self) -> int:
        """Number of features."""
        return int(self.scale_.shape[0])

    def transform(self, x: ArrayLike) -> NDArray[np.float32]:
        """Scale ``x`` of shape (n_samples, n_features); compute in float64, return float32.

        Raises
        ------
        DataError
            On a wrong width, or NaN/inf in ``x`` (names the column index).
        """
        a = _check_input(x, self.num_features)
        if self.log:
            a = signed_log1p(a)
        return ((a - self.offset) / self.scale_).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind": ..., "min" or "mean": ..., "scale": ..., "log": ...}`` (float64 arrays)."""
        return {"kind": self.kind, self.offset_key: self.offset, "scale": self.scale_, "log": self.log}

    @classmethod
    def _fit(
        cls, stats: SufficientStats, offset: NDArray[np.float64], spread: NDArray[np.float64], log: bool
    ) -> Self:
        """Build from an offset and a spread (span or std); a negligible spread becomes scale 1."""
        if stats.count == 0:
            raise DataError("cannot fit a scaler on zero rows")
        return cls(offset.copy(), np.where(_negligible(spread, stats), 1.0, spread), log)  # type: ignore[call-arg]

    @classmethod
    def from_stats(cls, stats: SufficientStats, *, log: bool = False) -> Self:
        """Fit from (federated) sufficient statistics (of ``signed_log1p(x)`` rows when ``log``)."""
        raise NotImplementedError

    @classmethod
    def from_array(cls, x: ArrayLike) -> Self:
        """Fit on the rows of ``x`` of shape (n_samples, n_features) (one client, or the pooled data)."""
        return cls.from_stats(SufficientStats.from_array(x))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        offset, scale = _arrays_from_dict(d, cls.kind, (cls.offset_key, "scale"))
        return cls(offset, scale, bool(d.get("log", False)))  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class MinMaxScaler(_AffineScaler):
    """``(x - min) / (max - min)`` per feature; a constant feature gets scale 1 (shift only).

    Rows outside the training range map outside [0, 1] (that is how attacks stand out). Matches
    ``sklearn.preprocessing.MinMaxScaler()`` fitted on the same (pooled) rows.

    Attributes
    ----------
    min_ : ndarray of shape (n_features,)
    scale_ : ndarray of shape (n_features,)
        ``max - min``, or 1 for a constant feature.

    Examples
    --------
    >>> import numpy as np
    >>> s = MinMaxScaler.from_stats(SufficientStats.from_array(np.array([[0.0, 5.0], [2.0, 5.0]])))
    >>> s.transform(np.array([[1.0, 5.0], [4.0, 6.0]])).tolist()
    [[0.5, 0.0], [2.0, 1.0]]
    """

    kind: ClassVar[str] = "minmax"
    offset_key: ClassVar[str] = "min"
    min_: NDArray[np.float64]
    scale_: NDArray[np.float64]
    log: bool = False

    @classmethod
    def from_stats(cls, stats: SufficientStats, *, log: bool = False) -> MinMaxScaler:
        """Fit from (federated) sufficient statistics (of ``signed_log1p(x)`` rows when ``log``)."""
        return cls._fit(stats, stats.min, stats.max - stats.min, log)


@dataclass(frozen=True, slots=True)
class StandardScaler(_AffineScaler):
    """``(x - mean) / std`` per feature, population std (ddof=0); a constant feature gets scale 1.

    A feature is constant when its std is negligible next to its magnitude (see ``CONSTANT_RTOL``).
    Matches ``sklearn.preprocessing.StandardScaler()`` fitted on the same (pooled) rows.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    scale_ : ndarray of shape (n_features,)
        Population std, or 1 for a constant feature.
    """

    kind: ClassVar[str] = "standard"
    offset_key: ClassVar[str] = "mean"
    mean_: NDArray[np.float64]
    scale_: NDArray[np.float64]
    log: bool = False

    @classmethod
    def from_stats(cls, stats: SufficientStats, *, log: bool = False) -> StandardScaler:
        """Fit from (federated) sufficient statistics (of ``signed_log1p(x)`` rows when ``log``)."""
        return cls._fit(stats, stats.mean, np.sqrt(stats.var(ddof=0)), log)


Scaler = MinMaxScaler | StandardScaler
"""Either fitted scaler."""


def scaler_from_dict(d: Mapping[str, Any]) -> Scaler:
    """Rebuild a scaler from its :meth:`~MinMaxScaler.to_dict` form, dispatching on ``d["kind"]``."""
    if d.get("kind") == MinMaxScaler.kind:
        return MinMaxScaler.from_dict(d)
    if d.get("kind") == StandardScaler.kind:
        return StandardScaler.from_dict(d)
    raise DataError(f"unknown scaler kind {d.get('kind')!r} (expected 'minmax' or 'standard')")


SCALER_KINDS = ("minmax", "standard", "log-minmax", "log-standard")
"""Scaler names accepted by :func:`make_scaler`; ``log-*`` first compress every value with
:func:`signed_log1p` (heavy-tailed traffic statistics span many orders of magnitude)."""


def signed_log1p(x: ArrayLike) -> NDArray[np.float64]:
    """Return ``sign(x) * log1p(|x|)``: monotone, odd, identity-like near 0, logarithmic for large values.

    Examples
    --------
    >>> signed_log1p([-(np.e - 1), 0.0, np.e**2 - 1]).round(6).tolist()
    [-1.0, 0.0, 2.0]
    """
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.log1p(np.abs(a))


def scaler_inputs(kind: str, x: ArrayLike) -> NDArray[np.float64]:
    """Return the rows a ``kind`` scaler computes its sufficient statistics on (log-compressed for log-*)."""
    if kind not in SCALER_KINDS:
        raise ConfigError(f"unknown scaler {kind!r}; expected one of {', '.join(SCALER_KINDS)}")
    a = np.asarray(x, dtype=np.float64)
    return signed_log1p(a) if kind.startswith("log-") else a


def make_scaler(kind: str, stats: SufficientStats) -> Scaler:
    """Fit a ``kind`` scaler (see :data:`SCALER_KINDS`) from statistics of :func:`scaler_inputs` rows."""
    if kind not in SCALER_KINDS:
        raise ConfigError(f"unknown scaler {kind!r}; expected one of {', '.join(SCALER_KINDS)}")
    log = kind.startswith("log-")
    if kind.endswith("minmax"):
        return MinMaxScaler.from_stats(stats, log=log)
    return StandardScaler.from_stats(stats, log=log)
