"""Through Flower's simulation engine: the server never receives rows, and checkpoint/resume is exact."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import flwr.serverapp as flwr_serverapp
import flwr.simulation as simulation
import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from fediot import flower
from fediot.config import FLConfig
from fediot.detect.detector import AnomalyDetector
from fediot.errors import DataError
from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.engine import RoundFailedError
from fediot.federated.types import Weights
from fediot.flower.server_app import ServerResult, initial_weights
from fediot.flower.transport import discover_clients
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import TrainConfig

pytestmark = [pytest.mark.flower, pytest.mark.slow]

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "nbaiot" / "samples"
NUM_CLIENTS = 3
NUM_FEATURES = 115


def _rows() -> NDArray[np.float32]:
    """Real N-BaIoT benign rows (the shipped sample), raw: the federated scaler is fitted by the server."""
    frame = pd.read_csv(SAMPLES / "benign_traffic.csv.gz")
    return frame.select_dtypes("number").to_numpy(np.float32)[:, :NUM_FEATURES]


def _clients() -> dict[str, Client]:
    x = _rows()
    parts = np.array_split(np.arange(x.shape[0]), NUM_CLIENTS)
    out: dict[str, Client] = {}
    for i, idx in enumerate(parts):
        half = len(idx) // 2
        c = AutoencoderClient(
            f"dev{i}",
            lambda: Autoencoder(AutoencoderConfig(NUM_FEATURES)),
            x[idx[:half]],
            x[idx[half:]],
            TrainConfig(epochs=1, batch_size=32, lr=0.01),
            seed=0,
        )
        out[c.client_id] = c
    return out


def _cfg(rounds: int, **server: Any) -> FLConfig:
    return FLConfig.from_dict(
        {
            "seed": 4,
            "federated": {
                "rounds": rounds,
                "fraction_fit": 0.5,
                "min_fit_clients": 1,
                "local_epochs": 1,
                "server_momentum": 0.7,
                "server_learning_rate": 0.8,
            },
            "server": {"min_available_clients": NUM_CLIENTS, **server},
        }
    )


def _initial() -> Weights:
    return initial_weights(_cfg(1))


class _RecordingGrid(flwr_serverapp.Grid):  # type: ignore[misc]
    """Delegates to the real Grid and keeps every reply message the server receives."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.replies: list[Any] = []

    def set_run(self, run: Any) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Any:
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Any) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Any) -> Iterable[Any]:
        out = list(self.inner.pull_messages(message_ids))
        self.replies += out
        return out

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Iterable[Any]:
        out = list(self.inner.send_and_receive(messages, timeout=timeout))
        self.replies += out
        return out


def _simulate(main: Any = None, *, server: Any = None) -> None:
    """Run ``main`` (a ServerApp main function) or the ServerApp ``server`` over the three sample clients."""
    clients = _clients()
    ids = sorted(clients)

    def client_fn(context: Any) -> Client:
        return clients[ids[int(context.node_config["partition-id"])]]

    if server is None:
        server = flwr_serverapp.ServerApp()
        server.main()(main)
    random.seed(0)
    simulation.run_simulation(
        server_app=server,
        client_app=flower.make_client_app(client_fn),
        num_supernodes=NUM_CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )


def test_server_receives_only_weights_statistics_counts_and_scalars(tmp_path: Path) -> None:
    # Prepare: a detector run (federated scaler, 2 rounds, federated threshold, saved detector)
    captured: list[_RecordingGrid] = []
    results: list[ServerResult] = []
    weight_shapes = {w.shape for w in _initial()}
    detector = tmp_path / "detector.pt"
    cfg = _cfg(2, detector_path=str(detector))

    def main(grid: Any, context: Any) -> None:
        rec = _RecordingGrid(grid)
        captured.append(rec)
        results.append(flower.run_server(rec, cfg, _initial()))

    # Execute
    _simulate(main)
    # Assert
    (rec,) = captured
    trained = sum(len(r.selected) for r in results[0].rounds)
    assert len(rec.replies) == NUM_CLIENTS * 3 + trained  # identify, feature_stats, rounds, error_stats
    kinds = {r.metadata.message_type for r in rec.replies}
    assert kinds == {"query.identify", "train", "query.feature_stats", "query.error_stats"}
    for reply in rec.replies:
        assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
        content = reply.content
        for record in content.array_records.values():
            for name, arr in record.items():
                shape = tuple(arr.shape)
                if reply.metadata.message_type == "train":
                    assert shape in weight_shapes, (name, shape)
                else:  # sufficient statistics: per feature or scalar, never per row
                    assert shape in {(), (1,), (NUM_FEATURES,)}, (name, shape)
        for record in content.metric_records.values():
            assert all(isinstance(v, int | float) for v in record.values())
        for record in content.config_records.values():
            assert all(isinstance(v, bool | int | float | str) for v in record.values())
            assert all(not isinstance(v, str) or len(v) < 64 for v in record.values())
    stats = [r for r in rec.replies if r.metadata.message_type == "query.feature_stats"]
    assert sum(int(r.content["summary-meta"]["count"]) for r in stats) == sum(
        c.num_train  # type: ignore[attr-defined]
        for c in _clients().values()
    )
    (result,) = results
    assert result.scaler is not None
    assert result.scaler.log
    assert result.threshold is not None
    assert np.isfinite(result.threshold)
    assert result.threshold > 0
    assert AnomalyDetector.load(detector).threshold_ == result.threshold


