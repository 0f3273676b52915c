"""The events file: one JSON object per fediot log record, appended and flushed as it happens."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fediot.errors import ConfigError
from fediot.federated.events import JsonLinesHandler, event
from fediot.flower.server_app import run_events

log = logging.getLogger("fediot.test_events")


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_record_is_one_flushed_json_line_with_its_fields(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "events.jsonl"
    handler = JsonLinesHandler(path)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        # Execute: a plain line, then an event with a NaN loss and a tuple
        log.info("plain %d", 1)
        log.warning(
            "round %d lost", 2, extra=event("round", server_round=2, train_loss=float("nan"), ids=("a",))
        )
        written_before_close = _lines(path)
    finally:
        log.removeHandler(handler)
        handler.close()
    # Assert: readable before close (flushed per line); NaN became null (strict JSON)
    assert written_before_close == _lines(path)
    plain, rnd = written_before_close
    assert plain["event"] == "log"
    assert plain["message"] == "plain 1"
    assert plain["level"] == "info"
    assert rnd == {
        "time": rnd["time"],
        "level": "warning",
        "event": "round",
        "server_round": 2,
        "train_loss": None,
        "ids": ["a"],
        "message": "round 2 lost",
    }
    assert str(rnd["time"]).endswith("Z")


def test_events_file_appends_and_ends_with_run_end_or_run_failed(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    with run_events(str(path)):
        log.info("first run", extra=event("round", server_round=1))
    with pytest.raises(RuntimeError, match="boom"), run_events(str(path)):
        raise RuntimeError("boom\nsecond line")
    events = [e["event"] for e in _lines(path)]
    assert events == ["round", "run_end", "run_failed"]
    assert _lines(path)[-1]["error"] == "boom second line"
    assert not any(isinstance(h, JsonLinesHandler) for h in logging.getLogger("fediot").handlers)


def test_a_folder_as_events_path_is_refused_naming_the_key(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match=r"server\.events_path: cannot write .*folder"),
        run_events(str(tmp_path)),
    ):
        pass
