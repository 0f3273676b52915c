"""Fuzz the pcap/pcapng reader: N mutated real captures -> ok / clean errors / uncaught / hangs, peak RSS.

Seeds and mutators are those of the CI fuzz tests (``tests/fuzz/conftest.py``, loaded by path): the heads
of 6 shipped captures (2 StopDDoS floods, 4 IoT Sentinel devices), each as pcap and as 3 pcapng
conversions (little/big endian, micro/nano/milli-second resolution, one or two interfaces), damaged by
1-3 structure-aware mutations (bit flips, truncation, length-field corruption, inserted garbage, deleted
spans, duplicated or swapped records/blocks, header bytes, extra malformed interface blocks), a third of
them gzipped (and some of those damaged). Each case runs in a worker process with a deadline; a case that
passes it is a hang. With ``--boundscheck`` (default) the numba kernels are compiled with bounds checks,
so an out-of-bounds read would surface as an uncaught ``IndexError``.

After the mutated cases, three resource cases run with the default cap: a 3 GiB gzip bomb (refused at the
2 GiB cap), 1 GiB of zero-length records in a gzip, and the largest shipped capture.

Usage::

    python benchmarks/fuzz_readers.py --cases 10000 --seed 0
    python benchmarks/fuzz_readers.py --cases 10000 --seed 0 --reader-file old_pcap.py   # another reader
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _worker(conn: Connection, reader_file: str | None) -> None:
    from fediot.errors import FediotError

    if reader_file:
        parse = _load(Path(reader_file), "fuzz_reader_under_test").parse_capture
    else:
        from fediot.features.pcap import parse_capture as parse
    parse(_load(ROOT / "tests/fuzz/conftest.py", "fuzz_seeds").load_seeds()[0].data)  # compile, warm up
    conn.send(("ready", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    while True:
        command, data = conn.recv()
        if command != "case":
            conn.send(("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
            if command == "stop":
                return
            continue
        try:
            table, summary = parse(data, name="case")
            conn.send(("ok", f"{len(table)} packets, skipped {summary.skipped}"))
        except FediotError as exc:
            conn.send(("clean", f"{type(exc).__name__}: {exc}"))
        except BaseException as exc:
            tb = traceback.format_exception(exc)[-3:]
            conn.send(("uncaught", f"{type(exc).__name__}: {exc} | {''.join(tb).strip()}"))


class _Runner:
    def __init__(self, reader_file: str | None, timeout: float) -> None:
        self.reader_file = reader_file
        self.timeout = timeout
        self.ctx = mp.get_context("spawn")
        self.max_rss_kib = 0
        self.ready_rss_kib = 0
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.reader_file), daemon=True)
        self.proc.start()
        if not self.conn.poll(600):
            raise SystemExit("worker did not start")
        _, rss = self.conn.recv()
        self.ready_rss_kib = max(self.ready_rss_kib, rss)

    def peak_rss_kib(self, command: str = "rss") -> int:
        """Peak RSS of the current worker (KiB)."""
        self.conn.send((command, b""))
        if not self.conn.poll(30):
            raise SystemExit("worker does not answer")
        _, rss = self.conn.recv()
        self.max_rss_kib = max(self.max_rss_kib, rss)
        return int(rss)

    def run(self, data: bytes, timeout: float | None = None) -> tuple[str, str, float]:
        t0 = time.perf_counter()
        self.conn.send(("case", data))
        if self.conn.poll(timeout or self.timeout):
            try:
                kind, detail = self.conn.recv()
                return kind, detail, time.perf_counter() - t0
            except EOFError:
                pass
        else:
            self.peak_rss_restarted()
            self.proc.kill()
            self.proc.join()
            self._start()
            return "hang", f"no answer in {timeout or self.timeout} s", time.perf_counter() - t0
        code = self.proc.exitcode
        self._start()
        return "uncaught", f"worker died (exit code {code})", time.perf_counter() - t0

    def peak_rss_restarted(self) -> None:
        """Remember the peak RSS of a worker about to be killed (from /proc; Linux)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.max_rss_kib = max(self.max_rss_kib, int(line.split()[1]))

    def close(self) -> None:
        self.peak_rss_kib("stop")
        self.proc.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per case, seconds")
    parser.add_argument("--reader-file", help="a pcap.py to fuzz instead of fediot.features.pcap")
    parser.add_argument("--no-boundscheck", action="store_true")
    parser.add_argument("--no-resource-cases", action="store_true")
    parser.add_argument("--corpus", type=Path, help="folder to save the inputs that were not handled")
    args = parser.parse_args()

    if not args.no_boundscheck:
        os.environ["NUMBA_BOUNDSCHECK"] = "1"
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fuzz-numba-")
    fuzz = _load(ROOT / "tests/fuzz/conftest.py", "fuzz_seeds")
    seeds = fuzz.load_seeds()
    rng = np.random.default_rng(args.seed)

    def draw(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    runner = _Runner(args.reader_file, args.timeout)
    counts: collections.Counter[str] = collections.Counter()
    by_seed_kind: collections.Counter[tuple[str, str]] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    slowest = 0.0
    t0 = time.perf_counter()
    for i in range(args.cases):
        seed = seeds[draw(0, len(seeds) - 1)]
        case = fuzz.mutate_capture(seed, draw)
        kind, detail, secs = runner.run(case)
        slowest = max(slowest, secs)
        counts[kind] += 1
        by_seed_kind[("pcapng" if seed.pcapng else "pcap", kind)] += 1
        if kind in ("uncaught", "hang"):
            examples[detail.split(" | ")[0][:160]].append(f"case {i} ({seed.name})")
            if args.corpus:
                args.corpus.mkdir(parents=True, exist_ok=True)
                (args.corpus / f"case{i:05d}.bin").write_bytes(case)
    fuzz_secs = time.perf_counter() - t0
    fuzz_rss = max(runner.peak_rss_kib(), runner.max_rss_kib)

    resource_rows: list[tuple[str, str, str, float, int]] = []
    if not args.no_resource_cases:
        header = seeds[0].data[:24]
        largest = max(
            (ROOT / "data/ddos_pcaps").glob("*.pcap.gz"), key=lambda p: p.stat().st_size
        ).read_bytes()
        for label, make in (
            ("gzip bomb: 3 GiB of zeros after a pcap header", lambda: fuzz.gzip_bomb(header, 3 << 30)),
            ("gzip: 1 GiB of zero-length records", lambda: fuzz.gzip_bomb(header, 1 << 30)),
            ("largest shipped capture (SYN flood)", lambda: largest),
        ):
            data = make()
            kind, detail, secs = runner.run(data, timeout=600)
            rss = runner.peak_rss_kib()
            resource_rows.append((label, f"{len(data):,} B", f"{kind}: {detail[:150]}", secs, rss))
    runner.close()

    print(f"reader: {args.reader_file or 'fediot.features.pcap'}; seeds: {len(seeds)}; cases: {args.cases}; "
          f"seed {args.seed}; deadline {args.timeout} s; boundscheck: {not args.no_boundscheck}")
    for kind in ("ok", "clean", "uncaught", "hang"):
        print(f"  {kind:9s} {counts[kind]:6d}   (pcap {by_seed_kind[('pcap', kind)]}, "
              f"pcapng {by_seed_kind[('pcapng', kind)]})")
    rate = args.cases / fuzz_secs
    print(f"  fuzz time {fuzz_secs:.1f} s ({rate:.0f} cases/s), slowest case {slowest:.3f} s")
    print(f"  worker peak RSS: {runner.ready_rss_kib / 1024:.0f} MiB after imports and warm-up, "
          f"{fuzz_rss / 1024:.0f} MiB after the {args.cases} cases")
    for label, size, outcome, secs, rss in resource_rows:
        print(f"  resource case: {label} ({size}) -> {outcome} [{secs:.1f} s; "
              f"peak RSS so far {rss / 1024:.0f} MiB]")
    for detail, cases in sorted(examples.items(), key=lambda kv: -len(kv[1]))[:15]:
        print(f"  {len(cases):5d} x {detail}   e.g. {cases[0]}")
    if counts["uncaught"] or counts["hang"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
