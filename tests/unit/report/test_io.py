import json
from pathlib import Path

import numpy as np
import pytest

from fediot.report.io import atomic_write, write_json, write_text


def test_write_json_converts_numpy_and_nan(tmp_path: Path) -> None:
    # Prepare
    obj = {"a": np.float32(0.25), "b": np.arange(3), "c": float("nan"), "d": (1, 2)}
    # Execute
    path = write_json(tmp_path / "sub" / "r.json", obj)
    # Assert
    assert json.loads(path.read_text()) == {"a": 0.25, "b": [0, 1, 2], "c": None, "d": [1, 2]}


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    # Prepare
    target = write_text(tmp_path / "report.md", "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    # Execute
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    # Assert
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
