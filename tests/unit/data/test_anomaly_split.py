import numpy as np
import pytest

from fediot.data.anomaly import split_nbaiot_protocol
from fediot.errors import DataError


def _rows(n: int, start: float) -> np.ndarray:
    return (np.arange(n, dtype=np.float32)[:, None] + start) * np.ones((1, 3), np.float32)


def test_nbaiot_protocol_thirds_in_time_order_and_test_composition() -> None:
    # Prepare
    benign = _rows(10, 0.0)
    attacks = {"mirai.udp": _rows(4, 100.0), "gafgyt.scan": _rows(2, 200.0)}
    # Execute
    ds = split_nbaiot_protocol({"dev": (benign, attacks)}, ("a", "b", "c"), name="t")
    # Assert
    c = ds.clients["dev"]
    assert c.x_train[:, 0].tolist() == [0, 1, 2]
    assert c.x_opt[:, 0].tolist() == [3, 4, 5]
    test = c.tests["test"]
    assert test.x[:4, 0].tolist() == [6, 7, 8, 9]
    assert test.y.tolist() == [0] * 4 + [1] * 6
    assert test.attack_type.tolist() == ["benign"] * 4 + ["gafgyt.scan"] * 2 + ["mirai.udp"] * 4
    assert test.segment.tolist() == [0] * 4 + [1] * 2 + [2] * 4


def test_attack_cap_takes_a_contiguous_block() -> None:
    # Prepare
    attacks = {"mirai.udp": _rows(50, 100.0)}
    # Execute
    ds = split_nbaiot_protocol(
        {"dev": (_rows(9, 0.0), attacks)}, ("a", "b", "c"), name="t", max_attack_rows=5,
        rng=np.random.default_rng(0),
    )
    # Assert
    block = ds.clients["dev"].tests["test"].x[3:, 0]
    assert block.shape == (5,)
    assert np.all(np.diff(block) == 1)


def test_too_few_benign_rows_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="'dev' has 2 benign rows"):
        split_nbaiot_protocol({"dev": (_rows(2, 0.0), {})}, ("a", "b", "c"), name="t")
