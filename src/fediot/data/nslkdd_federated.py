"""NSL-KDD as a federated anomaly benchmark: non-IID clients by network service, normal-only training."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fediot.data.anomaly import AnomalyDataset, ClientSplit, TestSet
from fediot.data.kdd import KDD_CATEGORIES, kdd_attack_category, read_nslkdd
from fediot.data.tabular import TabularData
from fediot.errors import ConfigError, DataError

__all__ = ["build_nslkdd_anomaly", "nslkdd_features"]

ONE_HOT = ("protocol_type", "flag")
"""Symbolic columns one-hot encoded into the features; ``service`` defines the clients instead."""


def nslkdd_features(table: TabularData) -> tuple[NDArray[np.float32], tuple[str, ...]]:
    """Return the autoencoder's features of an NSL-KDD table and their names.

    The 38 numeric columns (continuous plus the 0/1 symbolic flags ``land``, ``logged_in``,
    ``is_host_login``, ``is_guest_login``; byte and count columns span up to 9 orders of magnitude:
    use a ``log-*`` scaler), then one-hot ``protocol_type`` (3) and ``flag`` (11): 52 in all.
    ``service`` (70 values) is left out of the features: it is what the clients are formed by.

    Returns
    -------
    x : ndarray of shape (n_samples, 52)
    names : tuple of str
    """
    keep = [i for i, name in enumerate(table.feature_names) if name not in KDD_CATEGORIES]
    parts = [table.x[:, keep]]
    names = [table.feature_names[i] for i in keep]
    for column in ONE_HOT:
        codes = table.x[:, table.feature_names.index(column)].astype(np.int64)
        vocab = KDD_CATEGORIES[column]
        parts.append(np.eye(len(vocab), dtype=np.float32)[codes])
        names += [f"{column}={v}" for v in vocab]
    return np.concatenate(parts, axis=1).astype(np.float32), tuple(names)


def _service(table: TabularData) -> NDArray[np.int64]:
    return table.x[:, table.feature_names.index("service")].astype(np.int64)


def _categories(labels: NDArray[np.str_]) -> NDArray[np.str_]:
    uniq, inverse = np.unique(labels, return_inverse=True)
    return np.array([kdd_attack_category(str(lab)) for lab in uniq])[inverse]


def _assign(
    rng: np.random.Generator, cum: NDArray[np.float64], services: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Draw each row's client from its service's cumulative client proportions ``cum[service]``."""
    u: NDArray[np.float64] = np.asarray(rng.random(services.shape[0]), dtype=np.float64)
    owner: NDArray[np.int64] = (u[:, None] > cum[services]).sum(axis=1).astype(np.int64)
    return owner


def build_nslkdd_anomaly(
    *,
    num_clients: int = 9,
    alpha: float = 0.5,
    seed: int = 0,
    min_train_rows: int = 200,
    max_tries: int = 100,
) -> AnomalyDataset:
    """Build the federated NSL-KDD anomaly dataset.

    Clients (non-IID rule, seeded): for each network ``service`` s, client proportions
    ``p_s ~ Dirichlet(alpha * 1_K)``; every ``normal`` row of KDDTrain+_20Percent and every row of the test
    files is assigned to a client drawn from ``p_s`` of its service. A draw in which some client gets fewer
    than ``min_train_rows`` normal rows is rejected and redrawn (up to ``max_tries``). Each client's normal
    rows keep file order: the first two thirds train the autoencoder, the last third ("opt") sets the
    threshold. Attack rows of the training file are never used. Tests: KDDTest+ (the headline) and
    KDDTest-21, with attack categories (dos, probe, r2l, u2r) as attack types.

    Parameters
    ----------
    num_clients : int
        K, the number of clients.
    alpha : float
        Dirichlet concentration (smaller = more skewed).
    seed : int
        Fixes the partition.
    """
    if num_clients < 2:
        raise ConfigError(f"num_clients must be >= 2, got {num_clients}")
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    train = read_nslkdd("KDDTrain+_20Percent")
    normal = train.labels == "normal"
    x_all, names = nslkdd_features(train)
    x_normal = x_all[normal]
    svc_normal = _service(train)[normal]
    tests = {name: read_nslkdd(name) for name in ("KDDTest+", "KDDTest-21")}
    num_services = len(KDD_CATEGORIES["service"])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 21]))
    for _ in range(max_tries):
        props = rng.dirichlet(np.full(num_clients, alpha), size=num_services)
        cum: NDArray[np.float64] = props.cumsum(axis=1)
        cum[:, -1] = 1.0
        owner = _assign(rng, cum, svc_normal)
        counts = np.bincount(owner, minlength=num_clients)
        if counts.min() * 2 // 3 >= min_train_rows:
            break
    else:
        raise DataError(
            f"no Dirichlet(alpha={alpha}) draw in {max_tries} tries gave every one of {num_clients} clients "
            f">= {min_train_rows} training rows; raise alpha or lower num_clients"
        )
    test_owner = {name: _assign(rng, cum, _service(t)) for name, t in tests.items()}
    test_x = {name: nslkdd_features(t)[0] for name, t in tests.items()}
    test_cat = {name: _categories(t.labels) for name, t in tests.items()}
    clients: dict[str, ClientSplit] = {}
    width = len(str(num_clients))
    for k in range(num_clients):
        rows = x_normal[owner == k]
        cut = (2 * rows.shape[0]) // 3
        client_tests = {}
        for name in tests:
            mask = test_owner[name] == k
            cats = test_cat[name][mask]
            client_tests[name] = TestSet(
                x=test_x[name][mask],
                y=(cats != "normal").astype(np.int8),
                attack_type=np.where(cats == "normal", "benign", cats).astype(np.str_),
                segment=np.zeros(int(mask.sum()), np.int32),
            )
        cid = f"client{k + 1:0{width}d}"
        clients[cid] = ClientSplit(cid, rows[:cut], rows[cut:], client_tests)
    return AnomalyDataset(
        name="nsl-kdd",
        protocol=(
            f"nsl-kdd: normal rows of KDDTrain+_20Percent to {num_clients} clients by service "
            f"(Dirichlet alpha={alpha}); per client first 2/3 train, last 1/3 opt (file order); "
            "test rows assigned by the same service proportions; tests KDDTest+ (headline), KDDTest-21"
        ),
        feature_names=names,
        clients=clients,
        test_names=("KDDTest+", "KDDTest-21"),
        time_ordered=False,
        details={"num_clients": num_clients, "alpha": alpha, "train_rows": counts.tolist()},
    )
