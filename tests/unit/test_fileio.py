"""Outputs as a unit: a run's results, report and plots appear together or not at all."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fediot.errors import ConfigError
from fediot.fileio import atomic_write, check_output_dir, publish_outputs

OWNED = ("results.json", "report.md", "*.png")


def _stage(folder: Path, run: str, plots: tuple[str, ...]) -> Path:
    staging = folder / f".staging-{run}"
    staging.mkdir(parents=True)
    (staging / "results.json").write_text(json.dumps({"run": run}))
    (staging / "report.md").write_text(f"# {run}")
    for plot in plots:
        (staging / plot).write_bytes(run.encode())
    return staging


def _runs_side_by_side(out: Path) -> set[str]:
    """Which runs the results and the report in ``out`` come from (one when consistent)."""
    seen = set()
    if (out / "results.json").exists():
        seen.add(json.loads((out / "results.json").read_text())["run"])
    if (out / "report.md").exists() and (out / "results.json").exists():
        seen.add((out / "report.md").read_text().removeprefix("# "))
    return seen


@pytest.mark.parametrize("fail_at", range(1, 6))
def test_an_interrupted_publish_never_mixes_two_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    # Prepare: a folder holding run "old" (with a plot the new run does not make) and a user's own file
    out = tmp_path / "out"
    publish_outputs(_stage(out, "old", ("loss.png", "old-only.png")), out, owned=OWNED, last="results.json")
    (out / "notes.txt").write_text("mine")
    staging = _stage(out, "new", ("loss.png",))
    calls = {"n": 0}
    real_replace, real_unlink = os.replace, Path.unlink

    def interrupt() -> None:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        interrupt()
        real_replace(src, dst)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        interrupt()
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    # Execute: Ctrl-C at the fail_at-th file operation
    with pytest.raises(KeyboardInterrupt):
        publish_outputs(staging, out, owned=OWNED, last="results.json")
    monkeypatch.undo()
    # Assert: never the results of one run beside the report of another; the user's file is kept
    assert len(_runs_side_by_side(out)) <= 1
    assert (out / "notes.txt").read_text() == "mine"


def test_a_complete_publish_replaces_stale_outputs_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publish_outputs(_stage(out, "old", ("loss.png", "old-only.png")), out, owned=OWNED, last="results.json")
    (out / "notes.txt").write_text("mine")
    publish_outputs(_stage(out, "new", ("loss.png",)), out, owned=OWNED, last="results.json")
    assert _runs_side_by_side(out) == {"new"}
    assert not (out / "old-only.png").exists()  # a stale plot of the previous run is gone
    assert (out / "loss.png").read_bytes() == b"new"
    assert (out / "notes.txt").exists()


def test_an_output_path_that_is_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "f")
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"


def test_atomic_write_honours_the_umask_or_an_explicit_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        plain = atomic_write(tmp_path / "plain.txt", lambda p: p.write_text("x"))
        secret = atomic_write(tmp_path / "key.pem", lambda p: p.write_text("k"), mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o640
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