def test_two_rounds_then_resume_equals_four_rounds_straight_scaler_and_threshold_included(
    tmp_path: Path,
) -> None:
    # Prepare
    results: list[ServerResult] = []
    ckpt = tmp_path / "ckpt.npz"
    history = tmp_path / "history.json"

    def runner(cfg: FLConfig) -> Any:
        def main(grid: Any, context: Any) -> None:
            results.append(flower.run_server(grid, cfg, _initial()))

        return main

    # Execute
    _simulate(runner(_cfg(4)))
    _simulate(runner(_cfg(2, checkpoint_path=str(ckpt), history_path=str(history))))
    saved, _ = flower.load_checkpoint(ckpt)
    _simulate(runner(_cfg(4, checkpoint_path=str(ckpt), history_path=str(history), resume=True)))
    # Assert
    straight, _first, resumed = results
    assert saved.server_round == 2
    assert saved.strategy == "fedavgm"
    assert saved.strategy_state["momentum"] is not None
    assert saved.scaler is not None
    assert [r.server_round for r in resumed.rounds] == [1, 2, 3, 4]
    assert [r.selected for r in resumed.rounds] == [r.selected for r in straight.rounds]
    for a, b in zip(resumed.weights, straight.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.scaler is not None
    assert straight.scaler is not None
    for key, value in straight.scaler.to_dict().items():
        np.testing.assert_array_equal(resumed.scaler.to_dict()[key], value)
    assert resumed.threshold == straight.threshold
    assert flower.load_checkpoint(ckpt)[0].server_round == 4
    rounds = json.loads(history.read_text())["rounds"]
    assert [r["server_round"] for r in rounds] == [1, 2, 3, 4]  # the resumed run appended


def test_events_file_tells_each_round_as_it_happens_as_json_lines(tmp_path: Path) -> None:
    # Prepare: fediot's own ServerApp (the one `flwr run` starts), with an events file beside the history
    events, history, detector = tmp_path / "events.jsonl", tmp_path / "history.json", tmp_path / "det.npz"
    cfg = _cfg(3, events_path=str(events), history_path=str(history), detector_path=str(detector))
    app = flower.make_server_app(lambda context: cfg, lambda c: _initial())
    # Execute
    _simulate(server=app)
    # Assert: run start, scaler, one line per round matching the history, threshold, detector, run end
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    names = [e["event"] for e in lines]
    assert names == [
        "run_start",
        "scaler",
        "round",
        "round",
        "round",
        "threshold",
        "detector_saved",
        "run_end",
    ]
    assert lines[0]["rounds"] == 3
    assert lines[0]["strategy"] == "fedavgm"
    assert lines[0]["resume_after"] == 0
    assert lines[1]["clients"] == NUM_CLIENTS
    recorded = json.loads(history.read_text())["rounds"]
    rounds = [e for e in lines if e["event"] == "round"]
    for event, record in zip(rounds, recorded, strict=True):
        assert event["server_round"] == record["server_round"]
        assert event["selected"] == record["selected"]
        assert event["failed"] == []
        assert event["train_loss"] == record["train_loss"]
        assert event["seconds"] == record["seconds"]
        assert f"round {record['server_round']}/3: " in str(event["message"])
    assert lines[5]["threshold"] == AnomalyDetector.load(detector).threshold_
    assert lines[6]["path"] == str(detector)
    assert [e["time"] for e in lines] == sorted(e["time"] for e in lines)


def test_events_file_records_a_failed_run(tmp_path: Path) -> None:
    # Prepare: waits for one more gateway than there are, for 1 s
    events = tmp_path / "events.jsonl"
    cfg = _cfg(2, events_path=str(events), min_available_clients=NUM_CLIENTS + 1, connect_timeout=1.0)
    # Execute
    with pytest.raises(RoundFailedError, match="min_available_clients"):
        _simulate(server=flower.make_server_app(lambda context: cfg, lambda c: _initial()))
    # Assert: the run's last line says why it failed
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert next(e["event"] for e in lines) == "run_start"
    assert lines[-1]["event"] == "run_failed"
    assert lines[-1]["level"] == "error"
    assert str(NUM_CLIENTS + 1) in str(lines[-1]["error"]), lines[-1]


def test_slow_identification_sends_one_identify_per_node_not_one_per_retry() -> None:
    # Prepare: the server's discovery step, called again and again with a wait (10 ms) far shorter than
    # the nodes take to answer, as a large federation sees it; count the identify messages per node
    pushed: dict[int, int] = {}
    calls: list[dict[int, str]] = []

    class _CountingGrid(_RecordingGrid):
        def push_messages(self, messages: Any) -> Iterable[str]:
            messages = list(messages)
            for m in messages:
                if m.metadata.message_type == "query.identify":
                    pushed[m.metadata.dst_node_id] = pushed.get(m.metadata.dst_node_id, 0) + 1
            return self.inner.push_messages(messages)

    def main(grid: Any, context: Any) -> None:
        counting, found, outstanding = _CountingGrid(grid), {}, {}
        deadline = time.monotonic() + 180  # bounded by time: Ray's start-up on a loaded CI machine varies
        while len(found) < NUM_CLIENTS and time.monotonic() < deadline:
            found = discover_clients(counting, found, timeout=0.01, poll_interval=0.005, pending=outstanding)
            calls.append(dict(found))

    # Execute
    _simulate(main)
    # Assert: it took several waits (the replies were slow), every node answered, each was asked once
    assert len(calls) > 1
    assert sorted(calls[-1].values()) == ["dev0", "dev1", "dev2"]
    assert len(pushed) == NUM_CLIENTS
    assert set(pushed.values()) == {1}, pushed


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    cfg = _cfg(2, checkpoint_path=str(tmp_path / "missing.npz"), resume=True)
    with pytest.raises(DataError, match="no checkpoint to resume from"):
        flower.run_server(_NoGrid(), cfg, _initial())


class _NoGrid:
    """Fails if the server talks to it: a refused resume must stop before any message."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the server used the grid ({name}) before refusing")
