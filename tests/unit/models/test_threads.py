"""fediot's thread default, its override, and thread-independent training results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fediot.cli import app
from fediot.errors import ConfigError
from fediot.models import Autoencoder, AutoencoderConfig, TrainConfig, init_module, train_autoencoder
from fediot.models.threads import (
    DEFAULT_THREADS,
    THREADS_ENV,
    apply_default_threads,
    get_threads,
    set_threads,
)

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_and_env(monkeypatch: pytest.MonkeyPatch, restore_threads: None) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert apply_default_threads() == DEFAULT_THREADS == get_threads()
    monkeypatch.setenv(THREADS_ENV, "2")
    assert apply_default_threads() == 2
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ConfigError, match="FEDIOT_THREADS must be an integer >= 0, got 'many'"):
        apply_default_threads()
    with pytest.raises(ConfigError, match="positive integer"):
        set_threads(0)


def test_cli_threads_option(restore_threads: None) -> None:
    set_threads(1)
    result = CliRunner().invoke(app, ["--threads", "2", "data", "list"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2
    assert CliRunner().invoke(app, ["--threads", "0", "data", "list"]).exit_code != 0


def test_training_at_1_and_2_threads_agrees_to_float32_rounding(restore_threads: None) -> None:
    # Prepare: real benign N-BaIoT rows, min-max scaled
    x = pd.read_csv(SAMPLES / "benign_traffic.csv.gz").to_numpy(np.float64)
    span = np.where(x.max(0) > x.min(0), x.max(0) - x.min(0), 1.0)
    xs = ((x - x.min(0)) / span).astype(np.float32)
    trained = []
    # Execute
    for threads in (1, 2):
        set_threads(threads)
        module = init_module(Autoencoder(AutoencoderConfig(xs.shape[1])), 0)
        train_autoencoder(module, xs, TrainConfig(epochs=1, batch_size=32, lr=1e-3, optimizer="adam"), seed=0)
        trained.append([p.detach().clone() for p in module.parameters()])
    # Assert: equal up to float32 summation order. Bit-identical on some CPUs (the CI machine's), not on all:
    # an AMD EPYC host's 2-thread kernels split sums differently (last-bit differences, README).
    for a, b in zip(*trained, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert max(float((a - b).abs().max()) for a, b in zip(*trained, strict=True)) < 1e-5
