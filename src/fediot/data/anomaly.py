"""Federated anomaly-detection datasets: per-client benign train/opt rows and labelled test rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fediot.data.tabular import check_finite_rows
from fediot.errors import DataError

__all__ = ["AnomalyDataset", "ClientSplit", "TestSet", "split_nbaiot_protocol"]

BENIGN = "benign"


@dataclass(frozen=True, slots=True)
class TestSet:
    """Labelled test rows of one client.

    Attributes
    ----------
    x : ndarray of shape (n_samples, n_features)
        Raw (unscaled) rows.
    y : ndarray of shape (n_samples,)
        1 = attack, 0 = benign.
    attack_type : ndarray of shape (n_samples,)
        ``"benign"`` or the attack type of each row.
    segment : ndarray of shape (n_samples,)
        Id of the contiguous stream each row belongs to (a window vote never crosses segments).
    """

    x: NDArray[np.float32]
    y: NDArray[np.int8]
    attack_type: NDArray[np.str_]
    segment: NDArray[np.int32]

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise DataError(f"TestSet.x must be 2-D (n_samples, n_features), got shape {self.x.shape}")
        n = self.x.shape[0]
        if not (self.y.shape[0] == self.attack_type.shape[0] == self.segment.shape[0] == n):
            raise ValueError("TestSet arrays must all have the same number of rows")


@dataclass(frozen=True, slots=True)
class ClientSplit:
    """One client's data under a protocol: benign train and opt rows, and one or more test sets."""

    client_id: str
    x_train: NDArray[np.float32]
    x_opt: NDArray[np.float32]
    tests: Mapping[str, TestSet]

    def __post_init__(self) -> None:
        if self.x_train.ndim != 2 or self.x_train.shape[0] == 0:
            shape = self.x_train.shape
            raise DataError(f"client {self.client_id!r} has no benign training rows (x_train {shape})")
        width = self.x_train.shape[1]
        for name, x in (("x_opt", self.x_opt), *((f"test {t!r}", ts.x) for t, ts in self.tests.items())):
            if x.ndim != 2 or x.shape[1] != width:
                expected = f"expected (n, {width}) as x_train"
                raise DataError(f"client {self.client_id!r}: {name} has shape {x.shape}, {expected}")


@dataclass(frozen=True, slots=True)
class AnomalyDataset:
    """A federated anomaly-detection dataset: clients (in a fixed order) and how they were formed.

    ``time_ordered`` says whether consecutive test rows of a segment are consecutive in time (packet
    streams); a window vote is only meaningful then. Construction checks that every client's rows (train,
    opt, tests) have ``len(feature_names)`` columns and only finite values (a :class:`DataError` names the
    client, the set, the row and the column), so no NaN or inf reaches a scaler or a model.
    """

    name: str
    protocol: str
    feature_names: tuple[str, ...]
    clients: dict[str, ClientSplit]
    test_names: tuple[str, ...]
    time_ordered: bool = True
    details: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.feature_names
        for cid, client in self.clients.items():
            sets = [("x_train", client.x_train), ("x_opt", client.x_opt)]
            sets += [(f"test {t!r}", ts.x) for t, ts in client.tests.items()]
            for label, x in sets:
                what = f"{self.name}: client {cid!r} {label}"
                if x.ndim != 2 or x.shape[1] != len(names):
                    expected = f"expected (n, {len(names)}) for the feature names"
                    raise DataError(f"{what}: shape {x.shape}, {expected}")
                check_finite_rows(x, names, what=what)

    @property
    def primary_test(self) -> str:
        """The test set reported in the headline numbers (the first one)."""
        return self.test_names[0]


def _thirds(n: int) -> tuple[slice, slice, slice]:
    a, b = n // 3, (2 * n) // 3
    return slice(0, a), slice(a, b), slice(b, n)


def split_nbaiot_protocol(
    devices: Mapping[str, tuple[NDArray[np.float32], Mapping[str, NDArray[np.float32]]]],
    feature_names: tuple[str, ...],
    *,
    name: str,
    max_attack_rows: int | None = None,
    rng: np.random.Generator | None = None,
) -> AnomalyDataset:
    """Apply the N-BaIoT protocol (Meidan et al. 2018) to per-device benign and attack rows.

    Each device's benign rows, in time order, are split in thirds: train / opt / test (never shuffled
    across the split: damped-window features leak). Test = the benign test third + all of that device's
    attack rows (optionally at most ``max_attack_rows`` per attack type, a contiguous block starting at a
    random offset drawn from ``rng``).

    Parameters
    ----------
    devices : mapping of str to (benign, attacks)
        ``benign`` has shape (n_benign, n_features) in time order; ``attacks`` maps attack type to rows.
    feature_names : tuple of str
    name : str
        Dataset name recorded in results.
    max_attack_rows : int, optional
        Cap per attack type (keeps test sets small for quick runs); None keeps every row.
    rng : numpy.random.Generator, optional
        Needed when ``max_attack_rows`` is set.
    """
    clients: dict[str, ClientSplit] = {}
    for device, (benign, attacks) in devices.items():
        if benign.shape[0] < 3:
            raise DataError(f"device {device!r} has {benign.shape[0]} benign rows; the protocol needs >= 3")
        tr, op, te = _thirds(benign.shape[0])
        xs = [benign[te]]
        ys = [np.zeros(benign[te].shape[0], np.int8)]
        types = [np.full(benign[te].shape[0], BENIGN)]
        segs = [np.zeros(benign[te].shape[0], np.int32)]
        for k, (attack, rows) in enumerate(sorted(attacks.items()), start=1):
            if max_attack_rows is not None and rows.shape[0] > max_attack_rows:
                if rng is None:
                    raise ValueError("max_attack_rows needs an rng")
                start = int(rng.integers(0, rows.shape[0] - max_attack_rows + 1))
                rows = rows[start : start + max_attack_rows]
            xs.append(rows)
            ys.append(np.ones(rows.shape[0], np.int8))
            types.append(np.full(rows.shape[0], attack))
            segs.append(np.full(rows.shape[0], k, np.int32))
        test = TestSet(
            np.concatenate(xs).astype(np.float32, copy=False),
            np.concatenate(ys),
            np.concatenate(types).astype(np.str_),
            np.concatenate(segs),
        )
        clients[device] = ClientSplit(device, benign[tr], benign[op], {"test": test})
    if not clients:
        raise DataError(f"{name}: no devices")
    return AnomalyDataset(
        name=name,
        protocol=(
            "nbaiot: per-device time-ordered benign thirds train/opt/test; test = benign third + attacks"
        ),
        feature_names=feature_names,
        clients=clients,
        test_names=("test",),
    )
