"""Tests of the N-BaIoT downloader against a real HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import functools
import gzip
import http.server
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fediot.data.download import DownloadEvent, count_csv_rows, download_nbaiot
from fediot.data.nbaiot import read_nbaiot
from fediot.data.paths import shipped_file
from fediot.errors import DataError

pytestmark = pytest.mark.network


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _sample(name: str) -> list[str]:
    with gzip.open(shipped_file(f"nbaiot/samples/{name}.csv.gz"), "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Serve a folder of small Kaggle-layout files; yield (base URL, folder)."""
    root = tmp_path_factory.mktemp("served")
    benign, scan = _sample("benign_traffic"), _sample("scan")
    (root / "1.benign.csv").write_text("\n".join(benign) + "\n")
    (root / "1.gafgyt.scan.csv").write_text("\n".join(scan[:51]) + "\n")
    (root / "2.benign.csv").write_text("\n".join(benign[:41]))  # no final newline
    with zipfile.ZipFile(root / "3.benign.csv", "w") as archive:  # Kaggle zips some single files
        archive.writestr("3.benign.csv", "\n".join(scan[:11]) + "\n")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


EXPECTED = {"1.benign.csv": 299, "1.gafgyt.scan.csv": 50, "2.benign.csv": 40, "3.benign.csv": 10}


def test_downloads_verifies_and_reads_back(tmp_path: Path, served: tuple[str, Path]) -> None:
    # Prepare
    events: list[DownloadEvent] = []
    # Execute
    to = tmp_path / "nbaiot"
    paths = download_nbaiot(to, base_url=served[0], expected=EXPECTED, progress=events.append)
    devices = read_nbaiot(tmp_path / "nbaiot")
    # Assert
    assert [p.name for p in paths] == list(EXPECTED)
    assert [e.name for e in events if e.status == "done"] == list(EXPECTED)
    assert all(e.num_files == 4 for e in events)
    assert devices["Danmini_Doorbell"].benign.shape == (299, 115)
    assert devices["Danmini_Doorbell"].attacks["gafgyt.scan"].shape == (50, 115)
    assert devices["Ennio_Doorbell"].benign.shape == (10, 115)  # unzipped
    assert not list((tmp_path / "nbaiot").glob(".*part"))


def test_complete_files_are_skipped_and_incomplete_ones_fetched_again(
    tmp_path: Path, served: tuple[str, Path]
) -> None:
    # Prepare
    to = tmp_path / "nbaiot"
    download_nbaiot(to, base_url=served[0], expected=EXPECTED)
    (to / "2.benign.csv").write_text("\n".join(_sample("benign_traffic")[:5]) + "\n")  # truncated
    events: list[DownloadEvent] = []
    # Execute
    download_nbaiot(to, base_url=served[0], expected=EXPECTED, progress=events.append)
    # Assert
    final = {e.name: e.status for e in events if e.status != "downloading"}
    assert final == {"1.benign.csv": "skipped", "1.gafgyt.scan.csv": "skipped", "2.benign.csv": "done",
                     "3.benign.csv": "skipped"}
    assert count_csv_rows(to / "2.benign.csv")[1] == 40


def test_wrong_row_count_leaves_no_file(tmp_path: Path, served: tuple[str, Path]) -> None:
    # Prepare
    to = tmp_path / "nbaiot"
    # Execute
    with pytest.raises(DataError, match=r"expected 300 data rows .* found 299") as info:
        download_nbaiot(to, base_url=served[0], expected={"1.benign.csv": 300})
    # Assert
    assert "1.benign.csv" in str(info.value)
    assert "http://127.0.0.1" in str(info.value)
    assert list(to.iterdir()) == []


def test_http_error_names_the_url(tmp_path: Path, served: tuple[str, Path]) -> None:
    # Execute
    with pytest.raises(DataError, match=r"cannot download http://127\.0\.0\.1:\d+/5\.benign\.csv: HTTP 404"):
        download_nbaiot(tmp_path, base_url=served[0], expected={"5.benign.csv": 10})
    # Assert
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path: Path) -> None:
    # Prepare: a port nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Execute
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DataError, match=rf"cannot download {re.escape(url)}/1\.benign\.csv: .*refused"):
        download_nbaiot(tmp_path, base_url=url, expected={"1.benign.csv": 1}, timeout=5)
    # Assert
    assert list(tmp_path.iterdir()) == []


def test_file_without_an_expected_count_is_rejected(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(DataError, match="no expected row count"):
        download_nbaiot(tmp_path, files=["10.benign.csv"], base_url="http://127.0.0.1:9")


def test_default_expectation_is_the_89_real_files(tmp_path: Path) -> None:
    # Execute: asking for one real file name is accepted; the unreachable server is what fails
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match="cannot download") as info:
        download_nbaiot(tmp_path, files=["9.mirai.udpplain.csv"], base_url=f"http://127.0.0.1:{port}")
    # Assert
    assert "9.mirai.udpplain.csv" in str(info.value)


def test_count_csv_rows_with_and_without_final_newline(tmp_path: Path) -> None:
    # Prepare
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("h1,h2\n1,2\n3,4\n")
    b.write_text("h1,h2\n1,2\n3,4")
    # Execute / Assert
    assert count_csv_rows(a) == ("h1,h2", 2) == count_csv_rows(b)
