"""AfterImage settings and the N-BaIoT feature names (115 columns for the five default lambdas)."""

from __future__ import annotations

from dataclasses import dataclass

from fediot.errors import ConfigError

__all__ = [
    "GROUP_WIDTHS",
    "NBAIOT_LAMBDAS",
    "AfterImageConfig",
    "feature_names",
]

NBAIOT_LAMBDAS: tuple[float, ...] = (5.0, 3.0, 1.0, 0.1, 0.01)
"""Decay rates of N-BaIoT/Kitsune: a weight halves after 1/lambda seconds (0.2 s ... 100 s)."""

_STATS_1D = ("weight", "mean", "variance")
_STATS_2D = ("weight", "mean", "std", "magnitude", "radius", "covariance", "pcc")
GROUP_WIDTHS: tuple[tuple[str, int], ...] = (("MI_dir", 3), ("H", 3), ("HH", 7), ("HH_jit", 3), ("HpHp", 7))
"""Feature groups in N-BaIoT column order, with the number of statistics per lambda."""


@dataclass(frozen=True, slots=True)
class AfterImageConfig:
    """Settings of the damped incremental statistics.

    Parameters
    ----------
    lambdas : tuple of float
        Decay rates (1/s); the statistic of a packet ``dt`` seconds old is weighted ``2 ** (-lambda * dt)``.
        The default gives the 115 N-BaIoT columns.
    purge_every : int
        Every this many packets, streams whose weight at the slowest lambda has decayed below
        ``purge_weight`` are dropped (0 disables purging).
    purge_weight : float
        Weight below which a stream counts as idle. With the defaults a stream that saw one packet is dropped
        after about log2(1 / 1e-6) / 0.01 = 1,993 s of silence.
    """

    lambdas: tuple[float, ...] = NBAIOT_LAMBDAS
    purge_every: int = 4096
    purge_weight: float = 1e-6

    def __post_init__(self) -> None:
        if not self.lambdas or any(not lam > 0 for lam in self.lambdas):
            raise ConfigError(f"lambdas must be a non-empty tuple of positive numbers, got {self.lambdas!r}")
        if self.purge_every < 0:
            raise ConfigError(f"purge_every must be >= 0, got {self.purge_every}")
        if not 0 <= self.purge_weight < 1:
            raise ConfigError(f"purge_weight must be in [0, 1), got {self.purge_weight}")

    @property
    def num_features(self) -> int:
        """Number of output columns: 23 per lambda."""
        return sum(w for _, w in GROUP_WIDTHS) * len(self.lambdas)


def feature_names(lambdas: tuple[float, ...] = NBAIOT_LAMBDAS) -> list[str]:
    """Return the column names in N-BaIoT order (``MI_dir_L5_weight`` ... ``HpHp_L0.01_pcc``).

    Examples
    --------
    >>> names = feature_names()
    >>> len(names), names[0], names[30], names[-1]
    (115, 'MI_dir_L5_weight', 'HH_L5_weight', 'HpHp_L0.01_pcc')
    """
    names: list[str] = []
    for group, width in GROUP_WIDTHS:
        stats = _STATS_1D if width == 3 else _STATS_2D
        for lam in lambdas:
            names.extend(f"{group}_L{lam:g}_{s}" for s in stats)
    return names
