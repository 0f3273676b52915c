import numpy as np
import pytest

from fediot.data.nslkdd_federated import build_nslkdd_anomaly


@pytest.fixture(scope="module")
def ds():
    return build_nslkdd_anomaly(num_clients=9, alpha=0.5, seed=0)


def test_every_normal_training_row_goes_to_exactly_one_client(ds) -> None:
    # Execute
    train = sum(c.x_train.shape[0] + c.x_opt.shape[0] for c in ds.clients.values())
    # Assert: 13,449 normal rows in KDDTrain+_20Percent (SOURCES.md)
    assert train == 13_449
    assert len(ds.feature_names) == 52


def test_test_rows_are_partitioned_and_labelled_by_category(ds) -> None:
    # Execute
    totals = {n: sum(c.tests[n].x.shape[0] for c in ds.clients.values()) for n in ds.test_names}
    attacks = {n: sum(int(c.tests[n].y.sum()) for c in ds.clients.values()) for n in ds.test_names}
    types = {t for c in ds.clients.values() for t in c.tests["KDDTest+"].attack_type.tolist()}
    # Assert: counts from SOURCES.md
    assert totals == {"KDDTest+": 22_544, "KDDTest-21": 11_850}
    assert attacks == {"KDDTest+": 12_833, "KDDTest-21": 9_698}
    assert types == {"benign", "dos", "probe", "r2l", "u2r"}


def test_partition_is_non_iid_and_deterministic(ds) -> None:
    # Prepare
    again = build_nslkdd_anomaly(num_clients=9, alpha=0.5, seed=0)
    other = build_nslkdd_anomaly(num_clients=9, alpha=0.5, seed=1)
    sizes = [c.x_train.shape[0] for c in ds.clients.values()]
    # Assert
    assert all(
        np.array_equal(a.x_train, b.x_train)
        for a, b in zip(ds.clients.values(), again.clients.values(), strict=False)
    )
    assert sizes != [c.x_train.shape[0] for c in other.clients.values()]
    assert max(sizes) > 2 * min(sizes)
